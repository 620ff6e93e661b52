"""Fitted E against the source's exact optimal loss E*, where the data source knows it.

E* comes from `--true-e` or, failing that, the table's `true_loss` column (synthetic:markov runs
write it to run.json; collect copies it). Every fit that has an E gets extra["true_loss"] and
extra["E_rel_error"] = (E - E*) / E* in fits.json, and one printed line.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from analysis.records import Fit, InputError


def value(runs, flag: float | None) -> tuple[float | None, str | None]:
    """(E*, a note or None). The flag wins over the column; a column that varies is an error."""
    if flag is not None:
        if not (math.isfinite(flag) and flag > 0):
            raise InputError(f"--true-e={flag} must be a positive number (nats per token)")
        return float(flag), None
    col = getattr(runs, "true_loss", None)
    if col is None:
        return None, None
    known = np.asarray(col, float)
    known = known[np.isfinite(known)]
    if not len(known):
        return None, None
    if known.max() - known.min() > 1e-6 * abs(known.mean()):
        raise InputError(f"the true_loss column varies across runs ({known.min():.6g} to {known.max():.6g}): "
                         "runs measured on different eval sets; pass --true-e or fit one study at a time")
    note = None if len(known) == len(col) else f"true_loss known for {len(known)} of {len(col)} runs"
    return float(known[0]), note


def attach(fits: dict[str, Fit], e_star: float | None) -> dict[str, Fit]:
    if e_star is None:
        return fits
    out = {}
    for key, f in fits.items():
        if "E" in f.params and math.isfinite(float(f.params["E"])):
            e = float(f.params["E"])
            extra = {**f.extra, "true_loss": e_star, "E_rel_error": (e - e_star) / e_star}
            interval = f.intervals.get("E")
            if interval is not None:
                extra["true_loss_in_interval"] = bool(interval[0] <= e_star <= interval[1])
            f = dataclasses.replace(f, extra=extra)
        out[key] = f
    return out


def lines(fits: dict[str, Fit]) -> list[str]:
    return [f"E vs E* ({key}): fitted {f.params['E']:.4f}, true {f.extra['true_loss']:.4f}, "
            f"relative error {f.extra['E_rel_error']:+.2%}"
            + ("" if "true_loss_in_interval" not in f.extra else
               f", E* {'inside' if f.extra['true_loss_in_interval'] else 'outside'} the E interval")
            for key, f in fits.items() if "E_rel_error" in f.extra]
