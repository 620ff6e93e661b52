"""Typed records passed between the analysis modules, and their JSON form in fits.json."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Mapping

from numpy.linalg import LinAlgError

from plumbing import atomic


class InputError(ValueError):
    """Bad input, reported as one line naming the field and the fix (CLIs exit with code 2)."""


# What one refit of a resampled or simulated table may raise and still leave the others standing:
# bad input (a budget left without 3 sizes; InputError is a ValueError), arithmetic
# (ArithmeticError: OverflowError of a vertex hundreds of decades off the grid, FloatingPointError,
# ZeroDivisionError), a singular least-squares problem, a solver that did not converge. Callers
# count each with its reason instead of aborting.
RESAMPLE_ERRORS = (ValueError, ArithmeticError, LinAlgError, RuntimeError)


@dataclasses.dataclass(frozen=True)
class Fit:
    """One fitted law. `params` uses the issue's names: E, A, B, alpha, beta, a, b, G (those that
    apply), plus law-specific ones (e.g. N_c, alpha_N for Kaplan). `intervals` maps a name to its
    (low, high) bootstrap percentile interval."""

    approach: str
    params: Mapping[str, float]
    objective: float | None = None
    intervals: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    n_runs: int = 0
    notes: tuple[str, ...] = ()
    extra: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v
        return {
            "approach": self.approach,
            **{k: clean(float(v)) for k, v in self.params.items()},
            "objective": clean(self.objective),
            "intervals": {k: [clean(float(lo)), clean(float(hi))] for k, (lo, hi) in self.intervals.items()},
            "n_runs": self.n_runs,
            "notes": list(self.notes),
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> "Fit":
        """The inverse of `to_json`: null (a non-finite value in fits.json) reads back as NaN."""
        num = lambda v: math.nan if v is None else float(v)
        return cls(
            approach=str(body["approach"]),
            params={k: num(v) for k, v in body.items() if k not in _FIT_FIELDS},
            objective=None if body.get("objective") is None else float(body["objective"]),
            intervals={k: (num(lo), num(hi)) for k, (lo, hi) in (body.get("intervals") or {}).items()},
            n_runs=int(body.get("n_runs") or 0),
            notes=tuple(body.get("notes") or ()),
            extra=dict(body.get("extra") or {}),
        )


_FIT_FIELDS = ("approach", "objective", "intervals", "n_runs", "notes", "extra")


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Readers never see a half-written file (plumbing.atomic: the one mechanism analysis writes with)."""
    atomic.write_text(path, text, parents=True)


def write_fits(path, fits: Mapping[str, Fit], top: Mapping[str, object] | None = None) -> None:
    """One key per approach, then `top`'s keys (fits.json's "convention" and "diagnostics")."""
    write_atomic(path, json.dumps(fits_json(fits, top), indent=2, sort_keys=False, allow_nan=False) + "\n")


def fits_json(fits: Mapping[str, Fit], top: Mapping[str, object] | None = None) -> dict:
    """fits.json's body: NaN as null, numpy scalars as Python numbers."""
    return _json_safe({**{k: f.to_json() for k, f in fits.items()}, **(top or {})})


def _json_safe(v):
    """NaN/inf become null (JSON has neither); numpy scalars become Python numbers."""
    if isinstance(v, Mapping):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
