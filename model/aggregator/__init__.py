"""The statistical model: the names of its dims and variables, the design (readings laid out on the
grid), the fused kernels, and the PyMC graph. No sampling, no files."""
