"""Run one planned run under its lock: the unit of work of every executor (a local worker thread or a
SLURM array task calls `run_one`).

The trainer is started as exactly

    python -m scaling.train --config=<spec.config_file> --workdir=<study>/runs/<run_id> --config.<k>=<v> ...
        [--init_from=<study>/runs/<branch_from>/checkpoints --init_step=<branch_step>]

and resumes by itself from `<workdir>/checkpoints`. It inherits the run's lock descriptor, so the run
stays locked until the trainer is gone, and it gets SIGTERM when its parent dies (Linux
PR_SET_PDEATHSIG), so a SIGKILLed launcher never leaves an orphan training unsupervised: the trainer
saves a checkpoint, exits 143, and the next launcher resumes it.
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

from experiments import locks
from experiments import study_dir as st
from experiments.spec import RunSpec

DEFAULT_TRAINER = "scaling.train"
_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class Outcome:
    run_id: str
    outcome: str  # a study state (completed, interrupted, failed, ...) or "busy" / "skipped" / "waiting"
    exit_code: int | None = None


def format_override(value) -> str:
    # ml_collections parses strings raw, bools the absl way, everything else with ast.literal_eval.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def trainer_argv(study: Path, spec: RunSpec, trainer: str = DEFAULT_TRAINER) -> list[str]:
    argv = [sys.executable, "-m", trainer, f"--config={spec.config_file}",
            f"--workdir={st.run_dir(study, spec.run_id)}"]
    argv += [f"--config.{k}={format_override(v)}" for k, v in spec.overrides.items()]
    if spec.branch_from:
        argv += [f"--init_from={st.run_dir(study, spec.branch_from) / 'checkpoints'}", f"--init_step={spec.branch_step}"]
    return argv


def _child_setup(cpus: tuple[int, ...] | None, parent: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


def run_one(study: Path, spec: RunSpec, plan: st.Plan, *, trainer: str = DEFAULT_TRAINER, max_retries: int = 2,
            owner: str = "", env: Mapping[str, str] | None = None, cpus: tuple[int, ...] | None = None,
            on_start: Callable[[subprocess.Popen], None] | None = None) -> Outcome:
    """Train `spec` once (or resume it) if nobody else holds it and it still needs training."""
    study = Path(study)
    rdir = st.run_dir(study, spec.run_id)
    try:
        lock = locks.RunLock(rdir, owner=owner or f"pid {os.getpid()}").acquire()
    except locks.LockBusy:
        return Outcome(spec.run_id, "busy")
    try:
        _settle(rdir)
        state = st.run_state(study, spec, plan, max_retries, lock_held_by_caller=True)
        if state.state in st.TERMINAL:
            return Outcome(spec.run_id, "skipped")
        if state.state == st.WAITING:
            return Outcome(spec.run_id, "waiting")
        return _train(study, rdir, spec, lock, trainer, owner, env, cpus, on_start)
    finally:
        lock.release()


def _settle(rdir: Path) -> None:
    """Write down the outcome of an attempt whose recorder died (we hold the lock: it is over)."""
    attempts = st.read_attempts(rdir)
    if attempts and not attempts[-1].outcome:
        st.write_attempts(rdir, st.settled_attempts(attempts, st.read_run(rdir)))


def _train(study, rdir, spec, lock, trainer, owner, env, cpus, on_start) -> Outcome:
    attempts = st.read_attempts(rdir)
    attempts.append(st.Attempt(time.time(), socket.gethostname(), owner))
    st.write_attempts(rdir, attempts)
    with open(rdir / "train.log", "ab") as log:
        log.write(f"\n=== attempt {len(attempts)} on {socket.gethostname()} at {time.ctime()}\n".encode())
        log.flush()
        proc = subprocess.Popen(trainer_argv(study, spec, trainer), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(env) if env is not None else None,
                                pass_fds=(lock.fd,), start_new_session=True,
                                preexec_fn=_child_setup(cpus, os.getpid()))
    lock.add_pid(proc.pid)
    if on_start is not None:
        on_start(proc)
    code = proc.wait()
    outcome = st.outcome_of_exit(code, st.read_run(rdir))
    attempts[-1] = dataclasses.replace(attempts[-1], end=time.time(), exit_code=code, outcome=outcome)
    st.write_attempts(rdir, attempts)
    return Outcome(spec.run_id, outcome, code)
