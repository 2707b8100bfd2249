"""A fitted posterior as tables and words: :class:`FitResult`, summaries, the headline, closed polls,
diagnostics, the text summary and run folders. No matplotlib."""
