"""One file per law of analysis.laws.registry."""
