"""Budgets x ladder sizes: the integer step count that spends each budget, or why a candidate cannot train."""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from experiments import ladder as ladder_lib
from experiments.planning.errors import StudyError
from experiments.planning.study import Study
from scaling import flops

FLOP_TOLERANCE = 0.01  # counted FLOPs within ±1% of the budget


@dataclasses.dataclass(frozen=True)
class Dropped:
    C: float
    N: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Point:
    """A (C, N) candidate that survived every check, with the batch and lr of this run."""
    C: float
    rung: ladder_lib.Rung
    steps: int
    flops: float  # counted under the study's convention
    batch: int = 0  # sequences per step (0: the rung's)
    lr: float = 0.0  # peak lr at this batch (0: the rung's)

    @property
    def global_batch(self) -> int:
        return self.batch or self.rung.global_batch

    @property
    def peak_lr(self) -> float:
        return self.lr or self.rung.lr

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.rung.model.seq_len


def flops_per_step(rung: ladder_lib.Rung, convention: str, batch: int = 0) -> float:
    per_token = flops.flops_per_token(rung.model)[convention]
    return per_token * (batch or rung.global_batch) * rung.model.seq_len


def run_batch(C: float, rung: ladder_lib.Rung, study: Study) -> tuple[int, float]:
    """(batch, lr) of this run: the rung's batch, halved until the run has study.min_steps steps.

    A short run needs its steps more than its batch (warmup, schedule and Adam's moment estimates
    are step counts); halving keeps the batch a power of two times the rung's, never below the
    recipe's min_batch. The lr follows Adam's square-root scaling rule, lr ~ sqrt(B) (Malladi et al.
    2022), from the rung's lr, which the recipe's rule gives at the rung's batch.
    """
    recipe = ladder_lib.RECIPES[study.recipe]
    batch = rung.global_batch
    while (round(C / flops_per_step(rung, study.flop_convention, batch)) < study.min_steps
           and batch // 2 >= recipe.min_batch):
        batch //= 2
    return batch, rung.lr * math.sqrt(batch / rung.global_batch)


def solve(C: float, rung: ladder_lib.Rung, study: Study, epoch_tokens: int) -> Point | Dropped:
    """The integer step count whose counted FLOPs are nearest C, or why this (C, N) cannot train."""
    batch, lr = run_batch(C, rung, study)
    per_step = flops_per_step(rung, study.flop_convention, batch)
    steps = round(C / per_step)
    tokens = steps * batch * rung.model.seq_len
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
    return Point(C, rung, steps, steps * per_step, batch, lr)


def window(C: float, rungs: Sequence[ladder_lib.Rung], study: Study) -> list[ladder_lib.Rung]:
    """The rungs spanning at least study.sizes.span decades either side of the prior's N_opt(C): every
    rung inside, plus the nearest rung at or beyond each edge (all rungs without a prior)."""
    if study.prior.kind == "none":
        return list(rungs)
    centre = math.log10(study.prior.n_opt(C))
    x = [math.log10(r.params.total) for r in rungs]
    below = [i for i, v in enumerate(x) if v <= centre - study.span + 1e-9]
    above = [i for i, v in enumerate(x) if v >= centre + study.span - 1e-9]
    lo = below[-1] if below else 0
    hi = above[0] if above else len(rungs) - 1
    return list(rungs[lo:hi + 1])


def grid(rungs: Sequence[ladder_lib.Rung], study: Study, epoch_tokens: int
         ) -> tuple[list[Point], list[Dropped]]:
    """Every (C, N) of the study, solved; raises StudyError for a budget nothing can train, or one
    whose window around the prior's N_opt keeps fewer than study.sizes.count sizes."""
    points, dropped = [], []
    for C in sorted(study.budgets):
        solved = [solve(C, r, study, epoch_tokens) for r in window(C, rungs, study)]
        kept = [p for p in solved if isinstance(p, Point)]
        if not kept:
            raise StudyError(_no_candidate(C, rungs, study, [d for d in solved if isinstance(d, Dropped)]))
        if study.prior.kind != "none":
            _check_window(C, rungs, kept, study)
        points += kept
        dropped += [d for d in solved if isinstance(d, Dropped)]
    return points, dropped


def _check_window(C: float, rungs, kept: list[Point], study: Study) -> None:
    """Minima interior by design: the kept sizes straddle the prior's N_opt, at least n_sizes of them."""
    centre = study.prior.n_opt(C)
    sizes = sorted(p.rung.params.total for p in kept)
    where = (f"budget {C:.3g}: {len(sizes)} sizes in {sizes[0]:.3g}..{sizes[-1]:.3g} around the prior's "
             f"N_opt={centre:.3g} (ladder {rungs[0].params.total:.3g}..{rungs[-1].params.total:.3g})")
    if len(sizes) < study.n_sizes:
        raise StudyError(f"study.sizes.count={study.n_sizes}: {where}; lower study.ladder.growth, widen "
                         "study.sizes.span or the ladder range, or raise study.min_steps' budget")
    if not sizes[0] < centre < sizes[-1]:
        raise StudyError(f"study.ladder: {where} do not straddle it; extend the ladder range")


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
