"""Plan an IsoFLOP study: `python -m experiments.plan --config=experiments/configs/isoflop_cpu.py`.

For every budget C and ladder size N the planner solves an integer number of steps so the run's
counted FLOPs (under `study.flop_convention`, every convention recorded in the runs' run.json) land
within ±1% of C, drops the candidates that cannot train well (too few steps, tokens per parameter out
of bounds, more tokens than one epoch of the training split) with their reason, prints the table and
writes `<study.dir>/plan.json` atomically:

    {"study": {...the study section..., "hash": sha256 of (study, runs)},
     "runs": [RunSpec.to_dict(), ...], "dropped": [{"C": .., "N": .., "reason": ..}, ...]}

Each RunSpec's `config_file` is the study config file (whose `get_config()` is also a valid run config)
and its `overrides` are the dotted run-config keys that make that run, so
`python -m scaling.train --config=<config_file> --workdir=DIR --config.<k>=<v> ...` trains it.

`study.mode = "wsd_branches"` plans warmup-stable-decay cooldown branches (Hägele et al. 2024): per size
one constant-LR trunk, and one cooldown per grid point branching from the trunk's checkpoint, so one
trunk yields every D that size needs. Bad input exits 2 with one line, before anything is written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import sys
from typing import Any, Callable, Sequence

import ml_collections

from experiments import ladder as ladder_lib
from experiments.spec import RunSpec
from models.config import ConfigError
from scaling import flops, io, validate

MODES = ("independent", "wsd_branches")
EXECUTORS = ("local", "slurm")
FLOP_TOLERANCE = 0.01  # counted FLOPs within ±1% of the budget


class StudyError(ValueError):
    """Bad study input; the message is one line naming the field and the fix (the CLI exits 2)."""


@dataclasses.dataclass(frozen=True)
class Study:
    """The parsed `study` section (documented field by field in experiments/configs/isoflop_cpu.py)."""
    name: str
    dir: str
    budgets: tuple[float, ...]
    recipe: str
    min_params: float
    max_params: float
    growth: float
    tokens_per_param: tuple[float, float]
    min_steps: int
    flop_convention: str
    schedule: str
    mode: str
    wsd_cooldown_frac: float
    wsd_checkpoint_every: int
    train_tokens_per_epoch: int
    assumed_flops_per_second: float
    executor: str
    workers: int

    @classmethod
    def from_config(cls, s: ml_collections.ConfigDict) -> "Study":
        study = cls(name=str(s.name), dir=str(s.dir), budgets=tuple(float(b) for b in s.budgets),
                    recipe=str(s.recipe), min_params=float(s.ladder.min_params),
                    max_params=float(s.ladder.max_params), growth=float(s.ladder.growth),
                    tokens_per_param=tuple(float(x) for x in s.tokens_per_param),
                    min_steps=int(s.min_steps), flop_convention=str(s.flop_convention),
                    schedule=str(s.schedule), mode=str(s.mode),
                    wsd_cooldown_frac=float(s.wsd.cooldown_frac),
                    wsd_checkpoint_every=int(s.wsd.checkpoint_every),
                    train_tokens_per_epoch=int(s.train_tokens_per_epoch),
                    assumed_flops_per_second=float(s.assumed_flops_per_second),
                    executor=str(s.executor), workers=int(s.workers))
        study.validate()
        return study

    def validate(self) -> None:
        checks = [
            (bool(self.budgets) and all(b > 0 for b in self.budgets), "study.budgets",
             f"{self.budgets} must be a non-empty list of positive FLOP counts"),
            (self.recipe in ladder_lib.RECIPES, "study.recipe",
             f"{self.recipe!r} is not one of {sorted(ladder_lib.RECIPES)}"),
            (len(self.tokens_per_param) == 2 and 0 < self.tokens_per_param[0] < self.tokens_per_param[1],
             "study.tokens_per_param", f"{self.tokens_per_param} must be (low, high) with 0 < low < high"),
            (self.min_steps >= 1, "study.min_steps", f"{self.min_steps} must be >= 1"),
            (self.flop_convention in flops.CONVENTIONS, "study.flop_convention",
             f"{self.flop_convention!r} is not one of {flops.CONVENTIONS}"),
            (self.schedule in ("cosine", "wsd", "constant"), "study.schedule",
             f"{self.schedule!r} is not one of cosine, wsd, constant"),
            (self.mode in MODES, "study.mode", f"{self.mode!r} is not one of {MODES}"),
            (self.mode != "wsd_branches" or self.schedule == "wsd", "study.schedule",
             f"{self.schedule!r} with study.mode='wsd_branches': set study.schedule='wsd'"),
            (0 < self.wsd_cooldown_frac < 1, "study.wsd.cooldown_frac",
             f"{self.wsd_cooldown_frac} must be in (0, 1)"),
            (self.wsd_checkpoint_every >= 1, "study.wsd.checkpoint_every",
             f"{self.wsd_checkpoint_every} must be >= 1"),
            (self.train_tokens_per_epoch >= 0, "study.train_tokens_per_epoch",
             f"{self.train_tokens_per_epoch} must be >= 0 (0: ask scaling.data)"),
            (self.assumed_flops_per_second > 0, "study.assumed_flops_per_second",
             f"{self.assumed_flops_per_second} must be positive"),
            (self.executor in EXECUTORS, "study.executor", f"{self.executor!r} is not one of {EXECUTORS}"),
            (self.workers >= 1, "study.workers", f"{self.workers} must be >= 1"),
        ]
        for ok, field, message in checks:
            if not ok:
                raise StudyError(f"{field}={message}")
        if not 0 < self.min_params <= self.max_params or self.growth <= 1:
            raise StudyError(f"study.ladder: need 0 < min_params ({self.min_params:.3g}) <= max_params "
                             f"({self.max_params:.3g}) and growth ({self.growth}) > 1")


@dataclasses.dataclass(frozen=True)
class Dropped:
    C: float
    N: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Plan:
    study: dict[str, Any]  # the study section as given, plus "hash"
    runs: tuple[RunSpec, ...]
    dropped: tuple[Dropped, ...]
    seconds: dict[str, float]  # estimated wall time per run_id
    seconds_source: str  # "probe" or "assumed <x> FLOP/s"
    cosine_equivalent_flops: float  # what one cosine run per grid point would cost
    total_flops: float  # what the planned runs cost (trunks counted once)

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "runs": [r.to_dict() for r in self.runs],
                "dropped": [dataclasses.asdict(d) for d in self.dropped]}


@dataclasses.dataclass(frozen=True)
class _Point:
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


def solve(C: float, rung: ladder_lib.Rung, study: Study, epoch_tokens: int) -> _Point | Dropped:
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
    return _Point(C, rung, steps, steps * per_step)


def grid(rungs: Sequence[ladder_lib.Rung], study: Study, epoch_tokens: int
         ) -> tuple[list[_Point], list[Dropped]]:
    """Every (C, N) of the study, solved; raises StudyError for a budget nothing can train."""
    points, dropped = [], []
    for C in sorted(study.budgets):
        solved = [solve(C, r, study, epoch_tokens) for r in rungs]
        kept = [p for p in solved if isinstance(p, _Point)]
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


def _warmup(rung: ladder_lib.Rung, min_steps: int, recipe: ladder_lib.Recipe) -> int:
    tokens_per_step = rung.global_batch * rung.model.seq_len
    return min(math.ceil(rung.warmup_tokens / tokens_per_step), int(recipe.warmup_cap * min_steps))


def run_id(C: float, n: int) -> str:
    return f"C{C:.3g}-N{n:.3g}"


def _spec(p: _Point, study: Study, config_file: str, base: dict, warmup: int, **extra) -> RunSpec:
    r = p.rung
    overrides = {**base, **r.shape_overrides, "train.steps": p.steps,
                 "train.global_batch": r.global_batch, "train.lr": r.lr,
                 "train.warmup_steps": warmup, "train.schedule": study.schedule}
    overrides.update(extra.pop("overrides", {}))
    return RunSpec(run_id=extra.pop("run_id", run_id(p.C, r.params.total)), budget=p.C,
                   flop_convention=study.flop_convention, flops=p.flops, params=r.params.total,
                   non_embedding_params=r.params.non_embedding,
                   tokens=p.steps * p.tokens_per_step, steps=p.steps, global_batch=r.global_batch,
                   seq_len=r.model.seq_len, lr=r.lr, warmup_steps=warmup,
                   schedule=overrides["train.schedule"], config_file=config_file,
                   overrides=overrides, **extra)


def independent_runs(points: list[_Point], study: Study, config_file: str, base: dict
                     ) -> tuple[list[RunSpec], dict[str, float]]:
    recipe = ladder_lib.RECIPES[study.recipe]
    runs = [_spec(p, study, config_file, base, _warmup(p.rung, p.steps, recipe)) for p in points]
    return runs, {r.run_id: r.flops for r in runs}


def wsd_cooldown_start(steps: int, cooldown_frac: float) -> int:
    """First step of the cooldown, exactly as scaling.optim's WSD schedule computes it."""
    return steps - max(int(round(cooldown_frac * steps)), 1)


