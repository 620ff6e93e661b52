"""run.json: what one training run was and how it ended, as one record.

The trainer writes it (status "running" before the first step, again when the run ends); the
launcher, `experiments.collect`, `scaling.evaluate` and `scaling.sample` read it through `read`.
The file is flat JSON in the key order below; keys a stage has not reached yet are absent (an
older run.json lacking a key reads as None), so files written before a field existed still read.

Keys present by stage:
    always            status
    once configured   config, params, flops_per_token, steps, tokens, unique_tokens, epochs,
                      final_train_loss, final_eval_loss, and the environment (git, packages, python, platform,
                      device_kind, device_platform, device_count, local_device_count, process_count)
    known source E*   true_loss
    at the end        wall_time_s, compile_time_s, step_time_s, tokens_per_s
    completed         final_eval_bits_per_byte, final_eval_loss_se, eval_tokens_used
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Mapping

from plumbing import atomic
from scaling.metrics import to_json_value

FILE = "run.json"
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


@dataclasses.dataclass(frozen=True)
class Environment:
    """Where a run trained (`scaling.metrics.environment_info`), so a result can be traced."""
    git: Mapping[str, Any] | None = None  # {"commit", "dirty"}
    packages: Mapping[str, str | None] | None = None
    python: str | None = None
    platform: str | None = None
    device_kind: str | None = None
    device_platform: str | None = None
    device_count: int | None = None
    local_device_count: int | None = None
    process_count: int | None = None


_ENV_KEYS = tuple(f.name for f in dataclasses.fields(Environment))
_CORE_KEYS = ("config", "params", "flops_per_token", "steps", "tokens", "unique_tokens", "epochs", "final_train_loss",
              "final_eval_loss")
_END_KEYS = ("wall_time_s", "compile_time_s", "step_time_s", "tokens_per_s")
_EVAL_KEYS = ("final_eval_bits_per_byte", "final_eval_loss_se", "eval_tokens_used")


@dataclasses.dataclass(frozen=True)
class RunRecord:
    status: str  # one of STATUSES
    config: Mapping[str, Any] | None = None  # the run config, as a plain dict
    params: Mapping[str, int] | None = None  # {"total", "embedding", "non_embedding"}
    flops_per_token: Mapping[str, float] | None = None  # per convention (scaling.flops.CONVENTIONS)
    steps: int | None = None
    tokens: int | None = None
    # Distinct training tokens the run could see (the whole split, or data.unique_tokens' subset) and
    # tokens / unique_tokens: passes over them (Muennighoff et al.'s epochs; < 1 for a run that never repeats).
    unique_tokens: int | None = None
    epochs: float | None = None
    final_train_loss: float | None = None
    final_eval_loss: float | None = None  # None unless completed
    environment: Environment | None = None
    true_loss: float | None = None  # the source's exact optimal loss (synthetic:markov), where known
    wall_time_s: float | None = None  # this attempt, from the trainer's start to its end
    compile_time_s: float | None = None
    step_time_s: float | None = None  # pure step time of the whole run, earlier attempts' included
    tokens_per_s: float | None = None  # None unless completed
    final_eval_bits_per_byte: float | None = None
    final_eval_loss_se: float | None = None  # the final eval's own standard error
    eval_tokens_used: int | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # keys this version does not know

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"run.json status must be one of {STATUSES}, got {self.status!r}")

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.config is not None:
            out.update({k: getattr(self, k) for k in _CORE_KEYS})
        if self.environment is not None:
            out.update(dataclasses.asdict(self.environment))
        if self.true_loss is not None:
            out["true_loss"] = self.true_loss
        if self.wall_time_s is not None:
            out.update({k: getattr(self, k) for k in _END_KEYS})
        if self.eval_tokens_used is not None:
            out.update({k: getattr(self, k) for k in _EVAL_KEYS})
        # A record without a config (a crash before the first write) keeps what it was given.
        out.update({k: getattr(self, k) for k in (*_CORE_KEYS, *_END_KEYS, *_EVAL_KEYS)
                    if k not in out and getattr(self, k) is not None})
        out.update(self.extra)
        return to_json_value(out)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "RunRecord":
        raw = dict(raw)
        env = {k: raw.pop(k) for k in _ENV_KEYS if k in raw}
        known = {f.name for f in dataclasses.fields(cls)} - {"environment", "extra"}
        fields = {k: raw.pop(k) for k in list(raw) if k in known}
        return cls(**fields, environment=Environment(**env) if env else None, extra=raw)


def read(workdir: str | os.PathLike) -> RunRecord | None:
    """The run record, or None if the workdir has none yet; ValueError naming the file if unreadable."""
    path = pathlib.Path(workdir) / FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it or rerun the run to rewrite it") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not a run record (a JSON object); delete it or rerun the run")
    try:
        return RunRecord.from_json(raw)
    except TypeError as e:
        raise ValueError(f"{path} is not a run record ({e}); delete it or rerun the run") from e


def write(workdir: str | os.PathLike, record: RunRecord) -> None:
    """Atomically writes `workdir/run.json` (readers see the old record or the new one)."""
    atomic.write_json(pathlib.Path(workdir) / FILE, record.to_json())
