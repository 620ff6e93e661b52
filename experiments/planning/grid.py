"""Budgets x ladder sizes: the integer step count that spends each budget, or why a candidate cannot train."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from experiments import ladder as ladder_lib
from experiments.planning.study import Study, StudyError
from scaling import flops

FLOP_TOLERANCE = 0.01  # counted FLOPs within ±1% of the budget


@dataclasses.dataclass(frozen=True)
class Dropped:
    C: float
    N: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Point:
    """A (C, N) candidate that survived every check."""
    C: float
    rung: ladder_lib.Rung
    steps: int
    flops: float  # counted under the study's convention

    @property
    def tokens_per_step(self) -> int:
        return self.rung.global_batch * self.rung.model.seq_len


def flops_per_step(rung: ladder_lib.Rung, convention: str) -> float:
    per_token = flops.flops_per_token(rung.model)[convention]
    return per_token * rung.global_batch * rung.model.seq_len


def solve(C: float, rung: ladder_lib.Rung, study: Study, epoch_tokens: int) -> Point | Dropped:
    """The integer step count whose counted FLOPs are nearest C, or why this (C, N) cannot train."""
    per_step = flops_per_step(rung, study.flop_convention)
    steps = round(C / per_step)
    tokens = steps * rung.global_batch * rung.model.seq_len
    n = rung.params.total
    lo, hi = study.tokens_per_param
    if steps < study.min_steps:
        return Dropped(C, n, f"too few steps: {steps} < study.min_steps={study.min_steps}")
    if abs(steps * per_step / C - 1) > FLOP_TOLERANCE:
        return Dropped(C, n, f"flops: {steps} steps count {steps * per_step:.4g}, not within 1% of C")
    if not lo <= tokens / n <= hi:
        return Dropped(C, n, f"tokens/param: D/N={tokens / n:.3g} outside study.tokens_per_param=[{lo:g}, {hi:g}]")
    if tokens > epoch_tokens:
        return Dropped(C, n, f"epoch: D={tokens:.3g} tokens exceeds one epoch of the training split "
                             f"({epoch_tokens:.3g})")
    return Point(C, rung, steps, steps * per_step)


def grid(rungs: Sequence[ladder_lib.Rung], study: Study, epoch_tokens: int
         ) -> tuple[list[Point], list[Dropped]]:
    """Every (C, N) of the study, solved; raises StudyError for a budget nothing can train."""
    points, dropped = [], []
    for C in sorted(study.budgets):
        solved = [solve(C, r, study, epoch_tokens) for r in rungs]
        kept = [p for p in solved if isinstance(p, Point)]
        if not kept:
            raise StudyError(_no_candidate(C, rungs, study, [d for d in solved if isinstance(d, Dropped)]))
        points += kept
        dropped += [d for d in solved if isinstance(d, Dropped)]
    return points, dropped


def _no_candidate(C: float, rungs, study: Study, dropped: list[Dropped]) -> str:
    smallest = rungs[0]
    per_step = flops_per_step(smallest, study.flop_convention)
    if round(C / per_step) < study.min_steps:
        return (f"study.budgets: {C:.3g} FLOPs is too small for the smallest ladder model "
                f"(N={smallest.params.total:,}: needs {study.min_steps * per_step:.3g} FLOPs for "
                f"study.min_steps={study.min_steps}); raise the budget or lower study.ladder.min_params")
    kinds: dict[str, int] = {}
    for d in dropped:
        kind = d.reason.split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    why = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))
    return (f"study.budgets: no ladder size fits budget {C:.3g} FLOPs (dropped: {why}); widen "
            "study.tokens_per_param or the study.ladder range")
