"""A study directory on disk, and the state of each of its runs read back from the files.

    <study>/plan.json               the planner's output: {"study": {...}, "runs": [RunSpec], "dropped": [...]}
    <study>/launched.json           per run id, the hash of the spec it was started from: a grown plan
                                    keeps the runs whose spec is unchanged, a changed spec is refused
    <study>/runs/<run_id>/          the trainer's workdir: run.json, metrics.jsonl, checkpoints/
        attempts.json               one entry per trainer start (outcome, exit code, host), for retries
        train.log                   the trainer's stdout and stderr, appended per attempt
        .lock, lease.json           see experiments.locks
    <study>/slurm/                  submitit's job folder and jobs.json (run_id -> queued SLURM job id)

Everything here only reads files, so `status` and `collect` can run while a launcher is working.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from experiments import locks
from experiments.spec import RunSpec
from scaling.exit_codes import EXIT_CONFIG, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_OK

# Run states. Terminal ones end the launcher's interest in a run.
PENDING, WAITING, QUEUED, RUNNING = "pending", "waiting", "queued", "running"
INTERRUPTED, RETRY = "interrupted", "retry"
COMPLETED, DIVERGED, INVALID, FAILED, BLOCKED = "completed", "diverged", "invalid", "failed", "blocked"
TERMINAL = frozenset({COMPLETED, DIVERGED, INVALID, FAILED, BLOCKED})


class StudyError(Exception):
    """Bad study directory or plan: one line naming the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class Plan:
    study: dict
    runs: tuple[RunSpec, ...]
    hash: str

    def by_id(self) -> dict[str, RunSpec]:
        return {r.run_id: r for r in self.runs}


def plan_hash(runs: list[dict]) -> str:
    # Only the runs decide what gets trained; the study section also holds measured estimates
    # (throughput probe) that change on every planning and must not invalidate a launched study.
    return hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest()[:16]


