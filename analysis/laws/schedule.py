"""S1 and S2 of Tissue et al.'s annealing law from logged (step, lr) rows of each run.

The lr is needed at every optimiser step; a curve logged every k steps is interpolated linearly
in between (exact for linear warmup/decay, close for cosine at k << the schedule's length). S2's
momentum starts at the lr's (first) peak: the rise of warmup is no annealing (an assumption where
warmup is logged); a later re-warmup counts negatively, as the momentum's definition gives.
"""
from __future__ import annotations

import numpy as np

LAMBDA = 0.999


def areas(step, lr, decay: float = LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) at each logged row of one run (rows in any order; steps are 1-based counts)."""
    import scipy.signal  # here: ~1 s to import, and only the annealing law needs it

    step = np.asarray(step, float)
    lr = np.asarray(lr, float)
    order = np.argsort(step, kind="stable")
    s, e = step[order], lr[order]
    every = np.arange(1, int(np.max(s)) + 1, dtype=float)
    eta = np.interp(every, s, e)
    s1 = np.cumsum(eta)
    drop = np.concatenate([[0.0], eta[:-1] - eta[1:]])
    drop[: int(np.argmax(eta)) + 1] = 0.0  # warmup: the rise to the peak is no annealing
    m = scipy.signal.lfilter([1.0], [1.0, -decay], drop)
    s2 = np.cumsum(m)
    idx = np.clip(np.rint(step).astype(int) - 1, 0, len(every) - 1)
    return s1[idx], s2[idx]
