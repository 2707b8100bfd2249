"""Is the uncertainty honest? The leave-future-out backtest and simulation-based calibration, as
refits on Dask, with their figures."""
