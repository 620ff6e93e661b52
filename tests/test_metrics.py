"""scaling.metrics and plumbing.atomic: metrics.jsonl with resume truncation, TensorBoard events, run.json."""
import json
import os
import pathlib
import struct
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2

from plumbing import atomic
from scaling import metrics

REPO = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- a TensorBoard event reader
def _masked_crc(data: bytes) -> int:
    x = crc32c(data) & 0xFFFFFFFF
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_events(path: pathlib.Path) -> list:
    """TFRecord framing (len u64, masked crc32c of len, data, masked crc32c of data), CRCs checked."""
    raw, events, pos = path.read_bytes(), [], 0
    while pos < len(raw):
        header = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", raw[pos + 8:pos + 12])[0] == _masked_crc(header)
        data = raw[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])[0] == _masked_crc(data)
        events.append(event_pb2.Event.FromString(data))
        pos += 16 + length
    return events


def _tb_scalars(tb_dir: pathlib.Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} as TensorBoard shows it: a purge event hides earlier files' steps >= it."""
    out: dict[str, dict[int, float]] = {}
    for f in sorted(tb_dir.glob("events.out.tfevents.*")):  # TensorBoard's order: by name
        for ev in _read_events(f):
            if ev.HasField("session_log") and ev.session_log.status == event_pb2.SessionLog.START:
                for series in out.values():
                    for step in [s for s in series if s >= ev.step]:
                        del series[step]
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


# ---------------------------------------------------------------- metrics.jsonl
def _log_steps(workdir, steps, *, resume_step):
    with metrics.MetricsWriter(workdir, resume_step=resume_step) as w:
        for s in steps:
            w.write(s, train_loss=10.0 / s, lr=np.float32(1e-3), grad_norm=jnp.float32(0.5), tokens=s * 64)


def test_records_roundtrip_and_tensorboard_readable(tmp_path):
    with metrics.MetricsWriter(tmp_path, resume_step=None) as w:
        w.write(1, train_loss=2.5, lr=np.float32(0.25), grad_norm=jnp.asarray(1.5), tokens=128, note="warmup")
        w.write(2, train_loss=float("nan"), eval_loss=1.25, mfu=None)
    recs = metrics.read_metrics(tmp_path)
    assert recs == [
        {"step": 1, "train_loss": 2.5, "lr": 0.25, "grad_norm": 1.5, "tokens": 128, "note": "warmup"},
        {"step": 2, "train_loss": None, "eval_loss": 1.25, "mfu": None},  # JSON has no NaN
    ]
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    tb = _tb_scalars(tmp_path / "tb")
    assert tb["train_loss"][1] == 2.5 and np.isnan(tb["train_loss"][2])  # TB keeps the NaN
    assert tb["lr"] == {1: 0.25} and tb["grad_norm"] == {1: 1.5} and tb["tokens"] == {1: 128.0}
    assert tb["eval_loss"] == {2: 1.25}
    assert "note" not in tb and "mfu" not in tb


