"""`python -m experiments.launch --study=DIR`: train every run of `DIR/plan.json`, resumably.

    python -m experiments.launch --study=studies/isoflop_cpu [--executor local|slurm] [--workers N]
        [--max-retries K] [--fresh]

Safe to kill and rerun at any moment: completed runs are skipped, interrupted ones resume from their
checkpoints (the trainer does that itself), failed ones are retried until they have failed K+1 times,
and a run is never trained by two processes at once (experiments.locks). WSD cooldown branches start
once their trunk's checkpoint at the branch step exists. A plan that grew (budgets or sizes added: run
ids carry C and N) keeps every started run whose spec did not change; a started run whose spec changed
is refused, naming it, unless --fresh, which moves those runs to DIR/archive/<time>/ and retrains them.
Exit: 0 all runs ended completed or diverged, 1 some failed, 2 bad input, 130/143 interrupted.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path

from experiments import locks, status
from plumbing import faults
from experiments.executors import EXECUTORS, ExecutorUnavailable, make_executor, local
from experiments import study_dir as st
from experiments.executors.worker import DEFAULT_TRAINER
from plumbing.cli import Parser
from scaling import allocator

RUNNABLE = (st.PENDING, st.INTERRUPTED, st.RETRY)


class LaunchError(Exception):
    """Bad input found before anything runs."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = Parser(prog="experiments.launch", error_prefix="launch", description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, type=Path, help="directory holding plan.json")
    ap.add_argument("--executor", choices=EXECUTORS, help="default: the plan's study.executor, else local")
    ap.add_argument("--workers", type=int, help="runs at once (default: the plan's study.workers -- on SLURM "
                                                "study.slurm.array_parallelism -- else one per GPU, else 1)")
    ap.add_argument("--max-retries", type=int, help=f"retries of a failed run (default: the plan's study.max_retries, "
                                                    f"else {status.DEFAULT_MAX_RETRIES})")
    ap.add_argument("--fresh", action="store_true", help="archive the runs whose spec changed and retrain them")
    ap.add_argument("--trainer", default=DEFAULT_TRAINER, help="python module run per run (default scaling.train)")
    ap.add_argument("--poll-s", type=float, default=2.0, help="seconds between progress checks")
    ap.add_argument("--stop-grace-s", type=float, default=300.0,
                    help="on SIGINT/SIGTERM, seconds the trainers get to save before they are killed")
    status.add_stall_flags(ap)
    return ap.parse_args(argv)


def check_writable(study: Path) -> None:
    probe = study / f".write-probe-{os.getpid()}"
    try:
        (study / "runs").mkdir(exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise LaunchError(f"--study: {study} is not writable ({e.strerror}); choose a directory you can write")


def resolve(args: argparse.Namespace, plan: st.Plan) -> tuple[str, int, int]:
    """(executor, workers, max_retries): the flags, else the plan's study section, else defaults."""
    name = args.executor or plan.study.executor or "local"
    if name not in EXECUTORS:
        raise LaunchError(f"plan.json study.executor={name!r} is unknown; pass --executor {'|'.join(EXECUTORS)}")
    slurm_parallel = plan.study.slurm.array_parallelism if name == "slurm" else None
    workers = (args.workers or slurm_parallel or plan.study.workers
               or (len(local.visible_gpus(dict(os.environ))) or 1))
    if workers < 1:
        raise LaunchError(f"--workers={workers}: need at least 1")
    retries = next(r for r in (args.max_retries, plan.study.max_retries, status.DEFAULT_MAX_RETRIES) if r is not None)
    if retries < 0:
        raise LaunchError(f"--max-retries={retries}: need 0 or more")
    return name, int(workers), int(retries)


def changed_runs(study: Path, plan: st.Plan) -> list[str]:
    """Run ids of the plan that a trainer already started from a different spec. Runs new to the
    plan, and runs the plan no longer lists, are not changes: a study grows by adding budgets or
    sizes (ids carry C and N) and keeps every completed run whose spec is the same."""
    launched = st.read_launched(study)
    if launched is None or launched.plan_hash == plan.hash:
        return []
    specs = launched.specs
    # A study launched before per-run hashes were recorded: every started run is suspect.
    def same(r) -> bool:  # a run new to the plan is no change
        return specs is not None and specs.get(r.run_id, h := st.spec_hash(r)) == h
    return [r.run_id for r in plan.runs if not same(r) and st.has_started(study, r.run_id)]


def name_runs(run_ids: list[str]) -> str:
    """'id' or 'id and N more': the first of several runs, for a one-line message."""
    return run_ids[0] + (f" and {len(run_ids) - 1} more" if len(run_ids) > 1 else "")


def check_plan(study: Path, plan: st.Plan, fresh: bool) -> list[str]:
    """Run ids to archive (under --fresh); raises when a started run's spec changed without it."""
    changed = changed_runs(study, plan)
    if changed and not fresh:
        raise LaunchError(f"{study}/plan.json changed the spec of run {name_runs(changed)} since it was launched; "
                          f"pass --fresh to archive those runs and retrain them (unchanged runs are kept)")
    busy = [r for r in changed if locks.is_held(st.run_dir(study, r))]
    if busy:
        raise LaunchError(f"--fresh: {len(busy)} changed run(s) still training ({busy[0]}, ...); stop their launcher first")
    return changed


def archive(study: Path, run_ids: list[str]) -> Path:
    dest = study / "archive" / time.strftime("%Y%m%d-%H%M%S")
    (dest / "runs").mkdir(parents=True)
    for r in run_ids:
        os.replace(st.run_dir(study, r), dest / "runs" / r)
    for name in ("results.csv", "curves.csv", "points.csv", "provenance.json"):  # they hold the archived runs'; collect rewrites them
        if (study / name).exists():
            os.replace(study / name, dest / name)
    return dest


def record_launch(study: Path, plan: st.Plan, executor: str, workers: int, max_retries: int) -> None:
    launched = st.read_launched(study) or st.Launched()
    this = st.Launch(time.time(), socket.gethostname(), os.getpid(), executor, workers)
    # Runs the plan dropped keep their entry: growing the plan back must not retrain them.
    specs = {**(launched.specs or {}), **{r.run_id: st.spec_hash(r) for r in plan.runs}}
    st.write_launched(study, st.Launched((*launched.launches, this), plan.hash, specs, max_retries))


class _Stop:
    """SIGINT/SIGTERM end the loop; the executor then passes SIGTERM on to the trainers."""

    def __init__(self):
        self.signum = 0
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._set)

    def _set(self, signum, frame) -> None:
        self.signum = signum


