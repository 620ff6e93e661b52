"""`python -m experiments.status --study=DIR`: one table row per planned run and one line for the grid.

    run_id              state      step/steps  loss    eval    tokens/s  ETA
    C1e+12-N5.2e+04     running    120/400     4.812   4.950   21.3k     13s

Reads only files (see experiments.study_dir), so it is safe while a launcher is working.
The grid ETA divides the FLOPs still to spend by the FLOP rate of the runs training right now.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections import Counter
from pathlib import Path

from experiments import locks, stall
from experiments import study_dir as st

DEFAULT_MAX_RETRIES = 2


@dataclasses.dataclass(frozen=True)
class Row:
    run_id: str
    state: str
    step: int | None
    steps: int
    train_loss: float | None
    eval_loss: float | None
    tokens_per_s: float | None
    eta_s: float | None  # this run, while it trains
    remaining_flops: float  # of the planned FLOPs, what this run still has to spend
    flops_per_s: float  # 0 unless it is training now
    reason: str
    stalled: bool = False  # running, but its log stood still past `stall.StallRule`'s allowance


def row(study: Path, state: st.RunState, rule: stall.StallRule = stall.StallRule()) -> Row:
    spec = state.spec
    rdir = st.run_dir(study, spec.run_id)
    prog = st.read_progress(rdir)
    stuck = stall.stalled(rdir, rule) if state.state == st.RUNNING else None
    # A WSD branch starts at its trunk's checkpoint: only the steps after branch_step are its own work.
    start = max(prog.step or 0, spec.branch_step or 0)
    done = 1.0 if state.state in st.TERMINAL else min(1.0, start / max(spec.steps, 1))
    rate = prog.tokens_per_s if state.state == st.RUNNING and prog.tokens_per_s else None
    eta = (max(spec.tokens - (prog.tokens or 0), 0) / rate) if rate else None
    flops_per_s = rate * spec.flops / spec.tokens if rate else 0.0
    return Row(spec.run_id, state.state, prog.step, spec.steps, prog.train_loss, prog.eval_loss, prog.tokens_per_s,
               eta, spec.flops * (1 - done), flops_per_s, stuck or state.reason, stuck is not None)


def snapshot(study: Path, plan: st.Plan, max_retries: int, queued: frozenset = frozenset(),
             rule: stall.StallRule = stall.StallRule()) -> list[Row]:
    return [row(study, st.run_state(study, spec, plan, max_retries, queued), rule) for spec in plan.runs]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _num(x: float | None, fmt: str = "{:.4g}") -> str:
    return "-" if x is None else fmt.format(x)


def _rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def grid_rate(rows: list[Row]) -> float:
    """FLOP/s of the runs training right now (0 while none has logged a step yet)."""
    return sum(r.flops_per_s for r in rows)


def grid_eta(rows: list[Row], fallback_rate: float = 0.0) -> float | None:
    """Seconds left: FLOPs still to spend over the current rate, or over `fallback_rate` (the last rate
    seen) while the running runs are compiling."""
    remaining = sum(r.remaining_flops for r in rows)
    if remaining == 0:
        return 0.0
    rate = grid_rate(rows) or fallback_rate
    return remaining / rate if rate > 0 else None


def grid_line(rows: list[Row], fallback_rate: float = 0.0) -> str:
    n = Counter(r.state for r in rows)
    bad = n[st.FAILED] + n[st.INVALID] + n[st.BLOCKED]
    rest = len(rows) - n[st.COMPLETED] - n[st.DIVERGED] - bad - n[st.RUNNING]
    parts = [f"grid: {n[st.COMPLETED]}/{len(rows)} done", f"{n[st.RUNNING]} running", f"{bad} failed"]
    if n[st.DIVERGED]:
        parts.append(f"{n[st.DIVERGED]} diverged")
    parts += [f"{rest} to go", f"ETA {fmt_duration(grid_eta(rows, fallback_rate))}"]
    return " | ".join(parts)


def table(rows: list[Row]) -> str:
    head = ("run_id", "state", "step/steps", "loss", "eval", "tokens/s", "ETA", "note")
    body = [(r.run_id, r.state, f"{_num(r.step, '{}')}/{r.steps}", _num(r.train_loss), _num(r.eval_loss),
             _rate(r.tokens_per_s), fmt_duration(r.eta_s) if r.eta_s is not None else "-", r.reason) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in (head, *body))


def queued_runs(study: Path) -> frozenset:
    """Runs whose SLURM job is still queued, when the study was launched on SLURM and squeue answers."""
    jobs = locks.read_json(Path(study) / "slurm" / "jobs.json") or {}
    if not jobs:
        return frozenset()
    from experiments.executors import slurm
    try:
        states = slurm.squeue_states([j["job_id"] for j in jobs.values()])
    except OSError:  # no squeue on this machine
        return frozenset()
    return frozenset(r for r, j in jobs.items() if states.get(j["job_id"]) in slurm.LIVE_STATES)


def add_stall_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--stall-factor", type=float, default=stall.StallRule.factor,
                    help="a running run is stalled when its log stands still this many log intervals")
    ap.add_argument("--stall-min-s", type=float, default=stall.StallRule.min_s,
                    help="... and at least this many seconds (compiles and evals log nothing)")


def stall_rule(args) -> stall.StallRule:
    return stall.StallRule(factor=args.stall_factor, min_s=args.stall_min_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="experiments.status", description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, type=Path)
    add_stall_flags(ap)
    args = ap.parse_args(argv)
    try:
        plan = st.load_plan(args.study)
    except st.StudyError as e:
        print(f"status: {e}", file=sys.stderr)
        return 2
    launched = st.read_launched(args.study) or st.Launched()
    retries = launched.max_retries if launched.max_retries is not None else DEFAULT_MAX_RETRIES
    rows = snapshot(args.study, plan, retries, queued_runs(args.study), stall_rule(args))
    print(table(rows))
    print(grid_line(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
