"""Typed records passed between the analysis modules, and their JSON form in fits.json."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Mapping


class InputError(ValueError):
    """Bad input, reported as one line naming the field and the fix (CLIs exit with code 2)."""


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


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write through a temp file in the same directory, fsync, then os.replace: readers never see
    a half-written file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_fits(path, fits: Mapping[str, Fit]) -> None:
    write_atomic(path, json.dumps({k: f.to_json() for k, f in fits.items()}, indent=2, sort_keys=False) + "\n")
