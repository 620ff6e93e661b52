"""Fault injection by named point, for the kill-safety tests: off unless `SCALING_FAULT` is set.

`SCALING_FAULT="POINT:ACTION[@K]"` fires at the K-th arrival (default the first) of this process at
`point("POINT")`. ACTION is `kill` (SIGKILL: nothing after it runs, as on a node loss or OOM kill)
or `term` (SIGTERM to itself, then carry on: the process's own handler decides what happens, as when
a launcher or SLURM stops it). The points are listed in POINTS so a test can walk all of them.

Free when off: the spec is parsed once, at import, and `point()` is one comparison. A child process
inherits the variable: a test that restarts a process must drop it from the child's environment.
"""
from __future__ import annotations

import os
import signal

ENV = "SCALING_FAULT"

# Trainer (scaling.train) and its writes.
TRAIN_POINTS = (
    "before_run_json",        # validated and built, run.json not yet written
    "restore",                # inside the restore of the newest checkpoint
    "compile",                # while the train step compiles
    "mid_step",               # a step dispatched, its results not yet fetched
    "checkpoint_write",       # an async checkpoint save started, not yet committed
    "after_last_checkpoint",  # the last step's checkpoint committed, the run not yet `completed`
    "final_eval",             # during the final evaluation
    "write:run.json",         # run.json's new contents written, not yet renamed over the old
    "write:metrics.jsonl",    # half a metrics line appended
)
# Study (experiments.study) phases and the files its analysis writes.
STUDY_POINTS = (
    "plan", "between_runs", "collect", "fit", "validate", "figures", "report",
    "write:results.csv", "write:fits.json", "write:prediction.json", "write:report.html",
)
POINTS = TRAIN_POINTS + STUDY_POINTS
ACTIONS = ("kill", "term")


def _parse(spec: str | None) -> tuple[str, str, int] | None:
    if not spec:
        return None
    where, _, count = spec.partition("@")
    name, _, action = where.rpartition(":")
    if name not in POINTS or action not in ACTIONS:
        raise ValueError(f"{ENV}={spec!r}: expected POINT:ACTION[@K] with POINT one of {POINTS} "
                         f"and ACTION one of {ACTIONS}")
    return name, action, int(count or 1)


_ARMED = _parse(os.environ.get(ENV))
_arrivals = 0


def armed(name: str) -> bool:
    """Whether `name` is the point this process will fire at (to set up a torn write, say)."""
    return _ARMED is not None and _ARMED[0] == name


def point(name: str) -> None:
    """Fire the armed fault if this is its point and its K-th arrival; nothing otherwise."""
    global _arrivals
    if _ARMED is None or _ARMED[0] != name:
        return
    _arrivals += 1
    if _arrivals != _ARMED[2]:
        return
    os.kill(os.getpid(), signal.SIGKILL if _ARMED[1] == "kill" else signal.SIGTERM)


def without(env: dict) -> dict:
    """A copy of a process environment with the fault switch removed (for the restart)."""
    return {k: v for k, v in env.items() if k != ENV}
