"""What a study directory says about how its results were made, read from its files only.

The report runs on anyone's table, so nothing here imports the training code: plan.json (the
planner's RunSpecs and dropped candidates), launched.json, and each run's run.json, attempts.json
and train.log (see experiments/executors/study.py for the layout) are read as plain JSON and text.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter

import numpy as np


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    name: str
    convention: str  # the FLOP convention the plan's budgets are counted in
    plan: list[dict]  # RunSpec dicts
    planner_dropped: list[dict]  # {"C", "N", "reason"}
    records: dict[str, dict]  # run_id -> run.json (runs that started)
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

    def mfu(self) -> float | None:
        vals = [rj["mfu"] for rj in self.records.values() if isinstance(rj.get("mfu"), (int, float))]
        return float(np.median(vals)) if vals else None


def _read_json(path: str):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _last_line(path: str, limit: int = 200) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = [x.strip() for x in fh.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _reason(rdir: str, rj: dict | None) -> str | None:
    status = (rj or {}).get("status")
    if status == "completed":
        return None
    attempts = _read_json(os.path.join(rdir, "attempts.json")) or []
    last = attempts[-1] if attempts else {}
    log = _last_line(os.path.join(rdir, "train.log"))
    if status == "diverged" or last.get("outcome") == "diverged":
        return "diverged: the loss became NaN/Inf" + (f" ({log})" if log else "")
    if last.get("outcome") in ("failed", "invalid"):
        fails = sum(a.get("outcome") == "failed" for a in attempts)
        what = "trainer rejected the config" if last["outcome"] == "invalid" else f"failed {fails} time(s)"
        return f"{what} (exit {last.get('exit_code')})" + (f": {log}" if log else "")
    if rj is None and not attempts:
        return "never started"
    return f"not finished ({status or 'started'})"


def read_study(study_dir: str) -> StudyInfo | None:
    plan = _read_json(os.path.join(study_dir, "plan.json"))
    if not plan:
        return None
    runs = plan.get("runs", [])
    records, reasons, finished = {}, {}, []
    for spec in runs:
        rdir = os.path.join(study_dir, "runs", spec["run_id"])
        rj = _read_json(os.path.join(rdir, "run.json"))
        if rj is not None:
            records[spec["run_id"]] = rj
            if rj.get("status") in ("completed", "diverged", "failed"):
                finished.append(os.path.getmtime(os.path.join(rdir, "run.json")))
        why = _reason(rdir, rj)
        if why:
            reasons[spec["run_id"]] = why
    launched = _read_json(os.path.join(study_dir, "launched.json")) or {}
    first = min((x.get("time") for x in launched.get("launches", []) if x.get("time")), default=None)
    study = plan.get("study", {})
    convention = study.get("flop_convention") or (runs[0].get("flop_convention") if runs else "6n")
    # Wall time of a finished study ends at its last run, not when the report is (re)built.
    last = max(finished) if finished and len(finished) == len(runs) else None
    return StudyInfo(str(study.get("name") or os.path.basename(os.path.abspath(study_dir))), convention, runs,
                     list(plan.get("dropped", [])), records, reasons, first, last)
