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
# The reference run's schedule (tests/conftest.py `reference`): logs, evals and saves along the way.
STEPS = ["--config.train.steps=40", "--config.checkpoint.every_steps=8", "--config.eval.every_steps=20",
         "--config.log.every_steps=4", "--config.checkpoint.keep=3"]


def env(fault: str | None = None) -> dict:
    """The trainer's environment; `fault` arms plumbing.faults (POINT:ACTION[@K]) in the child only."""
    e = {k: v for k, v in os.environ.items() if k != "SCALING_FAULT"}
    if fault:
        e["SCALING_FAULT"] = fault
    e.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))  # conftest sets the session's
    e["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    e.setdefault("JAX_PLATFORMS", "cpu")
    return e


def command(workdir, data_dir, *extra) -> list[str]:
    return [sys.executable, "-m", "scaling.train", f"--config={TINY}", f"--workdir={workdir}",
            f"--config.data.data_dir={data_dir}", *SMALL, *extra]


def train(workdir, data_dir, *extra, timeout=300, fault=None) -> subprocess.CompletedProcess:
    return subprocess.run(command(workdir, data_dir, *extra), cwd=ROOT, env=env(fault), timeout=timeout,
                          capture_output=True, text=True)


def start(workdir, data_dir, *extra) -> subprocess.Popen:
    return subprocess.Popen(command(workdir, data_dir, *extra), cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_json(workdir) -> dict:
    return json.loads((pathlib.Path(workdir) / "run.json").read_text())


def metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def final_state(workdir, clip_norm=1.0):
    """(step, state) of the newest checkpoint of a run trained with SMALL + STEPS."""
    import jax

    from experiments.configs import train_tiny
    from scaling import step as step_lib, validate
    from scaling.checkpoint import Checkpointer
    from scaling.sharding import make_mesh

    config = train_tiny.get_config()
    config.train.clip_norm = clip_norm  # the optimiser state's structure depends on it
    config.model.update(n_layer=1, d_model=32, n_heads=2, seq_len=32)
    config.train.update(global_batch=4, steps=40, warmup_steps=2)
    config.eval.batch = 4
    config.mesh.shape = (1, 1, 1)
    comp = step_lib.build(config, validate.check(config, 1), make_mesh((1, 1, 1), jax.devices()[:1]))
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", every_steps=8, keep=3)
    step, state = ckpt.restore(comp.abstract_state)
    ckpt.close()
    return step, state
