"""`RunSpec`: one planned training run, the record between the planner and the launcher.

`plan.json` in a study directory is `{"study": {...}, "runs": [RunSpec.to_dict(), ...]}`. The launcher
turns a RunSpec into exactly one command line:

    python -m scaling.train --config=<config_file> --workdir=<study>/runs/<run_id> \
        --config.<key>=<value> ...   (one flag per entry of `overrides`)

so a run can always be re-run by hand from its spec.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

ROLES = ("isoflop", "trunk", "lr_sweep", "validation", "hparam_sweep", "data_constrained", "annealing",
         "annealing_heldout")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    run_id: str  # carries C and N, e.g. "C3e+11-N1.2e+05" (+ "-s1" for seed 1); also the workdir name
    budget: float  # planned compute C in FLOPs
    flop_convention: str  # the convention C is counted in (see scaling.flops.CONVENTIONS)
    flops: float  # FLOPs this run spends under flop_convention (within 1% of budget)
    params: int  # total parameters
    non_embedding_params: int
    tokens: int  # training tokens D = steps * global_batch * seq_len
    steps: int
    global_batch: int  # sequences per optimiser step
    seq_len: int
    lr: float
    warmup_steps: int
    schedule: str
    config_file: str  # ml_collections config the overrides apply to
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # WSD cooldown branch: start from this run's checkpoint at this step (None: from scratch).
    branch_from: str | None = None
    branch_step: int | None = None
    # "isoflop": an IsoFLOP grid point; "trunk": a WSD constant-lr trunk (never fitted as a point);
    # "lr_sweep": a calibration run of the optimiser recipe; "validation": a run beyond the grid that
    # tests the grid's frozen prediction (experiments.planning.validation); "hparam_sweep": a run of an
    # lr x batch sweep across scale (experiments.planning.hparam_fit); "data_constrained", "annealing",
    # "annealing_heldout": runs of those study modes (experiments/planning/law_runs.py), never IsoFLOP
    # points; a held-out schedule is predicted by the annealing law, not fitted. Defaults keep older
    # plan.json readable.
    role: str = "isoflop"
    seed: int = 0  # the run config's `seed` (init and data order); a repeat s > 0 ends its id in -s{s}
    beta2: float = 0.95  # Adam's beta2 (train.b2)

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunSpec":
        return cls(**dict(values))
