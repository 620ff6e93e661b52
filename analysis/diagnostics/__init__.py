"""Diagnostics: can a fit be believed, and how far (checks, held-out budgets, leave-one-out)."""
