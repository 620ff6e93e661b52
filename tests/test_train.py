"""End to end through the real CLI: outputs, resume after SIGKILL/SIGTERM, divergence, config errors."""
from __future__ import annotations

import pathlib
import signal
import time

import jax
import numpy as np
import pytest

from scaling import exit_codes, train
import train_helpers as th

STEPS = th.STEPS


def test_run_writes_its_records(reference):
    record = th.run_json(reference)
    assert record["status"] == "completed"
    for key in ("final_eval_loss", "final_train_loss", "params", "flops_per_token", "tokens", "steps",
                "config", "git", "packages", "device_kind", "device_count"):
        assert record.get(key) is not None, key
    assert set(record["params"]) == {"total", "embedding", "non_embedding"}
    assert set(record["flops_per_token"]) == {"6n", "6n_nonembed", "chinchilla", "chinchilla_causal"}
    assert record["tokens"] == 40 * 4 * 32
    rows = th.metrics(reference)
    train_rows = [r for r in rows if "train_loss" in r]
    assert [r["step"] for r in train_rows] == list(range(4, 41, 4))
    for key in ("tokens", "flops", "lr", "grad_norm", "step_time", "tokens_per_s", "mfu", "data_wait_frac"):
        assert key in train_rows[-1]
    assert all(0 <= r["data_wait_frac"] <= 1 for r in train_rows)
    eval_rows = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in eval_rows] == [20, 40]
    assert eval_rows[-1]["eval_loss"] == record["final_eval_loss"]
    assert train_rows[-1]["train_loss"] < train_rows[0]["train_loss"]
    assert list((reference / "tb").glob("**/events.out.tfevents.*"))
    assert sorted(p.name for p in (reference / "checkpoints").iterdir() if p.name.isdigit()) == ["24", "32", "40"]


def _wait_for(predicate, proc, timeout=120, poll_s=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def _save_in_flight(workdir) -> bool:
    d = pathlib.Path(workdir) / "checkpoints"
    return d.exists() and any(p.name.endswith("tmp") for p in d.iterdir())


def _checkpoint_steps(workdir):
    d = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def test_sigterm_saves_and_exits_cleanly(tmp_path, data_dir):
    workdir = tmp_path / "term"
    # No interval saves (every_steps=0): any checkpoint on disk is the one SIGTERM forced.
    proc = th.start(workdir, data_dir, *STEPS, "--config.train.steps=4000",
                    "--config.checkpoint.every_steps=0")
    assert _wait_for(lambda: (workdir / "metrics.jsonl").exists()
                     and "train_loss" in (workdir / "metrics.jsonl").read_text(), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == exit_codes.EXIT_INTERRUPTED
    record = th.run_json(workdir)
    assert record["status"] == "interrupted"
    last = [r["step"] for r in th.metrics(workdir) if "train_loss" in r][-1]
    saved = _checkpoint_steps(workdir)
    assert len(saved) == 1 and last <= saved[0] < 4000, (saved, last)
    assert not _save_in_flight(workdir)  # the forced save was committed before exiting


def test_sigterm_before_the_first_step_saves_step_one(tmp_path, data_dir):
    """run.json is written after the handler is installed and before the compile: a SIGTERM then
    is honoured at the first step, not fatal."""
    workdir = tmp_path / "early"
    proc = th.start(workdir, data_dir, *STEPS, "--config.checkpoint.every_steps=0")
    assert _wait_for(lambda: (workdir / "run.json").exists(), proc, poll_s=0.005)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == exit_codes.EXIT_INTERRUPTED, out[-2000:]
    assert _checkpoint_steps(workdir) == [1] and "preempted: saved step 1;" in out


def test_nan_loss_is_diverged_and_keeps_last_good_checkpoint(tmp_path, data_dir):
    workdir = tmp_path / "nan"
    # An absurd learning rate overflows the weights within a few steps.
    result = th.train(workdir, data_dir, *STEPS, "--config.train.lr=1e30", "--config.train.clip_norm=0",
                      "--config.train.warmup_steps=0", "--config.checkpoint.every_steps=1")
    assert result.returncode == exit_codes.EXIT_DIVERGED, result.stderr[-2000:]
    assert th.run_json(workdir)["status"] == "diverged"
    saved = _checkpoint_steps(workdir)
    assert saved and saved[-1] < 40
    step, state = th.final_state(workdir, clip_norm=0)
    assert step == saved[-1]
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state["params"]))


