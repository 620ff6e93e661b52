"""A short measured throughput probe: compile one run config's step and time a few steps.

The planner calls it once per model shape to turn FLOP counts into wall-time estimates.
"""
from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np

from scaling import step as step_lib, validate
from scaling.sharding import make_mesh


def tokens_per_second(config: ml_collections.ConfigDict, steps: int = 3) -> float:
    """Training tokens per second of `config`'s step on this machine's devices (random tokens)."""
    model_cfg = validate.check(config, jax.device_count(), jax.process_count())
    mesh = make_mesh(config.mesh.shape)
    comp = step_lib.build(config, model_cfg, mesh)
    rows, seq = config.train.global_batch, model_cfg.seq_len
    tokens = np.random.default_rng(0).integers(0, 256, (rows, seq + 1)).astype(np.int32)
    local = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": np.ones((rows, seq), np.float32)}
    with jax.set_mesh(mesh):
        state = comp.init()
        batch = step_lib.global_batch(local, comp.batch_sharding, rows, config.train.grad_accum)
        lr = comp.schedule(0)
        step = comp.train_step.lower(state, batch, lr).compile()
        state, m = step(state, batch, lr)  # first call pays for allocation
        jax.block_until_ready(m)
        t0 = time.perf_counter()
        for _ in range(steps):
            state, m = step(state, batch, lr)
        jax.block_until_ready(m)
    return steps * rows * seq / (time.perf_counter() - t0)
