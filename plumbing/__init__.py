"""Pieces every package shares and none owns: one-line CLI errors, atomic file writes.

It imports no project package, so `analysis` (which must not import the training code), `scaling`
and `experiments` can all use it (tests/test_imports.py holds it to that).
"""
