"""Make every planned run fit its device's memory: choose micro-batches and remat, or drop the run.

For each run the planner asks `scaling.memory` for the bytes one step holds per device under the
run's mesh, and takes the first setting that fits `study.device_memory_gb` (within the model's
headroom), in this order: 1, 2, 4, ... micro-batches (`train.grad_accum`) without remat while a
micro-batch keeps >= MIN_ROWS rows per device, then the same with remat (a whole extra forward
pass: ~33% more step FLOPs, but matmuls of a few rows run far below peak), then smaller
micro-batches without and with remat. A run that fits with none, down to one row per device, is
dropped with the bytes it needs.

The limit defaults to the planning device's memory when that is an accelerator, and to none on CPU
(host memory is not what a run's device has). It applies per device of a run: a run gets
`study.devices_per_run` devices (its mesh's -1 axis takes them), default 1.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Sequence

import jax

from experiments.planning import estimate
from experiments.planning.grid import Dropped
from experiments.planning.specs import run_config
from experiments.planning.study import Study
from experiments.spec import RunSpec
from scaling import memory, validate, xla_flags
from scaling.sharding import MESH_AXES, batch_shards, resolve_mesh_shape

GB = 1e9
MIN_ROWS = 4  # micro-batch rows per device worth a remat rather than more accumulation


@dataclasses.dataclass(frozen=True)
class Choice:
    grad_accum: int
    remat: bool
    bytes_per_device: int


def device_memory_gb(study: Study) -> float | None:
    """study.device_memory_gb if set (> 0), else the planning device's when it is an accelerator."""
    if study.device_memory_gb:
        return study.device_memory_gb
    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats() or {}
    # bytes_limit is this process's share of the device: the device is that over the share.
    return stats["bytes_limit"] / xla_flags.gpu_memory_fraction() / GB if "bytes_limit" in stats else None


def choose(run_cfg, devices: int, limit_bytes: float, backend: str | None = None) -> Choice | int:
    """The first setting of the module docstring's order that fits; else the smallest need (bytes)."""
    mesh_shape = resolve_mesh_shape(run_cfg.mesh.shape, devices)
    # batch_shards reads only the axis sizes: planning needs no devices.
    shards = batch_shards(types.SimpleNamespace(shape=dict(zip(MESH_AXES, mesh_shape))),
                          run_cfg.mesh.rules)
    batch = int(run_cfg.train.global_batch)
    accums = [a for a in (2 ** k for k in range(batch.bit_length())) if batch % (a * shards) == 0]
    big = [a for a in accums if batch // (a * shards) >= MIN_ROWS]
    small = [a for a in accums if a not in big]
    order = [(a, r) for group in (big, small) for r in (False, True) for a in group]
    base = validate.model_config(run_cfg)
    smallest = None
    for accum, remat in order:
        need = memory.step_memory(dataclasses.replace(base, remat=remat), global_batch=batch,
                                  grad_accum=accum, mesh_shape=mesh_shape, rules=run_cfg.mesh.rules,
                                  backend=backend)
        if need.fits(limit_bytes):
            return Choice(accum, remat, need.total)
        smallest = need.total if smallest is None else min(smallest, need.total)
    return smallest


def fit_runs(config, study: Study, runs: Sequence[RunSpec]
             ) -> tuple[list[RunSpec], list[Dropped], dict[str, float], str]:
    """(runs with train.grad_accum and model.remat set, runs dropped, GB per device per run, a note)."""
    limit_gb = device_memory_gb(study)
    if limit_gb is None:
        return list(runs), [], {}, ""
    devices, backend = study.devices_per_run, estimate.run_backend(study)
    kept, dropped, gb, cache = [], [], {}, {}
    for r in runs:
        rc = run_config(config, r)
        key = (r.params, r.global_batch, tuple(rc.mesh.shape))
        if key not in cache:
            cache[key] = choose(rc, devices, limit_gb * GB, backend)
        choice = cache[key]
        if not isinstance(choice, Choice):
            dropped.append(Dropped(r.budget, r.params, f"needs {choice / GB:.1f} GB per device even with "
                                   f"remat at one row per device (study.device_memory_gb={limit_gb:g})"))
            continue
        overrides = {**r.overrides, "train.grad_accum": choice.grad_accum, "model.remat": choice.remat}
        kept.append(dataclasses.replace(r, overrides=overrides))
        gb[r.run_id] = choice.bytes_per_device / GB
    note = (f"memory: every run fits {limit_gb:g} GB per device ({devices} device(s) per run; "
            f"scaling.memory estimate, {memory.HEADROOM:.0%} of the device usable)")
    return kept, dropped, gb, note