def _report(out, state: st.RunState, max_retries: int, log) -> None:
    if out.outcome in ("busy", "skipped", "waiting"):
        return
    code = f" (exit {out.exit_code})" if out.exit_code is not None else ""
    extra = f", retry {state.failures}/{max_retries}" if state.state == st.RETRY else ""
    note = f": {state.reason}" if state.reason and state.state in st.TERMINAL - {st.COMPLETED} else ""
    print(f"run {out.run_id}: {out.outcome}{code} -> {state.state}{extra}{note}", file=log or sys.stdout, flush=True)


def _restart_stalled(rows: list[status.Row], ex, log) -> None:
    """Kill the stalled runs this launcher started: the exit counts as a failure, so the run is
    retried from its newest checkpoint at most max_retries times."""
    for r in rows:
        if r.stalled and r.run_id in ex.active() and hasattr(ex, "kill"):
            print(f"run {r.run_id}: {r.reason}; killed to restart it", file=log or sys.stdout, flush=True)
            ex.kill(r.run_id)


def loop(study: Path, plan: st.Plan, ex, max_retries: int, poll_s: float, stop: _Stop,
         label: str = "", log=None, rule: status.stall.StallRule = status.stall.StallRule()) -> list[status.Row]:
    tty, last_line, last_print, rate = sys.stdout.isatty(), "", 0.0, 0.0
    while True:
        finished = ex.poll()
        if finished:
            faults.point("between_runs")
        states = {s.spec.run_id: s for s in (st.run_state(study, r, plan, max_retries, ex.queued()) for r in plan.runs)}
        for out in finished:
            _report(out, states[out.run_id], max_retries, log)
        rows = [status.row(study, s, rule) for s in states.values()]
        _restart_stalled(rows, ex, log)
        rate = status.grid_rate(rows) or rate
        line = label + status.grid_line(rows, rate)
        if tty or line.split(" | ETA")[0] != last_line.split(" | ETA")[0] or time.time() - last_print > 60:
            print(("\r\033[K" if tty else "") + line, end="" if tty else "\n", flush=True)
            last_line, last_print = line, time.time()
        if stop.signum:
            return rows
        if all(s.state in st.TERMINAL for s in states.values()) and not ex.active():
            return rows
        active = ex.active()
        # Largest first: the grid's makespan is bounded by its longest runs (LPT scheduling).
        todo = sorted((s.spec for s in states.values() if s.state in RUNNABLE and s.spec.run_id not in active),
                      key=lambda spec: -spec.flops)
        ex.submit(todo[: ex.capacity()])
        ex.wait(poll_s)


def main(argv: list[str] | None = None, *, label: str = "", log=None) -> int:
    """`label` prefixes the progress line and `log` (a text file) takes every other line, so a caller
    (experiments.study) shows one progress line for the whole study."""
    out = log or sys.stdout
    args = parse(argv)
    study = args.study.resolve()
    try:
        plan = st.load_plan(study)
        executor, workers, retries = resolve(args, plan)
        check_writable(study)
        changed = check_plan(study, plan, args.fresh)
        ex = make_executor(executor, study, plan, workers, trainer=args.trainer, max_retries=retries)
    except (st.StudyError, LaunchError, ExecutorUnavailable, allocator.AllocatorError) as e:
        print(f"launch: {e}", file=sys.stderr)
        return 2
    if changed:
        print(f"launch: --fresh: {len(changed)} changed run(s) moved to {archive(study, changed)}", file=out, flush=True)
    record_launch(study, plan, executor, workers, retries)
    print(f"launch: {len(plan.runs)} runs in {study} on {executor} with {workers} worker(s)", file=out, flush=True)
    stop = _Stop()
    try:
        rows = loop(study, plan, ex, retries, args.poll_s, stop, label, log, status.stall_rule(args))
    finally:
        ex.stop(args.stop_grace_s)
    if stop.signum:
        print(f"\nlaunch: stopped by {signal.Signals(stop.signum).name}; relaunch to resume", file=out, flush=True)
        return 128 + stop.signum
    print(("\n" if sys.stdout.isatty() and log is None else "") + "launch: " + status.grid_line(rows), file=out, flush=True)
    for r in rows:
        if r.state != st.COMPLETED:
            print(f"launch: {r.run_id} {r.state}: {r.reason}", file=out, flush=True)
    return 1 if any(r.state in (st.FAILED, st.INVALID, st.BLOCKED) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
