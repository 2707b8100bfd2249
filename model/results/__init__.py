"""A fitted posterior as tables and words: :class:`FitResult`, summaries, the headline, closed polls,
diagnostics, the text summary and run folders. No matplotlib."""


class RunFolderError(ValueError):
    """A run folder is missing files or does not hold the expected structure.

    Defined here, not in :mod:`model.results.run_folder` (which raises it and exports it too), so
    that the command line can name it without importing what reads run folders (xarray, ArviZ).
    """
