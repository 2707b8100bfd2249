"""Performance: the project's fit timed against a NumPyro reference implementation of the same model
(:mod:`model.bench.reference`, which needs the ``bench`` extra: JAX and NumPyro)."""

#: The reference's target acceptances, tried in order until one passes the gate in every repeat;
#: the first is NUTS's default (the reference's ``defaults`` setting). Here rather than in
#: :mod:`model.bench.runner` so that building the command line (every ``python -m model`` command)
#: does not import the runner.
REFERENCE_LADDER = (0.8, 0.9, 0.95, 0.99)
