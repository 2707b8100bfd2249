"""``python -m model``: the command line (see :mod:`model.cli`)."""

from model.cli import main

# Guarded: Dask's local workers are started by multiprocessing "spawn", which imports this module
# again under another name; the command must run only in the process the user started.
if __name__ == "__main__":
    raise SystemExit(main())
