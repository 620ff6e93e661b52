"""Hyperparameters across scale: the `study.hparam_sweep` section (mode "hparam_sweep") and the fitted
laws a study takes its lr and batch from (`study.hparams`, a hparam_fit.json).

`HparamLaw` is what the planner applies: lr*(N, D) and B*(N, D) as `prefactor * N^a * D^b`
(experiments.planning.hparam_fit writes them), N total parameters and D training tokens, B in
sequences per step (the column `global_batch`, our results.csv's) or in tokens (any column whose
name says tokens: `batch_tokens`). An optional `beta2` law of the same form sets Adam's beta2. The
plan records the law itself (path, sha256, laws and intervals) in plan.json's study section as
`hparams_law`, so reading a plan back never needs the file again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from experiments.planning.errors import StudyError

SECTION_KEY = "hparams_law"  # plan.json's study section: the law applied (HparamLaw.to_json)


@dataclasses.dataclass(frozen=True)
class HparamSweep:
    """`study.hparam_sweep`: every budget x size x batch x lr x beta2; lr_multipliers scale the base lr
    of each run (the recipe's at that batch, Adam's sqrt rule; or study.hparams' law), lrs are absolute
    (one of the two, not both)."""
    budgets: tuple[float, ...]
    sizes: tuple[float, ...]  # ladder targets (total parameters), mapped through the recipe
    batches: tuple[int, ...]  # sequences per step
    lr_multipliers: tuple[float, ...] = ()
    lrs: tuple[float, ...] = ()
    beta2s: tuple[float, ...] = ()  # (): the recipe's

    @classmethod
    def from_config(cls, s) -> "HparamSweep":
        if s is None:
            raise StudyError("study.hparam_sweep: mode 'hparam_sweep' needs a study.hparam_sweep section "
                             "(budgets, sizes, batches, lr_multipliers or lrs); see "
                             "experiments/configs/hparam_sweep_cpu.py")
        floats = lambda k: tuple(float(x) for x in (s.get(k) or ()))
        sweep = cls(floats("budgets"), floats("sizes"), tuple(int(b) for b in s.get("batches") or ()),
                    floats("lr_multipliers"), floats("lrs"), floats("beta2s"))
        for name in ("budgets", "sizes", "batches"):
            values = getattr(sweep, name)
            if not values or min(values) <= 0 or len(set(values)) != len(values):
                raise StudyError(f"study.hparam_sweep.{name}={values} must be a non-empty list of distinct "
                                 "positive numbers")
        if bool(sweep.lr_multipliers) == bool(sweep.lrs) or min(sweep.lr_multipliers + sweep.lrs) <= 0:
            raise StudyError(f"study.hparam_sweep: give exactly one of lr_multipliers={sweep.lr_multipliers} "
                             f"and lrs={sweep.lrs}, positive")
        if not all(0 < b < 1 for b in sweep.beta2s):
            raise StudyError(f"study.hparam_sweep.beta2s={sweep.beta2s} must be in (0, 1)")
        return sweep

    @property
    def lr_grid(self) -> tuple[float, ...]:
        return self.lr_multipliers or self.lrs


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """value = prefactor * N^exponents["N"] * D^exponents["D"] (an exponent None: not fitted, 0)."""
    prefactor: float
    exponents: dict
    intervals: dict  # exponent -> [low, high] or None
    prefactor_interval: tuple[float, float] | None = None

    @classmethod
    def from_json(cls, name: str, v: Any) -> "PowerLaw":
        if not isinstance(v, dict) or "prefactor" not in v or not isinstance(v.get("exponents"), dict):
            raise ValueError(f"{name}: expected an object with prefactor and exponents")
        exps = {k: (None if v["exponents"].get(k) is None else float(v["exponents"][k])) for k in ("N", "D")}
        pre = float(v["prefactor"])
        if not (pre > 0 and math.isfinite(pre)) or not all(x is None or math.isfinite(x) for x in exps.values()):
            raise ValueError(f"{name}: prefactor {pre!r} must be positive, exponents finite ({exps})")
        ints = v.get("intervals") or {}
        pi = v.get("prefactor_interval")
        return cls(pre, exps, {k: (list(ints[k]) if ints.get(k) else None) for k in ("N", "D")},
                   tuple(pi) if pi else None)

    def __call__(self, N: float, D: float) -> float:
        return self.prefactor * N ** (self.exponents["N"] or 0.0) * D ** (self.exponents["D"] or 0.0)

    def to_json(self) -> dict:
        return {"prefactor": self.prefactor, "exponents": self.exponents, "intervals": self.intervals,
                "prefactor_interval": list(self.prefactor_interval) if self.prefactor_interval else None}

    def describe(self) -> str:
        ci = lambda k: f" [{self.intervals[k][0]:+.3f}, {self.intervals[k][1]:+.3f}]" if self.intervals.get(k) else ""
        terms = "".join(f" * {k}^{v:+.3f}{ci(k)}" for k, v in self.exponents.items() if v is not None)
        return f"{self.prefactor:.4g}{terms}"


@dataclasses.dataclass(frozen=True)
class HparamLaw:
    """The laws a study's runs take their lr, batch (and beta2) from; `path` and `sha256` name the file."""
    path: str
    sha256: str
    lr: PowerLaw
    batch: PowerLaw | None = None  # None: the recipe's batch rule
    batch_unit: str = "sequences"  # or "tokens"
    beta2: PowerLaw | None = None  # None: the recipe's beta2

    @classmethod
    def from_file(cls, path: str) -> "HparamLaw":
        p = Path(path).expanduser()
        try:
            blob = p.read_bytes()
            raw = json.loads(blob)
        except (OSError, ValueError) as e:
            raise StudyError(f"study.hparams={path!r} cannot be read as JSON ({type(e).__name__}: "
                             f"{str(e).splitlines()[0]}); write it with python -m experiments.planning.hparam_fit"
                             ) from None
        return cls.from_json({**(raw if isinstance(raw, dict) else {"lr": None}),
                              "path": str(p.resolve()), "sha256": hashlib.sha256(blob).hexdigest()})

    @classmethod
    def from_json(cls, raw: dict) -> "HparamLaw":
        """hparam_fit.json (with path and sha256 added) or plan.json's `hparams_law`."""
        try:
            column = str((raw.get("columns") or {}).get("batch") or "")
            unit = raw.get("batch_unit") or ("tokens" if "token" in column.lower() else "sequences")
            if unit not in ("sequences", "tokens"):
                raise ValueError(f"batch_unit {unit!r}: expected sequences or tokens")
            law = lambda k: PowerLaw.from_json(k, raw[k]) if raw.get(k) is not None else None
            return cls(str(raw["path"]), str(raw["sha256"]), PowerLaw.from_json("lr", raw.get("lr")), law("batch"),
                       unit, law("beta2"))
        except (ValueError, TypeError, KeyError) as e:
            raise StudyError(f"study.hparams={raw.get('path')!r} is not a hparam_fit.json law "
                             f"({type(e).__name__}: {e})") from None

    def to_json(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "lr": self.lr.to_json(),
                "batch": self.batch.to_json() if self.batch else None, "batch_unit": self.batch_unit,
                "beta2": self.beta2.to_json() if self.beta2 else None}

    def batch_sequences(self, N: float, D: float, seq_len: int) -> float | None:
        if self.batch is None:
            return None
        b = self.batch(N, D)
        return b / seq_len if self.batch_unit == "tokens" else b

    def describe(self) -> str:
        parts = [f"lr* = {self.lr.describe()}"]
        if self.batch:
            parts.append(f"B* = {self.batch.describe()} ({self.batch_unit})")
        if self.beta2:
            parts.append(f"beta2 = {self.beta2.describe()}")
        return (f"hparams: lr{', batch' if self.batch else ''}{', beta2' if self.beta2 else ''} per run from "
                f"{self.path} (sha256 {self.sha256[:12]}): " + "; ".join(parts) + " (N total params, D tokens; "
                "[95% intervals])")
