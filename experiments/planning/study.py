"""The `study` section of a study config as a typed, validated record (fields: configs/isoflop_cpu.py)."""
from __future__ import annotations

import dataclasses
import os
import pathlib

import ml_collections

from experiments import ladder as ladder_lib
from scaling import flops

MODES = ("independent", "wsd_branches")
EXECUTORS = ("local", "slurm")


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


def check_study_dir(directory: str) -> pathlib.Path:
    """The study directory, resolved; raises StudyError if it cannot be created or written (creates nothing)."""
    path = pathlib.Path(directory).expanduser().resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a directory" if not existing.is_dir() else "is not writable"
        raise StudyError(f"study.dir={directory} cannot be written ({existing} {what}): pass "
                         "--study or set study.dir to a writable directory")
    return path
