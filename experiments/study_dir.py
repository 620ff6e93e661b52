"""A study directory on disk, and the state of each of its runs read back from the files.

    <study>/plan.json               the planner's output: {"study": {...}, "runs": [RunSpec], "dropped": [...]}
    <study>/launched.json           per run id, the hash of the spec it was started from: a grown plan
                                    keeps the runs whose spec is unchanged, a changed spec is refused
    <study>/runs/<run_id>/          the trainer's workdir: run.json, metrics.jsonl, checkpoints/
        attempts.json               one entry per trainer start (outcome, exit code, host), for retries
        train.log                   the trainer's stdout and stderr, appended per attempt
        .lock, lease.json           see experiments.locks
    <study>/slurm/                  submitit's job folder and jobs.json (run_id -> queued SLURM job id)

Each file has its record here (`Plan`, `Launched`, `Attempt`; run.json is scaling.run_record's
`RunRecord`), and the state of a run is decided once, in `run_state`. Everything here only reads
files, so `status` and `collect` can run while a launcher is working.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from experiments import locks
from experiments.planning.errors import StudyError
from experiments.planning.study import Study
from experiments.spec import RunSpec
from scaling import run_record
from scaling.exit_codes import EXIT_CONFIG, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_OK
from scaling.run_record import RunRecord

# Run states. Terminal ones end the launcher's interest in a run.
PENDING, WAITING, QUEUED, RUNNING = "pending", "waiting", "queued", "running"
INTERRUPTED, RETRY = "interrupted", "retry"
COMPLETED, DIVERGED, INVALID, FAILED, BLOCKED = "completed", "diverged", "invalid", "failed", "blocked"
TERMINAL = frozenset({COMPLETED, DIVERGED, INVALID, FAILED, BLOCKED})


@dataclasses.dataclass(frozen=True)
class Plan:
    """A study's plan: what plan.json holds (`study`, `runs`, `dropped`) and its `hash`; the planner
    also fills what it estimated for its table (none of that is written to plan.json)."""
    study: Study  # the study section as a record: what everyone reads
    runs: tuple[RunSpec, ...]
    hash: str = ""  # plan_hash(runs)
    dropped: tuple = ()  # planning.grid.Dropped: candidates the planner left out, with why
    # The section as plan.json holds it (the config's, plus "hash"): written and hashed exactly as
    # given (keys the record does not read included), so a study planned before keeps its hash.
    section: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # estimated wall time per run_id
    seconds_source: str = ""  # "probe" or "assumed <x> FLOP/s"
    cosine_equivalent_flops: float = 0.0  # what one cosine run per grid point would cost
    total_flops: float = 0.0  # what the planned runs cost (trunks counted once)
    prior: str = ""  # the prior's description, "" without one
    windows: tuple[str, ...] = ()  # per budget: the sizes kept around the prior's N_opt
    forecast: Any = None  # planning.forecast.Forecast
    forecast_note: str = ""  # why there is no forecast, when one was asked for
    memory_gb: dict[str, float] = dataclasses.field(default_factory=dict)  # per run, per device
    memory_note: str = ""  # the memory limit the runs were fitted to ("" without one)

    def by_id(self) -> dict[str, RunSpec]:
        return {r.run_id: r for r in self.runs}

    def to_json(self) -> dict[str, Any]:
        return {"study": self.section, "runs": [r.to_dict() for r in self.runs],
                "dropped": [d if isinstance(d, dict) else dataclasses.asdict(d) for d in self.dropped]}


# Study fields added after studies were planned, at the value that changes nothing: left out of the hash,
# so a config that gains the field's default line keeps the hash its plans were launched with.
UNHASHED_DEFAULTS = {"hparams": ""}


def plan_hash(study: Mapping[str, Any], runs: Sequence[RunSpec]) -> str:
    """Identity of a plan (its study section without "hash", and its runs), written into plan.json as
    study.hash: a launcher, or a queued SLURM task, notices a plan.json replaced under it. A changed
    hash alone retrains nothing: the launcher then compares each run's spec_hash."""
    section = {k: v for k, v in study.items()
               if k != "hash" and not (k in UNHASHED_DEFAULTS and v == UNHASHED_DEFAULTS[k])}
    blob = json.dumps({"study": section, "runs": [r.to_dict() for r in runs]}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    section = raw.get("study", {})
    if not isinstance(section, dict):
        raise StudyError(f"--study: {path} has no study section (got {type(section).__name__}); re-run experiments.plan")
    try:
        study = Study.from_section(section)
    except StudyError as e:
        raise StudyError(f"--study: {path}: {e}") from None
    return Plan(study, runs, plan_hash(section, runs), tuple(raw.get("dropped", ())), section=section)


def run_dir(study: Path, run_id: str) -> Path:
    return Path(study) / "runs" / run_id


# --- launched.json: what the launcher started the study from -----------------------------------------

@dataclasses.dataclass(frozen=True)
class Launch:
    """One start of `experiments.launch` on this study."""
    time: float
    host: str
    pid: int
    executor: str
    workers: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Launched:
    """`<study>/launched.json`: the plan and per-run spec hashes it was last launched with."""
    launches: tuple[Launch, ...] = ()
    plan_hash: str | None = None
    specs: Mapping[str, str] | None = None  # run_id -> spec_hash; None: launched before they were kept
    max_retries: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"launches": [x.to_json() for x in self.launches]}
        out.update({k: v for k, v in (("plan_hash", self.plan_hash), ("specs", self.specs),
                                      ("max_retries", self.max_retries)) if v is not None})
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Launched":
        # Older files may hold launch entries with fewer keys: those read as unknown.
        launches = tuple(Launch(**{f.name: x.get(f.name) for f in dataclasses.fields(Launch)})
                         for x in raw.get("launches", ()))
        return cls(launches, raw.get("plan_hash"), raw.get("specs"), raw.get("max_retries"))

    def first_launch(self) -> float | None:
        return min((x.time for x in self.launches if x.time), default=None)


