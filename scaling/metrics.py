"""What a run leaves for the analysis: `metrics.jsonl`, TensorBoard events, and `run.json`.

`metrics.jsonl` holds one JSON object per logged step. A run resumed from step s must end with
the same set of steps as an uninterrupted one, so on resume the lines with step > s written by
the killed attempt (and a torn last line, if it died mid-write) are dropped by rewriting the file
atomically before anything is appended. TensorBoard gets the same purge through `purge_step`.

JSON has no NaN/Infinity: non-finite numbers are stored as null (a diverged run says so in
run.json's `status`), so every file parses with strict readers.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
import pathlib
import platform
import subprocess
import time
import warnings
from typing import Any

import numpy as np

from plumbing import atomic, faults

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "grain", "numpy",
)


# ------------------------------------------------------------------ value cleaning
def to_json_value(value: Any) -> Any:
    """Python/numpy/jax scalars and containers -> plain JSON values; non-finite floats -> None."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # numpy / jax arrays and scalars
        arr = np.asarray(value)
        if arr.ndim == 0:
            return to_json_value(arr.item())
        return to_json_value(arr.tolist())
    raise TypeError(f"cannot store {type(value).__name__} value {value!r} as JSON")


def _parse_lines(text: str, path: pathlib.Path) -> list[dict]:
    records = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            # Only the last line can be torn by a kill mid-write; anything else is real damage.
            where = "last line (torn by an interrupted write)" if i >= len(lines) - 2 else f"line {i + 1}"
            warnings.warn(f"{path}: dropping unparsable {where}", RuntimeWarning, stacklevel=3)
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            warnings.warn(f"{path}: dropping line {i + 1} without an integer 'step'", RuntimeWarning, stacklevel=3)
            continue
        records.append(rec)
    return records


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """All records of `workdir/metrics.jsonl` in file order ([] if absent); torn lines skipped."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    return _parse_lines(path.read_text(encoding="utf-8", errors="replace"), path)


# ------------------------------------------------------------------ writer
class MetricsWriter:
    """Appends scalars to metrics.jsonl and TensorBoard; only process 0 writes.

    `resume_step`: the step the run restored from (None for a fresh start, which drops every old
    line). Lines with step > resume_step are dropped; the trainer must therefore write step s's
    record before it saves checkpoint s, or a kill between the two loses that line.
    """

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None, process_index: int = 0):
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / METRICS_FILE
        self.active = process_index == 0
        self._file = None
        self._tb = None
        if not self.active:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        # Imported here so that processes other than 0 never load it.
        from tensorboardX import SummaryWriter

        # purge_step hides the killed attempt's events with step > resume_step in TensorBoard, the
        # same cut as the jsonl rewrite.
        purge = 0 if resume_step is None else resume_step + 1
        # tensorboardX names files by the second and the host only: an attempt restarted within the
        # same second would truncate the previous attempt's file. The ns suffix keeps them apart and
        # in order (TensorBoard reads a run's files in name order).
        self._tb = SummaryWriter(
            logdir=str(self.workdir / TB_DIR), purge_step=purge, flush_secs=10,
            filename_suffix=f".{time.time_ns()}.{os.getpid()}",
        )

    def _truncate_after(self, resume_step: int | None) -> None:
        if not self.path.exists():
            return
        kept = [
            r for r in _parse_lines(self.path.read_text(encoding="utf-8", errors="replace"), self.path)
            if resume_step is not None and r["step"] <= resume_step
        ]
        atomic.write_text(self.path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))

    def write(self, step: int, **scalars: Any) -> None:
        """One record {'step': step, **scalars}: a JSON line (flushed) and one TB scalar per number."""
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool):
            raise TypeError(f"metrics step must be an int, got {type(step).__name__}")
        if not self.active:
            return
        if self._file is None:
            raise RuntimeError(f"MetricsWriter for {self.workdir} is closed")
        record = {"step": int(step), **{k: to_json_value(v) for k, v in scalars.items()}}
        line = json.dumps(record, allow_nan=False) + "\n"
        if faults.armed("write:metrics.jsonl"):  # a kill between two halves: the torn last line
            self._file.write(line[:len(line) // 2])
            self._file.flush()
            faults.point("write:metrics.jsonl")
            line = line[len(line) // 2:]
        self._file.write(line)
        self._file.flush()
        for key, value in scalars.items():
            number = _as_number(value)
            if number is not None:
                self._tb.add_scalar(key, number, global_step=int(step))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._tb.close()
            self._file = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def mfu(tokens_per_s: float, flops_per_token: float, peak_per_device: float | None,
        device_count: int) -> float | None:
    """Model FLOPs utilisation per device: the global rate over the peak of all devices together
    (PaLM, Chowdhery et al. 2022 App. B); None where the device's peak is unknown."""
    if not peak_per_device:
        return None
    return tokens_per_s * flops_per_token / (peak_per_device * device_count)


def _as_number(value: Any) -> float | None:
    """TensorBoard keeps NaN/inf (useful to see a divergence), unlike JSON; strings are skipped."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number):
        return None
    return float(arr)


# ------------------------------------------------------------------ run.json
# The record itself lives in scaling.run_record (imported here lazily: it builds on to_json_value).
def write_run_json(workdir: str | os.PathLike, record: dict) -> None:
    """Atomically writes `workdir/run.json` from its JSON form; the status must be a run status."""
    from scaling import run_record

    run_record.write(workdir, run_record.RunRecord.from_json(record))


def read_run_json(workdir: str | os.PathLike) -> dict | None:
    """run.json's JSON form, read through the run record; None if the workdir has none yet."""
    from scaling import run_record

    record = run_record.read(workdir)
    return None if record is None else record.to_json()


def environment_info() -> dict:
    """Git commit, package versions and devices, so a result can be traced to what produced it."""
    import jax  # the only JAX use in this module: device facts at run start

    devices = jax.devices()
    return {
        "git": _git_info(pathlib.Path(__file__).resolve().parent),
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device_kind": devices[0].device_kind,
        "device_platform": devices[0].platform,
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
    }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_info(directory: pathlib.Path) -> dict | None:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
