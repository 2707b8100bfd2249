"""Compile the model and run NUTS: the compiled-callback cache and the one engine every fit, refit,
compile step and bench fit samples through. Knows nothing of results or files."""