def read_launched(study: Path) -> Launched | None:
    raw = locks.read_json(Path(study) / "launched.json")
    return None if raw is None else Launched.from_json(raw)


def write_launched(study: Path, launched: Launched) -> None:
    locks.write_json_atomic(Path(study) / "launched.json", launched.to_json())


# --- attempts: the launcher's own record of trainer starts -------------------------------------------

@dataclasses.dataclass(frozen=True)
class Attempt:
    """One trainer start, in `<run>/attempts.json`. `outcome` is None while it runs (or its recorder
    died with it: see `settled_attempts`)."""
    start: float | None
    host: str | None = None
    owner: str = ""
    end: float | None = None
    exit_code: int | None = None
    outcome: str | None = None  # a run state, or "lost"

    def to_json(self) -> dict[str, Any]:
        out = {"start": self.start, **({"host": self.host} if self.host is not None else {}), "owner": self.owner}
        if self.outcome is not None:
            out.update(end=self.end, exit_code=self.exit_code, outcome=self.outcome)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Attempt":
        return cls(raw.get("start"), raw.get("host"), raw.get("owner", ""), raw.get("end"),
                   raw.get("exit_code"), raw.get("outcome"))


def read_attempts(rdir: Path) -> list[Attempt]:
    return [Attempt.from_json(a) for a in locks.read_json(rdir / "attempts.json") or []]


def write_attempts(rdir: Path, attempts: Sequence[Attempt]) -> None:
    locks.write_json_atomic(rdir / "attempts.json", [a.to_json() for a in attempts])


def outcome_of_exit(code: int, record: RunRecord | None) -> str:
    if code == EXIT_OK:
        return COMPLETED if record is not None and record.status == COMPLETED else FAILED
    if code == EXIT_CONFIG:
        return INVALID
    if code == EXIT_DIVERGED:
        return DIVERGED
    if code in (EXIT_INTERRUPTED, -15):
        return INTERRUPTED
    return FAILED


def outcome_of_lost(record: RunRecord | None) -> str:
    """Classify an attempt whose recorder died with it (launcher SIGKILLed, node lost) by what the
    trainer left behind. No run.json: nothing was trained, the attempt does not count as a failure."""
    if record is None:
        return "lost"
    return {COMPLETED: COMPLETED, DIVERGED: DIVERGED, INTERRUPTED: INTERRUPTED}.get(record.status, FAILED)


def failures(attempts: Sequence[Attempt]) -> int:
    return sum(a.outcome == FAILED for a in attempts)


# --- reading what the trainer wrote ------------------------------------------------------------------

