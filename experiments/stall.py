"""A run that stopped making progress: its log has stood still for far longer than its own pace.

A trainer blocked for ever (a wait nobody answers, a hung collective, a dead filesystem) looks
`running` to a lock-based state: the process is alive and holds its run's lock. Its files tell
otherwise: metrics.jsonl gets a line every `log.every_steps` steps. A run is stalled when neither
metrics.jsonl nor run.json has changed (nor an attempt begun) for `factor` times its seconds per log line, and never sooner
than `min_s` (compiles, evaluations and saves log nothing for a while). Files only: safe to call
while the launcher works.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from experiments import study_dir as st


@dataclasses.dataclass(frozen=True)
class StallRule:
    factor: float = 20.0  # times the run's seconds per metrics line
    min_s: float = 600.0  # the least quiet time called a stall


_SIGNS_OF_LIFE = ("metrics.jsonl", "run.json", "attempts.json")  # the last: an attempt started


def quiet_s(rdir: Path, now: float) -> float | None:
    """Seconds since the run's log or record last changed, or its latest attempt began (None: none
    of them exists)."""
    times = [p.stat().st_mtime for p in (rdir / name for name in _SIGNS_OF_LIFE) if p.exists()]
    return now - max(times) if times else None


def allowance_s(rdir: Path, rule: StallRule) -> float:
    """How long this run may stay quiet: `factor` log intervals at its logged pace, at least min_s."""
    record = st.read_run(rdir)
    prog = st.read_progress(rdir)
    steps, tokens = (record.steps, record.tokens) if record else (None, None)
    every = (((record.config if record else None) or {}).get("log") or {}).get("every_steps") or 1
    if not (prog.tokens_per_s and steps and tokens):
        return rule.min_s
    return max(rule.min_s, rule.factor * every * (tokens / steps) / prog.tokens_per_s)


def stalled(rdir: Path, rule: StallRule, now: float | None = None) -> str | None:
    """Why a running run counts as stalled, or None."""
    quiet = quiet_s(rdir, time.time() if now is None else now)
    if quiet is None:
        return None
    allowed = allowance_s(rdir, rule)
    if quiet <= allowed:
        return None
    return f"stalled: no progress for {quiet:.0f} s (allowed {allowed:.0f} s)"
