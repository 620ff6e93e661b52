"""The `study` section of a study config as a typed, validated record (fields: configs/isoflop_cpu.py)."""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import ml_collections

from experiments import ladder as ladder_lib
from experiments.executors import EXECUTORS
from experiments.planning import law_sections
from experiments.planning.errors import StudyError
from experiments.planning.hparams import SECTION_KEY as HPARAMS_LAW_KEY, HparamLaw, HparamSweep
from experiments.planning.prior import NO_PRIOR, Prior
from experiments.planning.validation import Validation
from models.config import PARAMETRIZATIONS
from scaling import flops
from scaling.config import SCHEDULES

MODES = ("independent", "wsd_branches", "lr_sweep", "hparam_sweep", *law_sections.MODES)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """`study.lr_sweep`: every size target x every lr x every beta2, each run spending `budget`.

    An lr-transfer sweep (mup_transfer_cpu.py) gives instead `widths` (d_model of the recipe's
    width-only family, at depth `n_layer`), `tokens` (every run trains this many tokens: muP's transfer
    is a statement at a fixed number of steps) and `parametrizations` (each point trained under each).
    Left out, they keep their defaults and the plan is the one lr_sweep always made."""
    budget: float  # 0 with `tokens`
    sizes: tuple[float, ...]  # ladder targets (total parameters), mapped through the recipe; () with widths
    lrs: tuple[float, ...]  # peak learning rates (absolute: the same grid for every size)
    beta2s: tuple[float, ...]
    widths: tuple[int, ...] = ()  # d_model values (the recipe's width_shape), instead of sizes
    n_layer: int = 0  # with widths: the depth of every width (0: the recipe's)
    tokens: int = 0  # training tokens of every run, instead of budget
    parametrizations: tuple[str, ...] = ()  # model.parametrization of each run (): the config's

    @classmethod
    def from_config(cls, s) -> "Sweep":
        if s is None:
            raise StudyError("study.lr_sweep: mode 'lr_sweep' needs a study.lr_sweep section "
                             "(budget, sizes, lrs, beta2s); see experiments/configs/lr_sweep_cpu.py")
        sweep = cls(float(s.get("budget") or 0), tuple(float(x) for x in s.get("sizes") or ()),
                    tuple(float(x) for x in s.lrs), tuple(float(x) for x in s.beta2s),
                    tuple(int(w) for w in s.get("widths") or ()), int(s.get("n_layer") or 0),
                    int(s.get("tokens") or 0), tuple(str(p) for p in s.get("parametrizations") or ()))
        if bool(sweep.sizes) == bool(sweep.widths):
            raise StudyError(f"study.lr_sweep: give exactly one of sizes={sweep.sizes} and widths={sweep.widths}")
        shapes = ("widths", sweep.widths) if sweep.widths else ("sizes", sweep.sizes)
        for name, values in (shapes, ("lrs", sweep.lrs)):
            if not values or min(values) <= 0:
                raise StudyError(f"study.lr_sweep.{name}={values} must be a non-empty list of positive numbers")
        if not sweep.beta2s or not all(0 < b < 1 for b in sweep.beta2s):
            raise StudyError(f"study.lr_sweep.beta2s={sweep.beta2s} must be a non-empty list in (0, 1)")
        if sweep.budget < 0 or sweep.tokens < 0 or bool(sweep.budget) == bool(sweep.tokens):
            raise StudyError(f"study.lr_sweep: give exactly one of budget={sweep.budget:g} (FLOPs per run) and "
                             f"tokens={sweep.tokens} (tokens per run), positive")
        if sweep.n_layer < 0 or (sweep.n_layer and not sweep.widths):
            raise StudyError(f"study.lr_sweep.n_layer={sweep.n_layer} must be >= 0 and goes with widths")
        bad = [p for p in sweep.parametrizations if p not in PARAMETRIZATIONS]
        if bad or len(set(sweep.parametrizations)) != len(sweep.parametrizations):
            raise StudyError(f"study.lr_sweep.parametrizations={sweep.parametrizations} must be distinct values "
                             f"of {PARAMETRIZATIONS}")
        return sweep