def spec_hash(spec: RunSpec) -> str:
    """Identity of one run's spec. Fields at their dataclass default are left out, so a RunSpec field
    added later (with a default) does not make every run of an older study look changed."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(RunSpec)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    kept = {k: v for k, v in spec.to_dict().items() if not (k in defaults and v == defaults[k])}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def has_started(study: Path, run_id: str) -> bool:
    """Whether a trainer ever started this run (it left a record, a log or a checkpoint)."""
    rdir = run_dir(study, run_id)
    return any((rdir / name).exists() for name in ("run.json", "attempts.json", "metrics.jsonl", "checkpoints"))


def load_plan(study: Path) -> Plan:
    path = Path(study) / "plan.json"
    if not path.is_file():
        raise StudyError(f"--study: {path} not found; write it with "
                         f"python -m experiments.plan --config=experiments/configs/<study>.py")
    try:
        raw = json.loads(path.read_text())
        runs = tuple(RunSpec.from_dict(r) for r in raw["runs"])
    except (ValueError, KeyError, TypeError) as e:
        raise StudyError(f"--study: {path} is not a valid plan ({type(e).__name__}: {e}); re-run experiments.plan")
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise StudyError(f"--study: {path} repeats run ids; re-run experiments.plan")
    missing = {r.branch_from for r in runs if r.branch_from} - set(ids)
    if missing:
        raise StudyError(f"--study: {path} branches from runs it does not plan: {sorted(missing)}")
    return Plan(raw.get("study", {}), runs, plan_hash(raw["runs"]))


def run_dir(study: Path, run_id: str) -> Path:
    return Path(study) / "runs" / run_id


# --- attempts: the launcher's own record of trainer starts -------------------------------------------

def read_attempts(rdir: Path) -> list[dict]:
    return locks.read_json(rdir / "attempts.json") or []


def write_attempts(rdir: Path, attempts: list[dict]) -> None:
    locks.write_json_atomic(rdir / "attempts.json", attempts)


def outcome_of_exit(code: int, run_json: dict | None) -> str:
    if code == EXIT_OK:
        ok = run_json is not None and run_json.get("status") == COMPLETED
        return COMPLETED if ok else FAILED
    if code == EXIT_CONFIG:
        return INVALID
    if code == EXIT_DIVERGED:
        return DIVERGED
    if code in (EXIT_INTERRUPTED, -15):
        return INTERRUPTED
    return FAILED


def outcome_of_lost(run_json: dict | None) -> str:
    """Classify an attempt whose recorder died with it (launcher SIGKILLed, node lost) by what the
    trainer left behind. No run.json: nothing was trained, the attempt does not count as a failure."""
    if run_json is None:
        return "lost"
    return {COMPLETED: COMPLETED, DIVERGED: DIVERGED, INTERRUPTED: INTERRUPTED}.get(run_json.get("status"), FAILED)


def failures(attempts: list[dict]) -> int:
    return sum(a.get("outcome") == FAILED for a in attempts)


# --- reading what the trainer wrote ------------------------------------------------------------------

def read_run_json(rdir: Path) -> dict | None:
    try:
        return locks.read_json(rdir / "run.json")
    except ValueError:  # the trainer writes atomically; a torn file means a foreign writer
        return None


def checkpoint_ready(rdir: Path, step: int) -> bool:
    """Whether the trainer finished writing its checkpoint at `step` (orbax renames a tmp dir into
    `checkpoints/<step>` only once it is complete)."""
    return (Path(rdir) / "checkpoints" / str(step)).is_dir()


@dataclasses.dataclass(frozen=True)
class Progress:
    step: int | None = None
    tokens: int | None = None
    flops: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None


def read_progress(rdir: Path, tail_bytes: int = 1 << 16) -> Progress:
    """The latest value of each field from the end of metrics.jsonl (the trainer logs eval on lines of
    their own, so the newest line alone lacks the train loss or the eval loss)."""
    path = Path(rdir) / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return Progress()
    fields = {f.name: None for f in dataclasses.fields(Progress)}
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:  # a line being appended right now, or cut by the tail window
            continue
        for k, v in fields.items():
            if v is None and row.get(k) is not None:
                fields[k] = row[k]
        if all(v is not None for v in fields.values()):
            break
    return Progress(**fields)


# --- the state of one run ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunState:
    spec: RunSpec
    state: str
    failures: int = 0
    reason: str = ""  # why a run is failed, blocked or waiting


def settled_attempts(attempts: list[dict], run_json: dict | None) -> list[dict]:
    """Attempts with the unfinished one (its recorder died) classified by what the trainer left."""
    return [a if a.get("outcome") else {**a, "outcome": outcome_of_lost(run_json)} for a in attempts]


def run_state(study: Path, spec: RunSpec, plan: Plan, max_retries: int, queued: frozenset = frozenset(),
              lock_held_by_caller: bool = False) -> RunState:
    rdir = run_dir(study, spec.run_id)
    if not lock_held_by_caller and locks.is_held(rdir):
        return RunState(spec, RUNNING)
    rj = read_run_json(rdir)
    attempts = settled_attempts(read_attempts(rdir), rj)
    n_failed = failures(attempts)
    last = attempts[-1] if attempts else {}
    if rj is not None and rj.get("status") == COMPLETED:
        return RunState(spec, COMPLETED, n_failed)
    if last.get("outcome") == INVALID:
        return RunState(spec, INVALID, n_failed, "trainer rejected the config (exit 2); see train.log")
    if last.get("outcome") == DIVERGED or (rj is not None and rj.get("status") == DIVERGED):
        return RunState(spec, DIVERGED, n_failed, "loss became NaN/Inf")
    if n_failed > max_retries:
        return RunState(spec, FAILED, n_failed, f"failed {n_failed} times (exit {last.get('exit_code')}); see train.log")
    if spec.run_id in queued:
        return RunState(spec, QUEUED, n_failed)
    if spec.branch_from and not checkpoint_ready(run_dir(study, spec.branch_from), spec.branch_step):
        trunk = run_state(study, plan.by_id()[spec.branch_from], plan, max_retries, queued)
        if trunk.state in TERMINAL:
            return RunState(spec, BLOCKED, n_failed,
                            f"trunk {spec.branch_from} is {trunk.state} without a checkpoint at step {spec.branch_step}")
        return RunState(spec, WAITING, n_failed, f"for {spec.branch_from} step {spec.branch_step}")
    if last.get("outcome") == FAILED:
        return RunState(spec, RETRY, n_failed)
    return RunState(spec, INTERRUPTED if (rj is not None or attempts) else PENDING, n_failed)
