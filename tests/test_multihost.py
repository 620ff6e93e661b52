"""Two processes x 4 CPU devices, joined by jax.distributed, train like one process with 8 devices."""
from __future__ import annotations

import socket
import subprocess

import pytest

import train_helpers as th

FLAGS = ["--config.train.steps=6", "--config.log.every_steps=1", "--config.eval.every_steps=0",
         "--config.checkpoint.every_steps=0", "--config.train.global_batch=8", "--config.eval.batch=8",
         "--config.mesh.shape=(2,4,1)"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir):
    return [r["train_loss"] for r in th.metrics(workdir) if "train_loss" in r]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    data_dir = tmp_path / "tfds"
    single = th.train(tmp_path / "one", data_dir, *FLAGS, "--cpu_devices=8")
    assert single.returncode == 0, single.stderr[-3000:]

    port = _free_port()
    procs = [subprocess.Popen(th.command(tmp_path / "two", data_dir, *FLAGS, "--cpu_devices=4",
                                         f"--coordinator_address=127.0.0.1:{port}",
                                         "--num_processes=2", f"--process_id={i}"),
                              cwd=th.ROOT, env=th.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    record = th.run_json(tmp_path / "two")
    assert record["process_count"] == 2 and record["device_count"] == 8
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    for a, b in zip(one, two):
        assert abs(a - b) <= 1e-5 * abs(a), (one, two)
