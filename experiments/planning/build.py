"""The whole plan of a study, computed and validated (nothing written): the `Plan` record."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Sequence

import ml_collections

from experiments import ladder as ladder_lib
from experiments.planning import estimate, grid as grid_lib, specs
from experiments.planning.study import Study, StudyError
from experiments.spec import RunSpec
from models.config import ConfigError
from scaling import validate


@dataclasses.dataclass(frozen=True)
class Plan:
    study: dict[str, Any]  # the study section as given, plus "hash"
    runs: tuple[RunSpec, ...]
    dropped: tuple[grid_lib.Dropped, ...]
    seconds: dict[str, float]  # estimated wall time per run_id
    seconds_source: str  # "probe" or "assumed <x> FLOP/s"
    cosine_equivalent_flops: float  # what one cosine run per grid point would cost
    total_flops: float  # what the planned runs cost (trunks counted once)

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "runs": [r.to_dict() for r in self.runs],
                "dropped": [dataclasses.asdict(d) for d in self.dropped]}


def study_hash(study: dict, runs: Sequence[RunSpec]) -> str:
    """Identity of a plan: a launcher refuses a study directory whose plan changed under it."""
    blob = json.dumps({"study": study, "runs": [r.to_dict() for r in runs]}, sort_keys=True,
                      default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def make_plan(config: ml_collections.ConfigDict, config_file: str, *, base_overrides: dict | None = None,
              epoch: int | None = None, throughput: estimate.Throughput | None = None) -> Plan:
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
    epoch = estimate.epoch_tokens(config, study) if epoch is None else epoch
    points, dropped = grid_lib.grid(rungs, study, epoch)
    make = specs.wsd_runs if study.mode == "wsd_branches" else specs.independent_runs
    runs, trained = make(points, study, os.path.abspath(config_file), dict(base_overrides or {}))
    specs.check_runs(config, runs)
    seconds, source = estimate.estimate_seconds(runs, trained, config, study, throughput)
    study_dict = config.study.to_dict()
    study_dict["hash"] = study_hash(study_dict, runs)
    return Plan(study=study_dict, runs=tuple(runs), dropped=tuple(dropped), seconds=seconds,
                seconds_source=source, cosine_equivalent_flops=sum(p.flops for p in points),
                total_flops=sum(trained.values()))
