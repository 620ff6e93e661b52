"""Solved grid points -> RunSpec records: one run per point, or WSD trunks with cooldown branches.

Each RunSpec's `overrides` are the dotted run-config keys that make that run, so
`python -m scaling.train --config=<config_file> --config.<k>=<v> ...` trains it; `run_config` is the
config the trainer will see and `check_runs` puts every planned run through the trainer's validation.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import ml_collections

from experiments import ladder as ladder_lib
from experiments.planning.grid import Point
from experiments.planning.errors import StudyError
from experiments.planning.study import Study
from experiments.spec import RunSpec
from models.config import ConfigError
from scaling import validate


def warmup_steps(rung: ladder_lib.Rung, min_steps: int, recipe: ladder_lib.Recipe, batch: int = 0) -> int:
    tokens_per_step = (batch or rung.global_batch) * rung.model.seq_len
    return min(math.ceil(rung.warmup_tokens / tokens_per_step), int(recipe.warmup_cap * min_steps))


def run_id(C: float, n: int, seed: int = 0) -> str:
    return f"C{C:.3g}-N{n:.3g}" + (f"-s{seed}" if seed else "")


def make_spec(p: Point, study: Study, config_file: str, base: dict, warmup: int, *, seed: int = 0,
              lr: float | None = None, beta2: float | None = None, **extra) -> RunSpec:
    r = p.rung
    lr = p.peak_lr if lr is None else lr
    beta2 = (p.beta2 or r.b2) if beta2 is None else beta2
    overrides = {**base, **r.shape_overrides, "train.steps": p.steps,
                 "train.global_batch": p.global_batch, "train.lr": lr, "train.b2": beta2,
                 "train.warmup_steps": warmup, "train.schedule": study.schedule}
    if seed:
        overrides["seed"] = seed
    overrides.update(extra.pop("overrides", {}))
    return RunSpec(run_id=extra.pop("run_id", run_id(p.C, r.params.total, seed)), budget=p.C,
                   flop_convention=study.flop_convention, flops=p.flops, params=r.params.total,
                   non_embedding_params=r.params.non_embedding,
                   tokens=p.steps * p.tokens_per_step, steps=p.steps, global_batch=p.global_batch,
                   seq_len=r.model.seq_len, lr=lr, warmup_steps=warmup,
                   schedule=overrides["train.schedule"], config_file=config_file,
                   overrides=overrides, seed=seed, beta2=beta2, **extra)


def seeds_of(points: list[Point], study: Study) -> dict[tuple[float, int], tuple[int, ...]]:
    """Seeds per (C, N): every study seed at the study.seed_points points of a budget nearest its
    prior N_opt (where the vertex is decided: repeats there measure the noise the fit sees), the
    first seed elsewhere."""
    out = {(p.C, p.rung.params.total): study.seeds[:1] for p in points}
    if study.prior.kind == "none" or len(study.seeds) < 2:
        return out
    for C in {p.C for p in points}:
        centre = math.log10(study.prior.n_opt(C))
        mine = sorted((p for p in points if p.C == C),
                      key=lambda p: abs(math.log10(p.rung.params.total) - centre))
        for p in mine[:study.seed_points]:
            out[(C, p.rung.params.total)] = study.seeds
    return out


def independent_runs(points: list[Point], study: Study, config_file: str, base: dict
                     ) -> tuple[list[RunSpec], dict[str, float]]:
    recipe = ladder_lib.RECIPES[study.recipe]
    seeds = seeds_of(points, study)
    runs = [make_spec(p, study, config_file, base, warmup_steps(p.rung, p.steps, recipe, p.global_batch),
                      seed=s)
            for p in points for s in seeds[(p.C, p.rung.params.total)]]
    return runs, {r.run_id: r.flops for r in runs}


def sweep_runs(points: list[Point], study: Study, config_file: str, base: dict
               ) -> tuple[list[RunSpec], dict[str, float]]:
    """study.mode='lr_sweep': each point (one budget, the sweep's sizes) at every lr x beta2, and under
    each of the sweep's parametrizations when it names them.

    With fixed tokens (an lr-transfer sweep) every width also warms up for the same steps, the recipe's
    cap (warmup_cap of the run): the rung's rule (as many tokens as parameters) would give each width
    its own schedule, and muP's claim is that one schedule's best lr does not move with width."""
    recipe, sweep = ladder_lib.RECIPES[study.recipe], study.sweep
    runs = []
    for p in points:
        warmup = (int(recipe.warmup_cap * p.steps) if sweep.tokens
                  else warmup_steps(p.rung, p.steps, recipe, p.global_batch))
        for param in sweep.parametrizations or (None,):
            for b2 in sweep.beta2s:
                for lr in sweep.lrs:
                    rid = f"{_sweep_prefix(p, sweep)}-lr{lr:.3g}-b{b2:g}" + (f"-{param}" if param else "")
                    runs.append(make_spec(p, study, config_file, base, warmup, lr=lr, beta2=b2, run_id=rid,
                                          role="lr_sweep",
                                          overrides={"model.parametrization": param} if param else {}))
    return runs, {r.run_id: r.flops for r in runs}


def _sweep_prefix(p: Point, sweep) -> str:
    """What a run id of the sweep starts with: the width (w<d_model>) of a widths sweep, the size of a
    fixed-token one, else C and N as every grid run's."""
    if sweep.widths:
        return f"w{p.rung.model.d_model}"
    return f"N{p.rung.params.total:.3g}" if sweep.tokens else run_id(p.C, p.rung.params.total)


def hparam_sweep_runs(points: list[Point], study: Study, config_file: str, base: dict
                      ) -> tuple[list[RunSpec], dict[str, float]]:
    """study.mode='hparam_sweep': each (C, N, batch) point at every lr (x beta2) of study.hparam_sweep;
    lr_multipliers scale the point's own lr (the recipe's at that batch, or the law's)."""
    recipe, sweep = ladder_lib.RECIPES[study.recipe], study.hparam_sweep
    runs = []
    for p in points:
        warmup = warmup_steps(p.rung, p.steps, recipe, p.global_batch)
        for b2 in sweep.beta2s or (None,):
            for x in sweep.lr_grid:
                lr, tag = (p.peak_lr * x, f"lrx{x:g}") if sweep.lr_multipliers else (x, f"lr{x:.3g}")
                rid = f"{run_id(p.C, p.rung.params.total)}-B{p.global_batch}-{tag}" + (f"-b{b2:g}" if b2 else "")
                runs.append(make_spec(p, study, config_file, base, warmup, lr=lr, beta2=b2, run_id=rid,
                                      role="hparam_sweep"))
    return runs, {r.run_id: r.flops for r in runs}


def wsd_cooldown_start(steps: int, cooldown_frac: float) -> int:
    """First step of the cooldown, exactly as scaling.optim's WSD schedule computes it."""
    return steps - max(int(round(cooldown_frac * steps)), 1)


def wsd_runs(points: list[Point], study: Study, config_file: str, base: dict
             ) -> tuple[list[RunSpec], dict[str, float]]:
    """Per size and seed: one constant-LR trunk; every grid point a cooldown branching off it.

    A branch resumes the trunk's checkpoint at `branch_step` (a multiple of study.wsd.checkpoint_every,
    at or before its cooldown start): until then the trunk's constant schedule and the branch's WSD
    schedule give the same learning rate at every step (same warmup, same peak), and the batch at step i
    is a pure function of (seed, i), so the branch equals a from-scratch WSD run of its length. A seed
    repeat (study.seeds) needs its own trunk of that seed: init and data order differ from step 0.
    """
    seeds = seeds_of(points, study)
    runs: list[RunSpec] = []
    trained: dict[str, float] = {}
    for n in sorted({p.rung.params.total for p in points}):
        mine = [p for p in points if p.rung.params.total == n]
        if len({p.global_batch for p in mine}) > 1:
            raise StudyError(f"study.mode=wsd_branches: size N={n:,} needs different batches across budgets "
                             "to reach study.min_steps, so one trunk cannot serve them; raise the smallest "
                             "budget or lower study.min_steps")
        for seed in sorted({s for p in mine for s in seeds[(p.C, n)]}):
            _trunk_and_branches([p for p in mine if seed in seeds[(p.C, n)]], seed, study, config_file, base,
                                runs, trained)
    trunks_first = sorted(runs, key=lambda r: (r.branch_from is not None, r.budget, r.params, r.seed))
    return trunks_first, trained


def _trunk_and_branches(mine: list[Point], seed: int, study: Study, config_file: str, base: dict,
                        runs: list[RunSpec], trained: dict[str, float]) -> None:
    recipe = ladder_lib.RECIPES[study.recipe]
    every, frac = study.wsd_checkpoint_every, study.wsd_cooldown_frac
    n = mine[0].rung.params.total
    warmup = warmup_steps(mine[0].rung, min(p.steps for p in mine), recipe, mine[0].global_batch)
    per_step = mine[0].flops / mine[0].steps
    starts = {p.C: wsd_cooldown_start(p.steps, frac) // every * every for p in mine}
    starts = {C: (b if b > warmup else 0) for C, b in starts.items()}
    trunk_steps = max(starts.values())
    trunk_id = f"trunk-N{n:.3g}" + (f"-s{seed}" if seed else "")
    if trunk_steps:
        trunk_point = dataclasses.replace(mine[0], C=trunk_steps * per_step, steps=trunk_steps,
                                          flops=trunk_steps * per_step)
        runs.append(make_spec(trunk_point, study, config_file, base, warmup, run_id=trunk_id, seed=seed,
                              overrides={"train.schedule": "constant", "checkpoint.every_steps": every,
                                         "checkpoint.keep": trunk_steps // every + 1},
                              role="trunk"))
        trained[trunk_id] = trunk_point.flops
    for p in mine:
        b = starts[p.C]
        spec = make_spec(p, study, config_file, base, warmup, seed=seed,
                         overrides={"train.cooldown_frac": frac},
                         branch_from=trunk_id if b else None, branch_step=b or None)
        runs.append(spec)
        trained[spec.run_id] = (p.steps - b) * per_step


def run_config(config: ml_collections.ConfigDict, spec: RunSpec) -> ml_collections.ConfigDict:
    """The run config the trainer will see for `spec`: the study config plus its overrides."""
    out = ml_collections.ConfigDict(config.to_dict())
    try:
        out.update_from_flattened_dict(dict(spec.overrides))
    except (KeyError, AttributeError, TypeError) as e:
        raise StudyError(f"run {spec.run_id}: override does not fit the run config ({e})") from None
    return out


def check_runs(config: ml_collections.ConfigDict, runs: Sequence[RunSpec]) -> None:
    """Every planned run passes the trainer's own validation (one device), before anything is written."""
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise StudyError(f"study.ladder: two sizes share a run id ({ids}); widen study.ladder.growth")
    for spec in runs:
        try:
            validate.check(run_config(config, spec), device_count=1)
        except ConfigError as e:
            raise StudyError(f"run {spec.run_id}: {e}") from None
