"""The study sections of the two modes that measure laws beyond Chinchilla's form (issue 19):

    study.mode = "data_constrained"   study.data_constrained: sizes x unique-token limits at each
        budget (Muennighoff et al. 2023): every run spends its budget, so epochs = D / U vary with
        the size and the limit; `analysis.fit --law data_constrained` reads results.csv directly.
    study.mode = "annealing"   study.annealing: one size per budget trained under each schedule
        (Tissue et al. 2024); the `held_out` schedules are the prediction the fit must make.

Records only (no planning imports, so study.py can read them); law_runs.py makes their runs.
Configs: experiments/configs/data_constrained_cpu.py and annealing_cpu.py document the fields.
"""
from __future__ import annotations

import dataclasses

from experiments.planning.errors import StudyError
from scaling.config import SCHEDULES

MODES = ("data_constrained", "annealing")


@dataclasses.dataclass(frozen=True)
class DataConstrained:
    sizes: tuple[float, ...]  # ladder targets (total parameters), mapped through the recipe
    unique_tokens: tuple[int, ...]  # data.unique_tokens of each run; 0: the whole training split

    @classmethod
    def from_config(cls, s) -> "DataConstrained":
        out = cls(tuple(float(x) for x in s.sizes), tuple(int(u) for u in s.unique_tokens))
        if not out.sizes or min(out.sizes) <= 0:
            raise StudyError(f"study.data_constrained.sizes={out.sizes} must be a non-empty list of positive numbers")
        if not out.unique_tokens or min(out.unique_tokens) < 0 or len(set(out.unique_tokens)) < len(out.unique_tokens):
            raise StudyError(f"study.data_constrained.unique_tokens={out.unique_tokens} must be distinct "
                             "integers >= 0 (0: the whole split)")
        return out


@dataclasses.dataclass(frozen=True)
class Annealing:
    sizes: tuple[float, ...]  # ladder targets; usually one
    schedules: tuple[str, ...]  # train.schedule of each run (scaling.config.SCHEDULES)
    held_out: tuple[str, ...]  # schedules whose runs are predicted, not fitted (role annealing_heldout)

    @classmethod
    def from_config(cls, s) -> "Annealing":
        out = cls(tuple(float(x) for x in s.sizes), tuple(str(x) for x in s.schedules),
                  tuple(str(x) for x in s.get("held_out", ())))
        if not out.sizes or min(out.sizes) <= 0:
            raise StudyError(f"study.annealing.sizes={out.sizes} must be a non-empty list of positive numbers")
        bad = [x for x in out.schedules if x not in SCHEDULES]
        if not out.schedules or bad or len(set(out.schedules)) < len(out.schedules):
            raise StudyError(f"study.annealing.schedules={out.schedules} must be distinct names of {SCHEDULES}")
        if not set(out.held_out) <= set(out.schedules) or len(out.held_out) >= len(out.schedules):
            raise StudyError(f"study.annealing.held_out={out.held_out} must be some of study.annealing.schedules "
                             f"{out.schedules}, leaving at least one to fit")
        return out


def from_config(mode: str, s) -> DataConstrained | Annealing:
    if s is None:
        raise StudyError(f"study.{mode}: mode {mode!r} needs a study.{mode} section; see "
                         f"experiments/configs/{mode}_cpu.py")
    return {"data_constrained": DataConstrained, "annealing": Annealing}[mode].from_config(s)