@dataclasses.dataclass(frozen=True)
class Slurm:
    """`study.slurm`: the job array's resources (experiments/executors/slurm.py). Defaults are the
    executor's: "" or 0 leaves the cluster's default; array_parallelism 0 runs the launcher's workers."""
    partition: str = ""
    time_minutes: int = 60  # per array task
    gpus_per_task: int = 0
    cpus_per_task: int = 0
    mem_gb: int = 0
    array_parallelism: int = 0  # tasks of the job array running at once
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit, so the trainer saves
    additional: tuple[tuple[str, Any], ...] = ()  # more sbatch parameters, (name, value) pairs

    @classmethod
    def from_section(cls, s) -> "Slurm":
        """The section as given; a key it lacks keeps the default ("", 0 or None: the cluster's)."""
        s = s or {}
        slurm = cls(partition=str(s.get("partition") or ""), time_minutes=int(s.get("time_minutes", 60)),
                    gpus_per_task=int(s.get("gpus_per_task") or 0), cpus_per_task=int(s.get("cpus_per_task") or 0),
                    mem_gb=int(s.get("mem_gb") or 0), array_parallelism=int(s.get("array_parallelism") or 0),
                    signal_delay_s=int(s.get("signal_delay_s", 120)),
                    additional=tuple((s.get("additional") or {}).items()))
        least = {"time_minutes": 1, "gpus_per_task": 0, "cpus_per_task": 0, "mem_gb": 0, "array_parallelism": 0,
                 "signal_delay_s": 0}
        for name, low in least.items():
            if getattr(slurm, name) < low:
                raise StudyError(f"study.slurm.{name}={getattr(slurm, name)} must be >= {low}")
        return slurm


@dataclasses.dataclass(frozen=True)
class Study:
    """The parsed `study` section (documented field by field in experiments/configs/isoflop_cpu.py)."""
    # A config's section gives every field up to `workers` (from_config); a plan.json section may be
    # partial (written by hand, or by an older planner): what it lacks keeps these defaults ("" and
    # empty: not given; executor, workers, max_retries None: the launcher's default).
    name: str = ""
    dir: str = ""
    budgets: tuple[float, ...] = ()
    recipe: str = ""
    min_params: float = 0.0
    max_params: float = 0.0
    growth: float = 0.0
    tokens_per_param: tuple[float, ...] = ()  # (low, high)
    min_steps: int = 1
    flop_convention: str = ""
    schedule: str = "cosine"
    mode: str = "independent"
    wsd_cooldown_frac: float = 0.2
    wsd_checkpoint_every: int = 50
    train_tokens_per_epoch: int = 0
    assumed_flops_per_second: float = 6e10
    executor: str | None = None
    workers: int | None = None
    max_retries: int | None = None  # failed attempts retried per run (None: the launcher's default)
    slurm: Slurm = Slurm()
    # Sizes per budget: the ladder rungs within `span` decades of the prior's N_opt(C), at least
    # `n_sizes` of them (prior.kind == "none": every rung the tokens_per_param band allows).
    prior: Prior = NO_PRIOR
    span: float = 0.4
    n_sizes: int = 3  # the fewest a parabola needs: a config without study.sizes.count gets this
    # Repeated seeds: the `seed_points` points of each budget nearest the prior's N_opt run at every
    # seed of `seeds`; the others at seeds[0].
    seeds: tuple[int, ...] = (0,)
    seed_points: int = 0
    sweep: Sweep | None = None  # mode == "lr_sweep": sizes (or widths) x lrs x beta2 at one budget (or tokens)
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
    hparam_sweep: HparamSweep | None = None  # mode == "hparam_sweep": budgets x sizes x batch x lr (x beta2)
    # lr and batch (and beta2) per run from fitted laws (hparams.py): the hparam_fit.json's path ("":
    # the recipe's rules) and the law read from it, or from plan.json's `hparams_law` when reading a plan
    hparams: str = ""
    hparam_law: HparamLaw | None = None
    # mode data_constrained | annealing: its section, study.<mode> (law_sections.py)
    law_runs: law_sections.DataConstrained | law_sections.Annealing | None = None

    @classmethod
    def from_config(cls, s: ml_collections.ConfigDict) -> "Study":
        """A config's study section: every field before `max_retries` must be given."""
        missing = [key for key in REQUIRED if key not in s]
        if missing:
            raise StudyError(f"study.{missing[0]}: missing (experiments/configs/isoflop_cpu.py documents "
                             f"every field)")
        return cls.from_section(s)

    @classmethod
    def from_section(cls, s) -> "Study":
        """A study section (a ConfigDict, or plan.json's dict), perhaps partial: a field it lacks keeps
        the record's default; those it gives are converted and validated (StudyError, one line)."""
        s = s if isinstance(s, ml_collections.ConfigDict) else ml_collections.ConfigDict(dict(s))
        fields = {}
        for key, read in _READERS.items():
            if key in s:
                fields.update(_read(key, s[key], read))
        if fields.get("mode") == "lr_sweep":  # its section is read in its mode only
            fields.update(_read("lr_sweep", s.get("lr_sweep"), lambda v: {"sweep": Sweep.from_config(v)}))
        if fields.get("mode") == "hparam_sweep":
            fields.update(_read("hparam_sweep", s.get("hparam_sweep"),
                                lambda v: {"hparam_sweep": HparamSweep.from_config(v)}))
        if fields.get("hparams") and "hparam_law" not in fields:  # a plan.json carries the law it applied
            fields["hparam_law"] = HparamLaw.from_file(fields["hparams"])
        if (mode := fields.get("mode")) in law_sections.MODES:
            fields.update(_read(mode, s.get(mode), lambda v: {"law_runs": law_sections.from_config(mode, v)}))
        study = cls(**fields)
        study.validate(given=frozenset(s.keys()))
        return study

    def validate(self, given: frozenset[str] | None = None) -> None:
        """Checks the fields a section gave (`given`: its keys; None: all of them)."""
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
            (self.executor is None or self.executor in EXECUTORS, "study.executor",
             f"{self.executor!r} is not one of {EXECUTORS}"),
            (self.workers is None or self.workers >= 1, "study.workers", f"{self.workers} must be >= 1"),
            (self.max_retries is None or self.max_retries >= 0, "study.max_retries",
             f"{self.max_retries} must be >= 0"),
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
            if not ok and (given is None or field.split(".")[1] in given):
                raise StudyError(f"{field}={message}")
        if (given is None or "ladder" in given) and (not 0 < self.min_params <= self.max_params or self.growth <= 1):
            raise StudyError(f"study.ladder: need 0 < min_params ({self.min_params:.3g}) <= max_params "
                             f"({self.max_params:.3g}) and growth ({self.growth}) > 1")


