"""Bytes one training step holds on each device, from the model's shape and the run's mesh.

The peak of a step is at the start of its backward pass: the state (parameters and Adam's two
moments, float32, sharded by the rules table like the weights), the gradients, every activation the
backward reads (per layer: the residual stream, norms, projections, the MLP's hidden tensors and,
unless a fused kernel keeps them on chip, the attention scores), the logits and their gradient.

What a layer keeps is counted in tensors per token (`ACTIVATIONS`), fitted to XLA's own buffer
assignment (`compiled.memory_analysis()`) of this codebase's step on CPU under the trainer's XLA
flags: ~12 D-wide tensors (6 of the residual stream and norms, 6 of attention, H*K wide; the minimal
set is ~8: XLA:CPU keeps float32 copies of the norms and rotary inputs besides), 4 F-wide, and 2.4
float32 per head and computed (query, key) pair: models/causal_attention.py computes the causal
blocks only. Refitted on 2026-12-01 after that attention got its own backward: 13 shapes, L from 32
to 512, scanned or not, on 1 and 8 devices, each within 0.95-1.09 of XLA. tests/test_memory.py
holds it within 20% of XLA on CPU.

On GPUs with cuDNN's attention the per-layer activations are scaled by GPU_ACTIVATION_SCALE,
measured on an H200 (other kernels and backends keep the CPU fit): there XLA's
buffer assignment equals the device's measured peak to 0.1%, and unscanned steps keep 0.70 of the
CPU-fitted counts, scanned ones 1.21-1.24.

Rematerialisation (model.remat) keeps only each block's input and recomputes one block at a time
during the backward (Chen et al. 2016, "Training deep nets with sublinear memory cost"). XLA:CPU
does not realise that saving (a 4-layer step: 201 MB with remat, 213 MB without), and no remat
step has been measured on a GPU yet.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from models.config import ModelConfig
from models.causal_attention import key_fraction
from models.transformer import Transformer, attention_kernel
from scaling import flops
from scaling.sharding import MESH_AXES, logical_axes_tree, logical_to_spec, rules_dict

ADAM_MOMENTS = 2  # optax.adamw: mu and nu, float32, sharded like their parameter
HEADROOM = 0.9  # of a device's memory a step may plan for: XLA's own buffers, fragmentation, runtime


@dataclasses.dataclass(frozen=True)
class ActivationCounts:
    """Tensors one layer keeps per token for its backward (see the module docstring)."""
    d_model: float = 6.0  # residual stream and norms (with XLA:CPU's float32 copies), replicated
    attn: float = 6.0  # q, k, v before and after rotary, attention output: H*K wide, split by heads
    d_ff: float = 4.0  # MLP up, gate, silu(gate) and the product (compute dtype)
    scores: float = 2.4  # per head and computed key (float32): probabilities, the backward's dP and dS
    logits: float = 2.0  # per vocab entry: logits and their gradient (float32)


ACTIVATIONS = ActivationCounts()

# On a GPU (cuDNN's attention, XLA:GPU's fusions) the same counts scaled by what XLA kept there,
# measured as the device's peak bytes less the state on one H200 (JAX 0.11.2; bench/gpu_check.sh,
# 2026-12-04). Unrolled layers: 0.70 (353M, L=2048, 16 rows: one shape). Scanned layers: 1.21-1.24
# over three shapes (85M at 64 rows, 353M at 16, 680M at 16): a scan's backward keeps every residual
# its body's VJP names, where unrolled XLA:GPU recomputes the cheap elementwise ones. The larger of
# each is used, so that a plan errs toward fitting.
GPU_ACTIVATION_SCALE = {False: 0.70, True: 1.24}  # by cfg.scan_layers


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """Bytes per device of one train step, by what holds them."""
    params: int
    opt_state: int
    grads: int
    activations: int
    logits: int
    gathered: int  # one layer's weights and gradients all-gathered under FSDP
    batch: int

    @property
    def total(self) -> int:
        return (self.params + self.opt_state + self.grads + self.activations + self.logits
                + self.gathered + self.batch)

    def fits(self, device_bytes: float, headroom: float = HEADROOM) -> bool:
        """Within `headroom` of the device (XLA's own buffers, fragmentation, the runtime)."""
        return self.total <= headroom * device_bytes


def mesh_sizes(shape: Sequence[int]) -> dict[str, int]:
    """{axis: size} of a resolved (data, fsdp, tensor) mesh shape (no devices needed)."""
    return dict(zip(MESH_AXES, (int(s) for s in shape)))


@functools.lru_cache(maxsize=256)
def _param_bytes_per_device(cfg: ModelConfig, sizes_items: tuple, rules: tuple) -> tuple[int, int]:
    """(bytes of all parameters on one device, bytes of the largest layer gathered in full)."""
    sizes = dict(sizes_items)
    abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
    _, variables = nnx.split(abstract)
    axes = logical_axes_tree(variables)
    mesh = types.SimpleNamespace(shape=sizes)  # logical_to_spec reads only the axis sizes
    rules = rules_dict(rules)
    local = 0
    for path, v in nnx.to_flat_state(variables):
        node = axes
        for key in path:
            node = node[key]
        shape = v.get_value().shape
        spec = logical_to_spec(node, shape, mesh, rules)
        shards = math.prod(math.prod(sizes[a] for a in ((s,) if isinstance(s, str) else s))
                           for s in spec if s is not None)
        local += math.prod(shape) * 4 // shards
    # One layer's weights, f32 (attention's four D x HK matrices, the MLP, its norm scales).
    layer = 4 * (flops.count_params(cfg).non_embedding - cfg.d_model) // cfg.n_layer
    return local, layer


def _split(n: int, axes: tuple[str, ...], sizes: dict[str, int]) -> int:
    """Per-device size of a dimension of n over `axes` (replicated where they do not divide it)."""
    used = 1
    for a in axes:
        if n % (used * sizes[a]) == 0:
            used *= sizes[a]
    return n // used


def step_memory(cfg: ModelConfig, *, global_batch: int, grad_accum: int, mesh_shape: Sequence[int],
                rules, counts: ActivationCounts = ACTIVATIONS, backend: str | None = None) -> StepMemory:
    """Bytes per device of one train step of `cfg` (cfg.remat and cfg.dtype as configured) on
    `backend`'s devices (a JAX platform; default: this process's), which decides the attention kernel."""
    sizes = mesh_sizes(mesh_shape)
    r = rules_dict(rules)
    rules_key = tuple((n, tuple(a) if isinstance(a, (list, tuple)) else a) for n, a in rules)
    params, layer_bytes = _param_bytes_per_device(dataclasses.replace(cfg, remat=False),
                                                  tuple(sizes.items()), rules_key)
    rows = _split(global_batch // grad_accum, r["batch"], sizes)  # micro-batch rows on a device
    tokens = rows * cfg.seq_len
    act = jnp.dtype(cfg.dtype).itemsize
    heads = _split(cfg.n_heads, r["heads"], sizes)
    d_ff = _split(cfg.d_ff, r["mlp"], sizes)
    vocab = _split(cfg.vocab_size, r["vocab"], sizes)
    # A fused attention kernel keeps only per-row softmax statistics, not the L x L scores; the
    # einsum kernel computes the causal blocks only.
    backend = backend or jax.default_backend()
    kernel = attention_kernel(cfg, backend)
    kept = key_fraction(cfg.seq_len) if kernel == "einsum" else 1.0
    scores = 0 if kernel == "cudnn" else counts.scores * heads * cfg.seq_len * 4 * kept
    attn = heads * cfg.head_dim
    per_layer = tokens * act * (counts.d_model * cfg.d_model + counts.attn * attn + counts.d_ff * d_ff)
    measured_on_gpu = backend == "gpu" and kernel == "cudnn"
    if measured_on_gpu:  # what XLA:GPU kept beside cuDNN's attention, scanned or not
        per_layer *= GPU_ACTIVATION_SCALE[bool(cfg.scan_layers)]
    per_layer += tokens * scores
    if cfg.remat:  # the saved block inputs cannot be recomputed: unscaled (remat unmeasured on GPUs)
        activations = cfg.n_layer * tokens * cfg.d_model * act + per_layer
    else:
        activations = cfg.n_layer * per_layer
    if kernel == "einsum" and cfg.scan_layers:
        # XLA:CPU's scanned backward copies one layer's D-wide residuals out of the stacked ones
        # and reads the rest (models/causal_attention.py's probabilities among them) in place:
        # fitted to the scanned step (tests/test_memory.py, case 'scan'). Before that attention
        # had its own backward pass, it copied the whole layer.
        activations += tokens * act * counts.d_model * cfg.d_model
    elif cfg.scan_layers and not measured_on_gpu:  # XLA's own attention: the whole layer (unmeasured)
        activations += per_layer
    fsdp = sizes["fsdp"] > 1
    return StepMemory(
        # Micro-batches: the running sum of the gradients beside the current micro-batch's.
        params=params, opt_state=ADAM_MOMENTS * params, grads=params * (2 if grad_accum > 1 else 1),
        activations=int(activations), logits=int(counts.logits * tokens * vocab * 4),
        gathered=2 * layer_bytes if fsdp else 0,
        batch=grad_accum * rows * cfg.seq_len * 12,  # inputs, targets int32 and weights float32
    )


def xla_peak_bytes(compiled) -> int:
    """XLA's own figure for a compiled step: arguments + outputs not aliased to them + temporaries."""
    ma = compiled.memory_analysis()
    return (ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
            + ma.temp_size_in_bytes)
