"""Hold-out validation: fit Approach 3 without the largest budget, predict that budget's runs."""
from __future__ import annotations

import dataclasses

from analysis import approach3
from analysis.records import InputError
from analysis.tables import Runs


@dataclasses.dataclass(frozen=True)
class HoldoutRow:
    run_id: str
    N: float
    D: float
    loss: float
    predicted: float
    rel_error: float  # (predicted - loss) / loss


def holdout_largest_budget(runs: Runs, delta: float = 1e-3, grid=approach3.StartGrid()) -> tuple[HoldoutRow, ...]:
    budgets = runs.budgets()
    if len(budgets) < 2:
        raise InputError(f"validation needs at least 2 budgets (one held out), found {len(budgets)}")
    held = runs.budget == budgets[-1]
    train = runs.subset(~held)
    res = approach3.fit_huber(train.N, train.D, train.loss, delta=delta, grid=grid)
    test = runs.subset(held)
    pred = res.params.loss(test.N, test.D)
    return tuple(HoldoutRow(str(i), float(n), float(d), float(l), float(p), float((p - l) / l))
                 for i, n, d, l, p in zip(test.run_id, test.N, test.D, test.loss, pred))