@pytest.mark.parametrize("flags,field", [
    (["--config.model.n_heads=3"], "model.n_heads"),
    (["--cpu_devices=8", "--config.mesh.shape=(4,1,2)", "--config.model.n_heads=3", "--config.model.head_dim=8"], "model.n_heads"),
    (["--cpu_devices=8", "--config.mesh.shape=(2,2,1)"], "mesh.shape"),
    (["--cpu_devices=8", "--config.mesh.shape=(8,1,1)", "--config.train.global_batch=12"], "train.global_batch"),
    (["--config.model.vocab_size=100"], "model.vocab_size"),
    (["--config.data.dataset=nope", "--config.train.global_batch=8", "--config.eval.batch=8"], "data.dataset"),
    (["--config.model.bogus=1"], "bogus"),
    (["--config.train.schedule=linear"], "train.schedule"),
])
def test_invalid_config_one_line_exit_2(flags, field, tmp_path, data_dir, monkeypatch, capsys):
    # In this process (the trainer's main, as its CLI calls it): a process per case cost ~5 s each;
    # test_cli_error_has_no_traceback runs the real command once.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(th.ROOT / ".jax_cache"))  # else main sets its own
    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = train.main(["train", *th.command(tmp_path, data_dir, *flags)[3:]])
    finally:
        signal.signal(signal.SIGTERM, handler)
    stderr = capsys.readouterr().err
    assert code == exit_codes.EXIT_CONFIG, stderr[-2000:]
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and field in err[0], stderr[-2000:]
    assert not (tmp_path / "checkpoints").exists()  # failed before anything ran


def test_unwritable_workdir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["train", f"--config={th.ROOT / th.TINY}", f"--workdir={blocker / 'run'}"]
    assert train.main(argv) == exit_codes.EXIT_CONFIG
    assert "--workdir" in capsys.readouterr().err


def test_cli_error_has_no_traceback(tmp_path, data_dir):
    result = th.train(tmp_path, data_dir, "--config.model.n_heads=5")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "model.n_heads" in result.stderr


def test_rerunning_a_completed_run_changes_nothing(reference, data_dir):
    before = (reference / "run.json").read_text()
    result = th.train(reference, data_dir, *STEPS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already completed" in result.stdout
    assert (reference / "run.json").read_text() == before


def test_one_core_worker_flags_are_flags_xla_knows(tmp_path):
    """The local executor's XLA_FLAGS for a one-core slot: every token a `--flag` XLA parses.

    XLA aborts on an unknown `--flag` but silently skips a token without `--`, so both are checked:
    the form, and a real XLA backend started with exactly that environment.
    """
    import subprocess
    import sys

    from experiments.executors.local import make_slots

    [slot] = make_slots(1, {}, [], cores=[0])
    flags = slot.env["XLA_FLAGS"].split()
    assert flags and all(f.startswith("--xla_") and "=" in f for f in flags), flags
    env = {**th.env(), "XLA_FLAGS": slot.env["XLA_FLAGS"]}
    out = subprocess.run([sys.executable, "-c", "import jax.numpy as jnp; print(float(jnp.ones(3).sum()))"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "3.0", out.stderr[-2000:]


def test_prefetcher_runs_ahead_in_order_and_reraises():
    import threading

    from scaling.data.prefetch import Prefetcher

    made = []
    built_ahead = threading.Event()

    def make(i):
        made.append(i)
        if i == 3:
            built_ahead.set()
        if i == 6:
            raise ValueError("bad shard 6")
        return i * 10

    with Prefetcher(make, 2, 8, depth=2) as p:
        assert p.peek() == 20 and p.get(2) == 20
        assert built_ahead.wait(10)  # step 3 was built before anyone asked for it
        with pytest.raises(IndexError):
            p.get(5)  # out of order
        assert [p.get(i) for i in (3, 4, 5)] == [30, 40, 50]
        with pytest.raises(ValueError, match="bad shard 6"):
            p.get(6)
    assert made == [2, 3, 4, 5, 6]
    with Prefetcher(lambda i: i, 0, 1000, depth=1) as p:  # closing with the producer blocked
        assert p.get(0) == 0


def test_mfu_is_per_device():
    from scaling import metrics

    # 8 devices of 1 TFLOP/s each, 4e12 model FLOP/s in all: 50% of each device, not 400%.
    assert metrics.mfu(1e6, 4e6, 1e12, 8) == pytest.approx(0.5)
    assert metrics.mfu(1e6, 4e6, None, 8) is None


def test_unique_tokens_run_records_unique_tokens_epochs_and_lr_on_every_curve_row(tmp_path, data_dir):
    from experiments import collect

    result = th.train(tmp_path, data_dir, "--config.train.steps=6", "--config.data.unique_tokens=250",
                      "--config.log.every_steps=3", "--config.eval.every_steps=2", "--config.checkpoint.every_steps=0")
    assert result.returncode == 0, result.stderr[-3000:]
    record = th.run_json(tmp_path)
    assert record["unique_tokens"] == 8 * 32  # rounded up to whole sequences of 32
    assert record["epochs"] == 6 * 4 * 32 / 256
    rows = collect.curve_rows(tmp_path, "run", 1)
    assert [r["step"] for r in rows] == [2, 3, 4, 6]  # evals at 2 and 4 fall between log steps
    assert all(r["lr"] is not None and r["lr"] > 0 for r in rows)