def read_run(rdir: Path) -> RunRecord | None:
    """The run's record (scaling.run_record), or None when it has none or an unreadable one."""
    try:
        return run_record.read(rdir)
    except ValueError:  # the trainer writes atomically; a torn file means a foreign writer
        return None


def checkpoint_ready(rdir: Path, step: int) -> bool:
    """Whether the trainer finished writing its checkpoint at `step` (orbax renames a tmp dir into
    `checkpoints/<step>` only once it is complete)."""
    return (Path(rdir) / "checkpoints" / str(step)).is_dir()


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """A run's newest logged values, read from the end of its metrics.jsonl."""
    step: int | None = None
    tokens: int | None = None
    flops: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None


def read_progress(rdir: Path, tail_bytes: int = 1 << 16) -> RunProgress:
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
        return RunProgress()
    fields = {f.name: None for f in dataclasses.fields(RunProgress)}
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
    return RunProgress(**fields)


# --- the state of one run ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunState:
    spec: RunSpec
    state: str
    failures: int = 0
    reason: str = ""  # why a run is failed, blocked or waiting


def settled_attempts(attempts: Sequence[Attempt], record: RunRecord | None) -> list[Attempt]:
    """Attempts with the unfinished one (its recorder died) classified by what the trainer left."""
    return [a if a.outcome else dataclasses.replace(a, outcome=outcome_of_lost(record)) for a in attempts]


def run_state(study: Path, spec: RunSpec, plan: Plan, max_retries: int, queued: frozenset = frozenset(),
              lock_held_by_caller: bool = False) -> RunState:
    rdir = run_dir(study, spec.run_id)
    if not lock_held_by_caller and locks.is_held(rdir):
        return RunState(spec, RUNNING)
    rj = read_run(rdir)
    attempts = settled_attempts(read_attempts(rdir), rj)
    n_failed = failures(attempts)
    last = attempts[-1] if attempts else Attempt(None)
    if rj is not None and rj.status == COMPLETED:
        return RunState(spec, COMPLETED, n_failed)
    if last.outcome == INVALID:
        return RunState(spec, INVALID, n_failed, "trainer rejected the config (exit 2); see train.log")
    if last.outcome == DIVERGED or (rj is not None and rj.status == DIVERGED):
        return RunState(spec, DIVERGED, n_failed, "loss became NaN/Inf")
    if n_failed > max_retries:
        return RunState(spec, FAILED, n_failed, f"failed {n_failed} times (exit {last.exit_code}); see train.log")
    if spec.run_id in queued:
        return RunState(spec, QUEUED, n_failed)
    if spec.branch_from and not checkpoint_ready(run_dir(study, spec.branch_from), spec.branch_step):
        trunk = run_state(study, plan.by_id()[spec.branch_from], plan, max_retries, queued)
        if trunk.state in TERMINAL:
            return RunState(spec, BLOCKED, n_failed,
                            f"trunk {spec.branch_from} is {trunk.state} without a checkpoint at step {spec.branch_step}")
        return RunState(spec, WAITING, n_failed, f"for {spec.branch_from} step {spec.branch_step}")
    if last.outcome == FAILED:
        return RunState(spec, RETRY, n_failed)
    return RunState(spec, INTERRUPTED if (rj is not None or attempts) else PENDING, n_failed)


def _last_line(path: Path, limit: int = 200) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [x.strip() for x in fh.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def why_not_completed(study: Path, state: RunState) -> str | None:
    """For a report: why a run has no result (None when it completed), with the last line of its
    train.log where the trainer failed."""
    if state.state == COMPLETED:
        return None
    rdir = run_dir(study, state.spec.run_id)
    record, attempts = read_run(rdir), read_attempts(rdir)
    log = _last_line(rdir / "train.log")
    if state.state == DIVERGED:
        return "diverged: the loss became NaN/Inf" + (f" ({log})" if log else "")
    if state.state in (INVALID, FAILED, RETRY):
        what = ("trainer rejected the config" if state.state == INVALID
                else f"failed {state.failures} time(s)")
        return f"{what} (exit {attempts[-1].exit_code if attempts else None})" + (f": {log}" if log else "")
    if record is None and not attempts:
        return "never started"
    return f"not finished ({record.status if record else 'started'})"
