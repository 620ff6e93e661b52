"""scaling.memory against XLA's own buffer assignment of the real train step (CPU, small shapes)."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import pytest

from scaling import memory, step as step_lib, validate
from scaling.config import DEFAULT_RULES, default_config
from scaling.sharding import make_mesh


def _config(n_layer, d_model, n_heads, seq_len, batch, *, accum=1, scan=False, remat=False,
            mesh=(1, 1, 1), vocab=257):
    c = default_config()
    c.model.update(n_layer=n_layer, d_model=d_model, n_heads=n_heads, seq_len=seq_len,
                   vocab_size=vocab, scan_layers=scan, remat=remat)
    c.train.update(global_batch=batch, grad_accum=accum)
    c.mesh.shape = mesh
    return c


def xla_bytes(c) -> int:
    devices = jax.devices()[: int(jnp.prod(jnp.array(c.mesh.shape)))]
    cfg = validate.check(c, len(devices))
    comp = step_lib.build(c, cfg, make_mesh(c.mesh.shape, devices))
    shape = (c.train.grad_accum, c.train.global_batch // c.train.grad_accum, cfg.seq_len)
    batch = {k: jax.ShapeDtypeStruct(shape, dt, sharding=comp.batch_sharding)
             for k, dt in (("inputs", jnp.int32), ("targets", jnp.int32), ("weights", jnp.float32))}
    with jax.set_mesh(comp.mesh):
        compiled = comp.train_step.lower(comp.abstract_state, batch,
                                         jax.ShapeDtypeStruct((), jnp.float32)).compile()
    return memory.xla_peak_bytes(compiled)


def model_bytes(c) -> memory.StepMemory:
    cfg = validate.check(c, int(jnp.prod(jnp.array(c.mesh.shape))))
    return memory.step_memory(cfg, global_batch=c.train.global_batch, grad_accum=c.train.grad_accum,
                              mesh_shape=c.mesh.shape, rules=DEFAULT_RULES)


# Shapes where different terms dominate: attention scores (L=128), weights (d=256, L=32),
# accumulation, scanned layers; data-parallel, FSDP and tensor-parallel meshes of 8 devices.
# Small: each case compiles a whole step.
CASES = {
    "scores": _config(2, 64, 4, 128, 8),
    "weights": _config(2, 256, 4, 32, 4, vocab=300),
    "accum": _config(3, 96, 2, 96, 16, accum=4),
    "scan": _config(2, 64, 4, 128, 8, scan=True),
    "data8": _config(2, 64, 4, 64, 32, mesh=(8, 1, 1)),
    "fsdp8": _config(2, 64, 4, 64, 32, mesh=(1, 8, 1)),
    "mesh222": _config(2, 64, 4, 64, 32, mesh=(2, 2, 2)),
    "tensor4": _config(2, 64, 4, 64, 32, mesh=(1, 2, 4)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_within_20_percent_of_xla(name):
    c = CASES[name]
    want, got = xla_bytes(c), model_bytes(c)
    assert 0.8 <= got.total / want <= 1.2, (name, got, want, got.total / want)


def test_terms_scale_as_their_causes():
    base = model_bytes(_config(2, 64, 4, 128, 32))
    accum = model_bytes(_config(2, 64, 4, 128, 32, accum=4))
    remat = model_bytes(_config(2, 64, 4, 128, 32, remat=True))
    data8 = model_bytes(_config(2, 64, 4, 64, 32, mesh=(1, 8, 1)))
    assert accum.params == base.params and accum.activations * 4 == base.activations
    assert remat.activations < base.activations / 1.5 and remat.params == base.params
    # FSDP: parameters and moments split 8 ways (the 257-row embedding only over its other axis).
    assert data8.params < base.params / 4 and data8.gathered > 0
    assert memory.StepMemory(1, 2, 1, 3, 1, 0, 1).fits(10) and not model_bytes(
        _config(2, 64, 4, 128, 32)).fits(50e6)


# ------------------------------------------------------------------ the planner's memory fit
def _gpu_study(**study):
    from experiments.configs import isoflop_gpu
    c = isoflop_gpu.get_config()
    c.study.update(train_tokens_per_epoch=int(1.5e11), simulations=0, **study)
    return c


def _plan(c, throughput=None):
    from experiments.planning import build
    return build.make_plan(c, "experiments/configs/isoflop_gpu.py", throughput=throughput)


def test_gpu_plan_on_cpu_fits_every_run_without_probing():
    from experiments.planning import table

    probed = []
    plan = _plan(_gpu_study(), throughput=lambda cfg: probed.append(cfg) or 1.0)
    assert not probed, "a probe on this CPU would have compiled H100-sized steps"
    assert "40% MFU" in plan.seconds_source
    limit = 0.9 * 80
    for r in plan.runs:
        assert isinstance(r.overrides["model.remat"], bool)
        assert r.global_batch % r.overrides["train.grad_accum"] == 0
        assert 0 < plan.memory_gb[r.run_id] <= limit
    # The ladder's batch of 1,024 sequences of 2,048 tokens cannot be one micro-batch on 80 GB.
    assert max(r.overrides["train.grad_accum"] for r in plan.runs) > 1
    assert any(r.overrides["model.remat"] for r in plan.runs)
    text = table.format_table(plan)
    assert "accum" in text and "GB/dev" in text and "fits 80 GB per device" in text


def test_gpu_plan_counts_the_gpu_attention_kernel_not_this_cpus():
    # On a CPU login node attention 'auto' is the einsum kernel, whose L x L scores (2,048^2 per head
    # and row) filled the 85M run's estimate: planned at 8 micro-batches for 67.6 GB, 66.2 of it
    # activations. The H100 runs cuDNN's flash kernel, which keeps no scores.
    from experiments.planning import estimate, study as study_lib
    c = _gpu_study()
    assert estimate.run_backend(study_lib.Study.from_config(c.study)) == "gpu"
    model = validate.model_config(c)
    kw = dict(global_batch=128, grad_accum=8, mesh_shape=(1, 1, 1), rules=c.mesh.rules)
    on_gpu = memory.step_memory(model, backend="gpu", **kw)
    assert on_gpu.total < 0.2 * memory.step_memory(model, backend="cpu", **kw).total


class GpuStep(NamedTuple):
    """A bf16 SwiGLU step at L=2048, as measured on the GPU."""
    n_layer: int
    d_model: int
    n_heads: int
    d_ff: int
    batch: int
    accum: int
    scan: bool
    vocab: int


def _gpu_step(s: GpuStep):
    c = _config(s.n_layer, s.d_model, s.n_heads, 2048, s.batch, accum=s.accum, scan=s.scan, vocab=s.vocab)
    c.model.update(dtype="bfloat16", d_ff=s.d_ff, mlp="swiglu")
    return validate.model_config(c), c


# Peaks measured on one H200 (bench/gpu_check.sh, 2026-12-04), in GB: the bench's 353M preset
# unrolled and scanned, and isoflop_gpu's smallest and largest runs at 6e18 (scanned, as then planned).
GPU_PEAKS = {
    "353M": (GpuStep(28, 1024, 8, 2736, 16, 1, False, 264), 35.39),
    "353M scan": (GpuStep(28, 1024, 8, 2736, 16, 1, True, 264), 57.15),
    "85M scan accum 2": (GpuStep(12, 768, 12, 2048, 128, 2, True, 257), 69.67),
    "680M scan accum 32": (GpuStep(24, 1536, 24, 4096, 512, 32, True, 257), 80.60),
}


@pytest.mark.parametrize("name", sorted(GPU_PEAKS))
def test_gpu_estimate_matches_the_measured_peaks(name):
    shape, peak_gb = GPU_PEAKS[name]
    cfg, c = _gpu_step(shape)
    got = memory.step_memory(cfg, global_batch=c.train.global_batch, grad_accum=c.train.grad_accum,
                             mesh_shape=(1, 1, 1), rules=c.mesh.rules, backend="gpu").total / 1e9
    assert 1.0 <= got / peak_gb <= 1.05, (name, got, peak_gb)  # errs toward fitting, by little


def test_gpu_scale_applies_to_cudnn_on_a_gpu_only():
    cfg, c = _gpu_step(GpuStep(4, 256, 4, 512, 8, 1, False, 257))
    kw = dict(global_batch=8, grad_accum=1, mesh_shape=(1, 1, 1), rules=c.mesh.rules)
    gpu, cpu = (memory.step_memory(cfg, backend=b, **kw).activations for b in ("gpu", "cpu"))
    assert gpu < cpu  # cuDNN (scaled) against the einsum kernel's scores
    pinned = dataclasses.replace(cfg, attention="cudnn")  # asked for by name on a CPU: not scaled
    assert memory.step_memory(pinned, backend="cpu", **kw).activations == pytest.approx(
        memory.step_memory(pinned, backend="gpu", **kw).activations / memory.GPU_ACTIVATION_SCALE[False], rel=1e-6)


def test_runs_that_cannot_fit_are_dropped_with_their_need():
    plan = _plan(_gpu_study(device_memory_gb=16.0))
    too_big = [d for d in plan.dropped if "GB per device" in d.reason]
    # Parameters, two Adam moments and gradients: 16 bytes per parameter before any activation.
    assert too_big and all(d.N > 5e8 for d in too_big)
    assert all(r.params < 1.1e9 for r in plan.runs)
    assert all(plan.memory_gb[r.run_id] <= 0.9 * 16 for r in plan.runs)


def test_cpu_plan_has_no_memory_limit_and_probes_here():
    c = _gpu_study(device_kind="", device_memory_gb=0.0)
    c.study.budgets = (6e18,)
    probed = []
    plan = _plan(c, throughput=lambda cfg: probed.append(cfg) or 1e6)
    assert probed and plan.seconds_source == "probe"
    assert plan.memory_gb == {} and "train.grad_accum" not in plan.runs[0].overrides


def test_a_device_kind_the_planner_cannot_place_is_a_one_line_error():
    from experiments.planning import estimate, study as study_lib
    from experiments.planning.errors import StudyError

    def backend(kind):
        return estimate.run_backend(study_lib.Study.from_config(_gpu_study(device_kind=kind).study))
    assert backend("NVIDIA H200") == "gpu" and backend("TPU v5 lite") == "tpu"
    with pytest.raises(StudyError, match="device_kind='H100'"):
        backend("H100")
