"""Two processes x 4 CPU devices, joined by jax.distributed, train like one process with 8 devices."""
from __future__ import annotations

import signal
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

import train_helpers as th

FLAGS = ["--config.train.steps=40", "--config.log.every_steps=1", "--config.eval.every_steps=0",
         "--config.checkpoint.every_steps=0", "--config.train.global_batch=8", "--config.eval.batch=8",
         "--config.mesh.shape=(2,4,1)"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir):
    return [r["train_loss"] for r in th.metrics(workdir) if "train_loss" in r]


def _start_pair(workdir, data_dir, *flags) -> list[subprocess.Popen]:
    port = _free_port()
    return [subprocess.Popen(th.command(workdir, data_dir, *FLAGS, *flags, "--cpu_devices=4",
                                        f"--coordinator_address=127.0.0.1:{port}",
                                        "--num_processes=2", f"--process_id={i}"),
                             cwd=th.ROOT, env=th.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for i in range(2)]


def _finish(procs, want=(0, 0)) -> list[str]:
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert tuple(p.returncode for p in procs) == want, outputs[0][-2000:] + outputs[1][-2000:]
    return outputs


@pytest.fixture(scope="module")
def pair(tmp_path_factory, data_dir):
    """An uninterrupted 2-process run (the reference of both tests)."""
    workdir = tmp_path_factory.mktemp("pair")
    _finish(_start_pair(workdir, data_dir))
    return workdir


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, data_dir, pair):
    single = th.train(tmp_path / "one", data_dir, *FLAGS, "--cpu_devices=8")
    assert single.returncode == 0, single.stderr[-3000:]
    record = th.run_json(pair)
    assert record["process_count"] == 2 and record["device_count"] == 8
    one, two = _losses(tmp_path / "one"), _losses(pair)
    assert len(one) == len(two) == 40
    for a, b in zip(one, two):
        assert abs(a - b) <= 1e-5 * abs(a), (one, two)


def _final_state(workdir, steps):
    """The newest checkpoint of a 2x4-device run, restored here onto one device."""
    from experiments.configs import train_tiny
    from scaling import step as step_lib, validate
    from scaling.checkpoint import Checkpointer
    from scaling.sharding import make_mesh

    config = train_tiny.get_config()
    config.model.update(n_layer=1, d_model=32, n_heads=2, seq_len=32)
    config.train.update(global_batch=8, steps=steps, warmup_steps=2)
    config.mesh.shape = (1, 1, 1)
    comp = step_lib.build(config, validate.check(config, 1), make_mesh((1, 1, 1), jax.devices()[:1]))
    with Checkpointer(workdir / "checkpoints", every_steps=0, keep=1) as ckpt:
        return ckpt.restore(comp.abstract_state)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, data_dir, pair):
    """Only process 1 gets SIGTERM: both save the same step and exit 143; the resumed run is
    bitwise the uninterrupted one. (With a per-process flag, process 1 would enter the save's
    barriers while process 0 ran the next step's collectives: a hang, here a timeout.)"""
    workdir = tmp_path / "term"
    procs = _start_pair(workdir, data_dir)
    deadline, training = time.time() + 240, False
    while time.time() < deadline and all(p.poll() is None for p in procs) and not training:
        training = (workdir / "metrics.jsonl").exists() and "train_loss" in (workdir / "metrics.jsonl").read_text()
        time.sleep(0.02)
    assert all(p.poll() is None for p in procs), "a process ended before the signal"
    assert training, "no training step was logged within 240 s: the signal would test startup, not a step"
    procs[1].send_signal(signal.SIGTERM)
    outputs = _finish(procs, want=(143, 143))
    said = [[line for line in out.splitlines() if line.startswith("preempted: saved step")]
            for out in outputs]
    assert len(said[0]) == 1 and said[0] == said[1], said
    stopped = int(said[0][0].split()[3].rstrip(";"))
    # checkpoint.every_steps=0 (FLAGS): the preempted save is the only checkpoint.
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [stopped]
    assert 0 < stopped < 40 and th.run_json(workdir)["status"] == "interrupted"

    _finish(_start_pair(workdir, data_dir))
    assert _losses(workdir) == _losses(pair)
    (step_a, want), (step_b, got) = _final_state(pair, 40), _final_state(workdir, 40)
    assert step_a == step_b == 40
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
