"""Benchmarks of the project's model against a reference NumPyro implementation (issue 6)."""