def wsd_runs(points: list[_Point], study: Study, config_file: str, base: dict
             ) -> tuple[list[RunSpec], dict[str, float]]:
    """Per size: one constant-LR trunk; every grid point a cooldown branching off it.

    A branch resumes the trunk's checkpoint at `branch_step` (a multiple of study.wsd.checkpoint_every,
    at or before its cooldown start): until then the trunk's constant schedule and the branch's WSD
    schedule give the same learning rate at every step (same warmup, same peak), and the batch at step i
    is a pure function of (seed, i), so the branch equals a from-scratch WSD run of its length.
    """
    recipe = ladder_lib.RECIPES[study.recipe]
    every, frac = study.wsd_checkpoint_every, study.wsd_cooldown_frac
    runs: list[RunSpec] = []
    trained: dict[str, float] = {}
    for n in sorted({p.rung.params.total for p in points}):
        mine = [p for p in points if p.rung.params.total == n]
        warmup = _warmup(mine[0].rung, min(p.steps for p in mine), recipe)
        per_step = mine[0].flops / mine[0].steps
        starts = {p.C: wsd_cooldown_start(p.steps, frac) // every * every for p in mine}
        starts = {C: (b if b > warmup else 0) for C, b in starts.items()}
        trunk_steps = max(starts.values())
        trunk_id = f"trunk-N{n:.3g}"
        if trunk_steps:
            trunk_point = dataclasses.replace(mine[0], C=trunk_steps * per_step, steps=trunk_steps,
                                              flops=trunk_steps * per_step)
            runs.append(_spec(trunk_point, study, config_file, base, warmup, run_id=trunk_id,
                              overrides={"train.schedule": "constant",
                                         "checkpoint.every_steps": every,
                                         "checkpoint.keep": trunk_steps // every + 1}))
            trained[trunk_id] = trunk_point.flops
        for p in mine:
            b = starts[p.C]
            spec = _spec(p, study, config_file, base, warmup, overrides={"train.cooldown_frac": frac},
                         branch_from=trunk_id if b else None, branch_step=b or None)
            runs.append(spec)
            trained[spec.run_id] = (p.steps - b) * per_step
    trunks_first = sorted(runs, key=lambda r: (r.branch_from is not None, r.budget, r.params))
    return trunks_first, trained


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


def epoch_tokens(config: ml_collections.ConfigDict, study: Study) -> int:
    """Target tokens in one pass over the training split: the study field, else scaling.data's count."""
    if study.train_tokens_per_epoch:
        return study.train_tokens_per_epoch
    from scaling import data
    try:
        pipe = data.load(config.data, config.model.seq_len, config.seed, config.train.global_batch,
                         config.eval.tokens, config.eval.batch)
    except data.DataError as e:
        raise StudyError(f"{e} (or set study.train_tokens_per_epoch)") from None
    return pipe.train_tokens_per_epoch


def estimate_seconds(runs: Sequence[RunSpec], trained_flops: dict[str, float], config, study: Study,
                     throughput: Callable[[ml_collections.ConfigDict], float] | None
                     ) -> tuple[dict[str, float], str]:
    """Wall time per run: measured tokens/s of its shape when a probe is given, else assumed FLOP/s."""
    if throughput is None:
        return ({r.run_id: trained_flops[r.run_id] / study.assumed_flops_per_second for r in runs},
                f"assumed {study.assumed_flops_per_second:.3g} FLOP/s")
    by_shape: dict[int, float] = {}
    seconds = {}
    for r in runs:
        if r.params not in by_shape:
            by_shape[r.params] = throughput(run_config(config, r))
        tokens = trained_flops[r.run_id] / r.flops * r.tokens  # a branch trains only its cooldown
        seconds[r.run_id] = tokens / by_shape[r.params]
    return seconds, "probe"


def study_hash(study: dict, runs: Sequence[RunSpec]) -> str:
    """Identity of a plan: a launcher refuses a study directory whose plan changed under it."""
    blob = json.dumps({"study": study, "runs": [r.to_dict() for r in runs]}, sort_keys=True,
                      default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def make_plan(config: ml_collections.ConfigDict, config_file: str, *, base_overrides: dict | None = None,
              epoch: int | None = None,
              throughput: Callable[[ml_collections.ConfigDict], float] | None = None) -> Plan:
    """The whole plan, computed and validated; nothing is written."""
    study = Study.from_config(config.study)
    try:
        base_model = validate.model_config(config)
    except ConfigError as e:
        raise StudyError(str(e)) from None
    rungs = ladder_lib.ladder(ladder_lib.RECIPES[study.recipe], base_model, study.min_params,
                              study.max_params, study.growth, study.flop_convention)
    if not rungs:
        raise StudyError(f"study.ladder: no {study.recipe!r} shape between {study.min_params:.3g} and "
                         f"{study.max_params:.3g} parameters; widen the range")
    epoch = epoch_tokens(config, study) if epoch is None else epoch
    points, dropped = grid(rungs, study, epoch)
    make = wsd_runs if study.mode == "wsd_branches" else independent_runs
    runs, trained = make(points, study, os.path.abspath(config_file), dict(base_overrides or {}))
    check_runs(config, runs)
    seconds, source = estimate_seconds(runs, trained, config, study, throughput)
    study_dict = config.study.to_dict()
    study_dict["hash"] = study_hash(study_dict, runs)
    return Plan(study=study_dict, runs=tuple(runs), dropped=tuple(dropped), seconds=seconds,
                seconds_source=source, cosine_equivalent_flops=sum(p.flops for p in points),
                total_flops=sum(trained.values()))


def write_plan(study_dir: pathlib.Path, plan: Plan) -> pathlib.Path:
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / "plan.json"
    io.atomic_write_json(path, plan.to_json())
    return path


def check_study_dir(directory: str) -> pathlib.Path:
    """The study directory, resolved; raises StudyError if it cannot be created or written (creates nothing)."""
    path = pathlib.Path(directory).expanduser().resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a directory" if not existing.is_dir() else "is not writable"
        raise StudyError(f"study.dir={directory} cannot be written ({existing} {what}): pass "
                         "--study_dir or set study.dir to a writable directory")
    return path


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def format_table(plan: Plan) -> str:
    """The plan as the researcher reads it: one row per run, then totals and dropped candidates."""
    wsd = any(r.branch_from or r.run_id.startswith("trunk-") for r in plan.runs)
    head = ["run", "C", "N", "N_nonemb", "D", "D/N", "steps", "batch", "lr", "warmup", "wall"]
    head += ["branch@"] if wsd else []
    rows = [head]
    for r in plan.runs:
        row = [r.run_id, f"{r.budget:.3g}", f"{r.params:,}", f"{r.non_embedding_params:,}",
               f"{r.tokens:.3g}", f"{r.tokens_per_param:.1f}", str(r.steps), str(r.global_batch),
               f"{r.lr:.2e}", str(r.warmup_steps), _duration(plan.seconds[r.run_id])]
        if wsd:
            row.append(f"{r.branch_step}" if r.branch_from else ("trunk" if r.run_id.startswith("trunk-") else "-"))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.append(f"{len(plan.runs)} runs, {plan.total_flops:.3g} FLOPs ({plan.study['flop_convention']}), "
                 f"estimated {_duration(sum(plan.seconds.values()))} of training one run at a time "
                 f"[{plan.seconds_source}]")
    if wsd:
        saved = 1 - plan.total_flops / plan.cosine_equivalent_flops
        lines.append(f"WSD branches: {plan.total_flops:.3g} FLOPs against {plan.cosine_equivalent_flops:.3g} "
                     f"for one cosine run per point: {saved:.0%} of the compute saved")
    for d in plan.dropped:
        lines.append(f"dropped C={d.C:.3g} N={d.N:,}: {d.reason}")
    return "\n".join(lines)


def _load_file_config(config_file: str) -> ml_collections.ConfigDict:
    import importlib.util
    spec = importlib.util.spec_from_file_location("_study_config", config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def command_line_overrides(config: ml_collections.ConfigDict, config_file: str) -> dict[str, Any]:
    """Run-config keys changed on the planner's command line: every run must carry them too."""
    file_values = _flatten(_load_file_config(config_file).to_dict())
    return {k: v for k, v in _flatten(config.to_dict()).items()
            if not k.startswith("study.") and file_values.get(k) != v}


def _probe(mode: str) -> Callable[[ml_collections.ConfigDict], float] | None:
    import importlib.util
    available = importlib.util.find_spec("scaling.probe") is not None
    if mode == "on" and not available:
        raise StudyError("--probe=on: scaling.probe is not available; use --probe=off (assumed FLOP/s)")
    if mode == "off" or not available:
        return None
    from scaling import probe
    return probe.tokens_per_second


def main(argv: list[str] | None = None) -> int:
    from absl import flags as absl_flags
    from ml_collections import config_flags

    argv = sys.argv if argv is None else argv
    fv = absl_flags.FlagValues()
    # sys_argv: config_flags finds the --config.<field> overrides there, not in what fv() parses.
    config_flags.DEFINE_config_file("config", None, "Study config file (get_config() with a `study` "
                                    "section).", flag_values=fv, lock_config=True, sys_argv=argv)
    absl_flags.DEFINE_string("study_dir", None, "Study directory (default: study.dir).", flag_values=fv)
    absl_flags.DEFINE_enum("probe", "auto", ["auto", "on", "off"], "Wall-time estimate from a measured "
                           "throughput probe per size (auto: when scaling.probe exists).", flag_values=fv)
    try:
        fv(argv)
        if fv["config"].value is None:
            raise StudyError("--config is required: e.g. experiments/configs/isoflop_cpu.py")
        config, config_file = fv.config, config_flags.get_config_filename(fv["config"])
        if "study" not in config:
            raise StudyError(f"--config={config_file} has no `study` section: it is not a study config")
        study = Study.from_config(config.study)
        study_dir = check_study_dir(fv.study_dir or study.dir)
        plan = make_plan(config, config_file, base_overrides=command_line_overrides(config, config_file),
                         throughput=_probe(fv.probe))
    except (StudyError, ConfigError, absl_flags.Error, AttributeError, KeyError, TypeError,
            ValueError, FileNotFoundError) as e:
        print(f"error: {' '.join((str(e).strip() or type(e).__name__).splitlines()[0].split())}",
              file=sys.stderr)
        return 2
    path = write_plan(study_dir, plan)
    print(format_table(plan))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
