"""Performance: the project's fit timed against a NumPyro reference implementation of the same model
(:mod:`model.bench.reference`, which needs the ``bench`` extra: JAX and NumPyro)."""
