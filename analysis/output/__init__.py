"""Figures and report: the paper figures and report.md/report.html drawn from a FitResult."""
