"""What a study directory says about how its results were made: `provenance.json`, one record.

The report runs on anyone's table, so nothing here imports the training code and nothing reads run
directories: `experiments.collect` writes provenance.json next to results.csv (the plan's RunSpecs
and dropped candidates, each started run's facts from its run.json, why each run has no result, when
the study was first launched and when its last run ended), and the report reads only that file.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from typing import Any, Mapping

import numpy as np

PROVENANCE_FILE = "provenance.json"
# The run.json keys a report reads, kept per started run.
RUN_KEYS = ("status", "tokens", "flops_per_token", "final_eval_loss", "wall_time_s", "tokens_per_s", "mfu",
            "device_kind", "device_platform", "device_count", "packages", "python", "git")


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    name: str
    convention: str  # the FLOP convention the plan's budgets are counted in
    plan: list[dict]  # RunSpec dicts
    planner_dropped: list[dict]  # {"C", "N", "reason"}
    records: dict[str, dict]  # run_id -> its run.json's RUN_KEYS (runs that started)
    reasons: dict[str, str]  # run_id -> why it did not complete (failed, diverged, not finished)
    first_launch: float | None  # unix time
    last_finish: float | None = None  # unix time the last run wrote its final run.json, once none is running

    @property
    def planned_flops(self) -> float:
        return float(sum(r.get("flops", 0.0) for r in self.plan))

    def spent_flops(self) -> float:
        """FLOPs the runs actually trained, in the plan's convention (a branch counts its own steps)."""
        total = 0.0
        for rid, rj in self.records.items():
            per_token = (rj.get("flops_per_token") or {}).get(self.convention)
            if per_token and rj.get("tokens") and rj.get("status") == "completed":
                spec = next((s for s in self.plan if s["run_id"] == rid), {})
                own = 1 - (spec.get("branch_step") or 0) / max(spec.get("steps") or 1, 1)
                total += per_token * rj["tokens"] * own
        return total

    def train_seconds(self) -> float:
        return float(sum(rj.get("wall_time_s") or 0.0 for rj in self.records.values()))

    def devices(self) -> list[str]:
        seen = Counter(f"{rj.get('device_count', '?')} x {rj.get('device_kind', '?')} ({rj.get('device_platform', '?')})"
                       for rj in self.records.values())
        return [f"{k} ({v} runs)" for k, v in seen.most_common()]

    def packages(self) -> dict[str, str]:
        for rj in self.records.values():
            if rj.get("packages"):
                return {**{k: str(v) for k, v in rj["packages"].items()}, "python": str(rj.get("python"))}
        return {}

    def commits(self) -> list[str]:
        out = Counter()
        for rj in self.records.values():
            g = rj.get("git") or {}
            if isinstance(g, dict) and (g.get("commit") or g.get("sha")):
                dirty = " (uncommitted changes)" if g.get("dirty") else ""
                out[f"{(g.get('commit') or g.get('sha'))[:12]}{dirty}"] += 1
        return [f"{k} ({v} runs)" for k, v in out.most_common()]

    def flops_per_device_second(self) -> float | None:
        """Median training FLOP/s per device over completed runs: the study's measured rate, in the
        plan's convention (step time only: compilation and evaluation are not training)."""
        rates = []
        for rj in self.records.values():
            per_token = (rj.get("flops_per_token") or {}).get(self.convention)
            if rj.get("status") == "completed" and per_token and rj.get("tokens_per_s"):
                rates.append(per_token * rj["tokens_per_s"] / max(int(rj.get("device_count") or 1), 1))
        return float(np.median(rates)) if rates else None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "StudyInfo":
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})

    def mfu(self) -> float | None:
        vals = [rj["mfu"] for rj in self.records.values() if isinstance(rj.get("mfu"), (int, float))]
        return float(np.median(vals)) if vals else None


def read_study(study_dir: str) -> StudyInfo | None:
    """The study's provenance, or None when collect has not written it (or it is unreadable)."""
    try:
        with open(os.path.join(study_dir, PROVENANCE_FILE)) as fh:
            return StudyInfo.from_json(json.load(fh))
    except (OSError, ValueError, TypeError):
        return None
