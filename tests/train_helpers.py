"""Running the real `python -m scaling.train` in subprocesses, shared by the end-to-end tests."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "experiments/configs/train_tiny.py"
# Smaller than train_tiny: these runs are started many times.
SMALL = ["--config.model.n_layer=1", "--config.model.d_model=32", "--config.model.n_heads=2",
         "--config.model.seq_len=32", "--config.train.global_batch=4", "--config.eval.batch=4",
         "--config.eval.tokens=512", "--config.train.warmup_steps=2"]


def env() -> dict:
    e = dict(os.environ)
    e["JAX_COMPILATION_CACHE_DIR"] = str(ROOT / ".jax_cache")
    e["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
    e.setdefault("JAX_PLATFORMS", "cpu")
    return e


def command(workdir, data_dir, *extra) -> list[str]:
    return [sys.executable, "-m", "scaling.train", f"--config={TINY}", f"--workdir={workdir}",
            f"--config.data.data_dir={data_dir}", *SMALL, *extra]


def train(workdir, data_dir, *extra, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(command(workdir, data_dir, *extra), cwd=ROOT, env=env(), timeout=timeout,
                          capture_output=True, text=True)


def start(workdir, data_dir, *extra) -> subprocess.Popen:
    return subprocess.Popen(command(workdir, data_dir, *extra), cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_json(workdir) -> dict:
    return json.loads((pathlib.Path(workdir) / "run.json").read_text())


def metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
