"""Compile the model and run NUTS: the compiled-callback cache and the one engine every fit, refit,
compile step and bench fit samples through. Knows nothing of results or files."""


class SamplingError(RuntimeError):
    """The sampler stopped with an error of its own (its message's first line, in words of ours)."""