def _read(key: str, value, read) -> dict:
    try:
        return read(value)
    except StudyError:  # a sub-section's own check, already one line
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # a value of the wrong type or shape
        shown = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value
        raise StudyError(f"study.{key}={shown!r} is not valid ({type(e).__name__}: {e})") from None


# The fields a config's section must give (the others have defaults meant for it).
REQUIRED = ("name", "dir", "budgets", "recipe", "ladder", "tokens_per_param", "min_steps", "flop_convention",
            "schedule", "mode", "wsd", "train_tokens_per_epoch", "assumed_flops_per_second", "executor", "workers")
# Section key -> the record fields it gives (study.lr_sweep, study.hparam_sweep: read with study.mode, in
# from_section).
_READERS = {
    "name": lambda v: {"name": str(v)},
    "dir": lambda v: {"dir": str(v)},
    "budgets": lambda v: {"budgets": tuple(float(b) for b in v)},
    "recipe": lambda v: {"recipe": str(v)},
    "ladder": lambda v: {"min_params": float(v.get("min_params", 0.0)), "max_params": float(v.get("max_params", 0.0)),
                         "growth": float(v.get("growth", 0.0))},
    "tokens_per_param": lambda v: {"tokens_per_param": tuple(float(x) for x in v)},
    "min_steps": lambda v: {"min_steps": int(v)},
    "flop_convention": lambda v: {"flop_convention": str(v)},
    "schedule": lambda v: {"schedule": str(v)},
    "mode": lambda v: {"mode": str(v)},
    "wsd": lambda v: {"wsd_cooldown_frac": float(v.get("cooldown_frac", Study.wsd_cooldown_frac)),
                      "wsd_checkpoint_every": int(v.get("checkpoint_every", Study.wsd_checkpoint_every))},
    "train_tokens_per_epoch": lambda v: {"train_tokens_per_epoch": int(v)},
    "assumed_flops_per_second": lambda v: {"assumed_flops_per_second": float(v)},
    "executor": lambda v: {"executor": None if v is None else str(v)},
    "workers": lambda v: {"workers": None if v is None else int(v)},
    "max_retries": lambda v: {"max_retries": None if v is None else int(v)},
    "slurm": lambda v: {"slurm": Slurm.from_section(v)},
    "prior": lambda v: {"prior": Prior.from_config(v)},
    "sizes": lambda v: {"span": float(v.get("span", Study.span)), "n_sizes": int(v.get("count", Study.n_sizes))},
    "seeds": lambda v: {"seeds": tuple(int(x) for x in v)},
    "seed_points": lambda v: {"seed_points": int(v)},
    "noise": lambda v: {"noise": float(v)},
    "noise_from": lambda v: {"noise_from": str(v)},
    "simulations": lambda v: {"simulations": int(v)},
    "device_kind": lambda v: {"device_kind": str(v or "")},
    "assumed_mfu": lambda v: {"assumed_mfu": float(v or 0)},
    "devices_per_run": lambda v: {"devices_per_run": int(v or 1)},  # 0 reads as 1, as before
    "device_memory_gb": lambda v: {"device_memory_gb": float(v or 0)},
    "validation": lambda v: {"validation": Validation.from_config(v)},
    "hparams": lambda v: {"hparams": str(v or "")},
    HPARAMS_LAW_KEY: lambda v: {"hparam_law": HparamLaw.from_json(v.to_dict() if hasattr(v, "to_dict") else v)},  # written by the planner (plan.json)
}


def check_study_dir(directory: str) -> pathlib.Path:
    """The study directory, resolved; raises StudyError if it cannot be created or written (creates nothing)."""
    path = pathlib.Path(directory).expanduser().resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a directory" if not existing.is_dir() else "is not writable"
        raise StudyError(f"study.dir={directory} cannot be written ({existing} {what}): pass "
                         "--study or set study.dir to a writable directory")
    return path
