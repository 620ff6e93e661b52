"""The `study` section of a study config as a typed, validated record (fields: configs/isoflop_cpu.py)."""
from __future__ import annotations

import dataclasses
import os
import pathlib

import ml_collections

from experiments import ladder as ladder_lib
from experiments.executors import EXECUTORS
from experiments.planning.errors import StudyError
from experiments.planning.prior import NO_PRIOR, Prior
from experiments.planning.validation import Validation
from scaling import flops
from scaling.config import SCHEDULES

MODES = ("independent", "wsd_branches", "lr_sweep")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """`study.lr_sweep`: every size target x every lr x every beta2, each run spending `budget`."""
    budget: float
    sizes: tuple[float, ...]  # ladder targets (total parameters), mapped through the recipe
    lrs: tuple[float, ...]  # peak learning rates (absolute: the same grid for every size)
    beta2s: tuple[float, ...]

    @classmethod
    def from_config(cls, s) -> "Sweep":
        if s is None:
            raise StudyError("study.lr_sweep: mode 'lr_sweep' needs a study.lr_sweep section "
                             "(budget, sizes, lrs, beta2s); see experiments/configs/lr_sweep_cpu.py")
        sweep = cls(float(s.budget), tuple(float(x) for x in s.sizes), tuple(float(x) for x in s.lrs),
                    tuple(float(x) for x in s.beta2s))
        for name, values in (("sizes", sweep.sizes), ("lrs", sweep.lrs)):
            if not values or min(values) <= 0:
                raise StudyError(f"study.lr_sweep.{name}={values} must be a non-empty list of positive numbers")
        if not sweep.beta2s or not all(0 < b < 1 for b in sweep.beta2s):
            raise StudyError(f"study.lr_sweep.beta2s={sweep.beta2s} must be a non-empty list in (0, 1)")
        if sweep.budget <= 0:
            raise StudyError(f"study.lr_sweep.budget={sweep.budget} must be a positive FLOP count")
        return sweep


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
    # Sizes per budget: the ladder rungs within `span` decades of the prior's N_opt(C), at least
    # `n_sizes` of them (prior.kind == "none": every rung the tokens_per_param band allows).
    prior: Prior = NO_PRIOR
    span: float = 0.4
    n_sizes: int = 3  # the fewest a parabola needs: a config without study.sizes.count gets this
    # Repeated seeds: the `seed_points` points of each budget nearest the prior's N_opt run at every
    # seed of `seeds`; the others at seeds[0].
    seeds: tuple[int, ...] = (0,)
    seed_points: int = 0
    sweep: Sweep | None = None  # mode == "lr_sweep": sizes x learning rates x beta2 at one budget
    noise: float = 0.0  # forecast: std of one run's final eval loss (nats), when noise_from is unset
    noise_from: str = ""  # forecast: a previous study's points.csv (median seed std) or results.csv
    simulations: int = 0  # forecast: Monte Carlo studies (0: no forecast)
    # Where the runs train (memory_fit.py, estimate.py). device_kind "": the planning machine's kind;
    # device_memory_gb 0: the planning device's memory (none on CPU).
    device_kind: str = ""
    assumed_mfu: float = 0.0  # with device_kind's peak: the FLOP/s assumed without a probe (0: unset)
    devices_per_run: int = 1  # devices of one run (its mesh's -1 axis)
    device_memory_gb: float = 0.0
    validation: Validation = Validation()  # runs beyond the grid that test its prediction (validation.py)

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
                    executor=str(s.executor), workers=int(s.workers),
                    prior=Prior.from_config(s.get("prior")), span=float(s.get("sizes", {}).get("span", 0.4)),
                    n_sizes=int(s.get("sizes", {}).get("count", cls.n_sizes)),
                    seeds=tuple(int(x) for x in s.get("seeds", (0,))), seed_points=int(s.get("seed_points", 0)),
                    sweep=Sweep.from_config(s.lr_sweep) if str(s.mode) == "lr_sweep" else None,
                    noise=float(s.get("noise", 0.0)), noise_from=str(s.get("noise_from", "")),
                    simulations=int(s.get("simulations", 0)),
                    device_kind=str(s.get("device_kind", "") or ""),
                    assumed_mfu=float(s.get("assumed_mfu", 0) or 0),
                    devices_per_run=int(s.get("devices_per_run", 1) or 1),  # 0 reads as 1, as before
                    device_memory_gb=float(s.get("device_memory_gb", 0) or 0),
                    validation=Validation.from_config(s.get("validation")))
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
            (self.schedule in SCHEDULES, "study.schedule",
             f"{self.schedule!r} is not one of {', '.join(SCHEDULES)}"),
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
            (self.span > 0, "study.sizes.span", f"{self.span} must be > 0 decades"),
            (self.n_sizes >= 3, "study.sizes.count", f"{self.n_sizes} must be >= 3 (a parabola needs 3)"),
            (bool(self.seeds) and len(set(self.seeds)) == len(self.seeds) and min(self.seeds) >= 0,
             "study.seeds", f"{self.seeds} must be distinct non-negative integers"),
            (self.seed_points >= 0, "study.seed_points", f"{self.seed_points} must be >= 0"),
            (self.noise >= 0, "study.noise", f"{self.noise} must be >= 0 nats"),
            (self.simulations >= 0, "study.simulations", f"{self.simulations} must be >= 0"),
            (0 <= self.assumed_mfu <= 1, "study.assumed_mfu", f"{self.assumed_mfu} must be in [0, 1]"),
            (self.devices_per_run >= 1, "study.devices_per_run", f"{self.devices_per_run} must be >= 1"),
            (self.device_memory_gb >= 0, "study.device_memory_gb",
             f"{self.device_memory_gb} must be >= 0 (0: the planning device's)"),
        ]
        for ok, field, message in checks:
            if not ok:
                raise StudyError(f"{field}={message}")
        if not 0 < self.min_params <= self.max_params or self.growth <= 1:
            raise StudyError(f"study.ladder: need 0 < min_params ({self.min_params:.3g}) <= max_params "
                             f"({self.max_params:.3g}) and growth ({self.growth}) > 1")


def check_study_dir(directory: str) -> pathlib.Path:
    """The study directory, resolved; raises StudyError if it cannot be created or written (creates nothing)."""
    path = pathlib.Path(directory).expanduser().resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a directory" if not existing.is_dir() else "is not writable"
        raise StudyError(f"study.dir={directory} cannot be written ({existing} {what}): pass "
                         "--study or set study.dir to a writable directory")
    return path
