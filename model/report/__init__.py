"""Presentation: figures of a fit and the HTML report. Reads results, never the reverse."""
