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
    beta2: float = 0.0  # Adam's beta2 (0: the rung's)

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


def run_batch(C: float, rung: ladder_lib.Rung, study: Study) -> tuple[int, float, float]:
    """(batch, lr, beta2) of this run: the rung's batch, halved until the run has study.min_steps steps.

    A short run needs its steps more than its batch (warmup, schedule and Adam's moment estimates
    are step counts); halving keeps the batch a power of two times the rung's, never below the
    recipe's min_batch. The lr follows Adam's square-root scaling rule, lr ~ sqrt(B) (Malladi et al.
    2022), from the rung's lr, which the recipe's rule gives at the rung's batch. With study.hparams,
    the laws give them instead (`law_batch`).
    """
    if study.hparam_law is not None:
        return law_batch(C, rung, study)
    recipe = ladder_lib.RECIPES[study.recipe]
    batch = rung.global_batch
    while (round(C / flops_per_step(rung, study.flop_convention, batch)) < study.min_steps
           and batch // 2 >= recipe.min_batch):
        batch //= 2
    return batch, rung.lr * math.sqrt(batch / rung.global_batch), 0.0


def law_batch(C: float, rung: ladder_lib.Rung, study: Study) -> tuple[int, float, float]:
    """(batch, lr, beta2) from study.hparams' laws at (N, D = C / FLOPs per token): the batch is B*(N, D)
    rounded to a multiple of the recipe's min_batch (the divisibility the recipe keeps; at least
    min_batch, the recipe's max_batch does not cap a law), then halved (rounded down to that multiple)
    until the run has study.min_steps steps; without a batch law, the recipe's batch as without laws.
    The lr is lr*(N, D) times sqrt(batch / B_ref) (Adam's square-root rule for the step from the batch
    the law asked for, B_ref = B*(N, D) or the rung's batch, to the batch the run can have)."""
    law, recipe = study.hparam_law, ladder_lib.RECIPES[study.recipe]
    n = rung.params.total
    d = C / flops.flops_per_token(rung.model)[study.flop_convention]
    want = law.batch_sequences(n, d, rung.model.seq_len)
    unit = recipe.min_batch
    batch = rung.global_batch if want is None else max(unit, round(want / unit) * unit)
    while round(C / flops_per_step(rung, study.flop_convention, batch)) < study.min_steps and batch > unit:
        batch = max(unit, batch // 2 // unit * unit)
    lr = law.lr(n, d) * math.sqrt(batch / (want or rung.global_batch))
    return batch, lr, (law.beta2(n, d) if law.beta2 else 0.0)


def solve(C: float, rung: ladder_lib.Rung, study: Study, epoch_tokens: int) -> Point | Dropped:
    """The integer step count whose counted FLOPs are nearest C, or why this (C, N) cannot train."""
    batch, lr, beta2 = run_batch(C, rung, study)
    steps = round(C / flops_per_step(rung, study.flop_convention, batch))
    return _checked(C, rung, study, epoch_tokens, steps, batch, lr, beta2)


def _checked(C: float, rung: ladder_lib.Rung, study: Study, epoch_tokens: int, steps: int, batch: int,
             lr: float, beta2: float) -> Point | Dropped:
    per_step = flops_per_step(rung, study.flop_convention, batch)
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
    return Point(C, rung, steps, steps * per_step, batch, lr, beta2)


def sweep_grid(rungs: Sequence[ladder_lib.Rung], study: Study, epoch_tokens: int
               ) -> tuple[list[Point], list[Dropped]]:
    """study.mode='hparam_sweep': every budget x size x batch of study.hparam_sweep, one Point each.

    The runs of one (C, N) train on exactly the same tokens D at every batch (D a multiple of
    lcm(batches) sequences, the one nearest C), so each (N, D) is one group for hparam_fit. The
    Point's lr is the base the sweep's lr_multipliers scale: the recipe's at this batch (Adam's sqrt
    rule from the rung's) or study.hparams' law; a (C, N, batch) with too few steps is dropped, with why.
    """
    sweep = study.hparam_sweep
    unit = math.lcm(*sweep.batches)
    points, dropped = [], []
    for C in sorted(sweep.budgets):
        for rung in rungs:
            per_seq = flops_per_step(rung, study.flop_convention, 1)
            sequences = max(1, round(C / per_seq / unit)) * unit
            base_batch, base_lr, beta2 = run_batch(C, rung, study)
            for b in sorted(sweep.batches):
                lr = base_lr * math.sqrt(b / base_batch)
                got = _checked(C, rung, study, epoch_tokens, sequences // b, b, lr, beta2)
                if isinstance(got, Dropped):
                    got = dataclasses.replace(got, reason=f"batch {b}: {got.reason}")
                (points if isinstance(got, Point) else dropped).append(got)
    for C in sweep.budgets:
        if len({p.rung.params.total for p in points if p.C == C}) < 2:
            raise StudyError(f"study.hparam_sweep.budgets: {C:.3g} FLOPs keeps fewer than 2 sizes "
                             f"({sum(d.C == C for d in dropped)} candidates dropped); raise the budget or lower "
                             "study.min_steps")
    return points, dropped


def tokens_grid(rungs: Sequence[ladder_lib.Rung], study: Study, epoch_tokens: int
                ) -> tuple[list[Point], list[Dropped]]:
    """study.lr_sweep.tokens: every size trains the same number of tokens (an lr-transfer sweep compares
    widths at one number of steps), so its budget is those tokens times its FLOPs per token; each is
    then solved as a grid point (batch halved to study.min_steps as everywhere, the same at every width
    of a recipe with one batch). Raises StudyError when fewer than 2 sizes can train."""
    tokens = study.sweep.tokens
    points, dropped = [], []
    for rung in rungs:
        C = tokens * flops.flops_per_token(rung.model)[study.flop_convention]
        got = solve(C, rung, study, epoch_tokens)
        if isinstance(got, Point):
            got = dataclasses.replace(got, C=got.flops)  # the budget it spends, not the nominal one
        (points if isinstance(got, Point) else dropped).append(got)
    if len(points) < 2:
        why = "; ".join(f"N={d.N:,}: {d.reason}" for d in dropped)
        raise StudyError(f"study.lr_sweep.tokens={tokens}: {len(points)} size(s) can train ({why})")
    return points, dropped


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
