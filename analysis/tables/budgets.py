"""IsoFLOP budgets detected from a table that has no budget column.

Read-off FLOPs scatter continuously (Epoch's extraction of Chinchilla Fig. 4 has runs every few
hundredths of a decade between its nine budgets), so cutting sorted log C at gaps finds no groups.
An IsoFLOP grid still shows as peaks of the density of log10 C: each budget is a narrow peak of
runs within ±`window_dex`, peaks at least `min_sep_dex` apart. On the reference data
this finds the nine budgets of Hoffmann et al. (6e18 ... 3e21) as read off the figure.
"""
from __future__ import annotations

import numpy as np

from analysis.tables import tables


def detect_budgets(c, *, bandwidth_dex: float = 0.02, window_dex: float = 0.03, min_runs: int = 3,
                   min_sep_dex: float = 0.2, relative: float = 0.7) -> tuple[float, ...]:
    """Budgets (median C of the runs within ±window_dex of each density peak), ascending. A peak
    must hold `min_runs` runs and reach `relative` × the median height of the peaks: a broad hump
    between two budgets is not one (on the reference data the hump at 1.7e20 reaches 6.4 against
    a median of 10.4; the faintest true budget, 3e21, reaches 7.7)."""
    x = np.log10(np.asarray(c, float))
    x = x[np.isfinite(x)]
    if len(x) < min_runs:
        return ()
    grid = np.arange(x.min() - window_dex, x.max() + window_dex, bandwidth_dex / 4)
    density = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / bandwidth_dex) ** 2).sum(1)
    is_peak = np.r_[False, (density[1:-1] > density[:-2]) & (density[1:-1] >= density[2:]), False]
    chosen: list[tuple[float, float]] = []
    for i in np.flatnonzero(is_peak)[np.argsort(-density[is_peak])]:
        g = grid[i]
        if (np.abs(x - g) <= window_dex).sum() >= min_runs and all(abs(g - h) >= min_sep_dex for h, _ in chosen):
            chosen.append((g, density[i]))
    if not chosen:
        return ()
    floor = relative * np.median([d for _, d in chosen])
    return tuple(float(10 ** np.median(x[np.abs(x - g) <= window_dex])) for g, d in sorted(chosen) if d >= floor)


def budgets_too_sparse(c, gap_dex: float = 0.1, min_runs: int = 3) -> bool:
    """Whether grouping C at gaps (tables.group_budgets, the default) leaves a budget too small for a
    parabola, i.e. the table is not laid out as IsoFLOP profiles as it stands."""
    labels = tables.group_budgets(np.asarray(c, float), gap_dex)
    _, counts = np.unique(labels, return_counts=True)
    return bool((counts < min_runs).any())