def test_resume_drops_steps_after_checkpoint_same_as_uninterrupted(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _log_steps(straight, range(1, 11), resume_step=None)
    _log_steps(resumed, range(1, 8), resume_step=None)  # killed after logging step 7...
    _log_steps(resumed, range(5, 11), resume_step=4)  # ...restarted from the checkpoint at step 4
    assert metrics.read_metrics(resumed) == metrics.read_metrics(straight)
    assert [r["step"] for r in metrics.read_metrics(resumed)] == list(range(1, 11))
    tb_straight, tb_resumed = _tb_scalars(straight / "tb"), _tb_scalars(resumed / "tb")
    assert tb_resumed == tb_straight and sorted(tb_resumed["train_loss"]) == list(range(1, 11))
    assert len(list((resumed / "tb").iterdir())) == 2  # the first attempt's file is kept, not overwritten


def test_fresh_start_over_old_attempt_drops_everything(tmp_path):
    _log_steps(tmp_path, range(1, 4), resume_step=None)  # an attempt that died before any checkpoint
    _log_steps(tmp_path, range(1, 3), resume_step=None)
    assert [r["step"] for r in metrics.read_metrics(tmp_path)] == [1, 2]


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    _log_steps(tmp_path, range(1, 4), resume_step=None)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "train_lo')  # killed mid-write
    with pytest.warns(RuntimeWarning, match="torn"):
        assert [r["step"] for r in metrics.read_metrics(tmp_path)] == [1, 2, 3]
    with pytest.warns(RuntimeWarning, match="torn"):
        _log_steps(tmp_path, [4, 5], resume_step=3)
    text = (tmp_path / "metrics.jsonl").read_text()
    assert [json.loads(line)["step"] for line in text.splitlines()] == [1, 2, 3, 4, 5]


def test_lines_are_flushed_before_close(tmp_path):
    w = metrics.MetricsWriter(tmp_path, resume_step=None)
    w.write(3, train_loss=1.0)
    # A reader (or a SIGKILL) sees the line without waiting for close.
    assert metrics.read_metrics(tmp_path) == [{"step": 3, "train_loss": 1.0}]
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.write(4, train_loss=1.0)


def test_only_process_zero_writes(tmp_path):
    _log_steps(tmp_path, [1, 2], resume_step=None)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with metrics.MetricsWriter(tmp_path, resume_step=None, process_index=1) as w:
        w.write(1, train_loss=3.0)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before  # neither truncated nor appended
    assert len(list((tmp_path / "tb").iterdir())) == 1
    other = tmp_path / "other"
    with metrics.MetricsWriter(other, resume_step=None, process_index=3) as w:
        w.write(1, train_loss=3.0)
    assert not other.exists()


def test_bad_step_is_rejected(tmp_path):
    with metrics.MetricsWriter(tmp_path, resume_step=None) as w:
        with pytest.raises(TypeError, match="step must be an int"):
            w.write(1.5, train_loss=1.0)


# ---------------------------------------------------------------- run.json
def test_run_json_roundtrip_and_validation(tmp_path):
    assert metrics.read_run_json(tmp_path) is None
    record = {
        "status": "diverged", "final_eval_loss": float("nan"), "final_train_loss": np.float32(2.0),
        "params": {"total": 100, "embedding": 40, "non_embedding": 60},
        "flops_per_token": {"6n": 600.0, "chinchilla": 640.0}, "tokens": 1024, "steps": 4,
        "config": {"mesh": {"shape": (-1, 1, 1)}},
    }
    metrics.write_run_json(tmp_path, record)
    got = metrics.read_run_json(tmp_path)
    assert got["status"] == "diverged" and got["final_eval_loss"] is None and got["final_train_loss"] == 2.0
    assert got["params"] == record["params"] and got["config"] == {"mesh": {"shape": [-1, 1, 1]}}
    with pytest.raises(ValueError, match="status must be one of"):
        metrics.write_run_json(tmp_path, {**record, "status": "done"})
    assert metrics.read_run_json(tmp_path)["status"] == "diverged"  # the bad record wrote nothing
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(ValueError, match="run.json is not valid JSON"):
        metrics.read_run_json(tmp_path)


def test_environment_info(tmp_path):
    import jax

    info = metrics.environment_info()
    assert info["packages"]["jax"] == jax.__version__
    assert info["packages"]["orbax-checkpoint"] is not None and info["packages"]["numpy"] == np.__version__
    assert info["device_count"] == jax.device_count() == 8 and info["process_count"] == 1
    assert info["device_kind"] == jax.devices()[0].device_kind
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert info["git"]["commit"] == head.stdout.strip()
    json.dumps(info, allow_nan=False)  # goes into run.json as is


def test_environment_info_without_git(tmp_path):
    # A copy of the package outside any repository (an installed wheel): no commit, no error.
    for name in ("scaling/__init__.py", "scaling/metrics.py", "plumbing/__init__.py", "plumbing/atomic.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    code = "import json, scaling.metrics as m; print(json.dumps(m._git_info(m.pathlib.Path(m.__file__).parent)))"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "null"


# ---------------------------------------------------------------- plumbing.atomic
def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "run.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    with pytest.raises(ValueError):
        atomic.write_json(target, {"x": float("nan")})  # not JSON: refused, old file kept
    assert target.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "f.txt"
    atomic.write_text(target, "old")

    with pytest.raises(TypeError):
        atomic.write_bytes(target, "not bytes")  # fails after the temp file exists
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
