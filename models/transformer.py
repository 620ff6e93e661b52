"""A decoder-only transformer in flax.nnx: pre-norm RMSNorm, rotary embeddings, causal attention
(on GPUs `jax.nn.dot_product_attention`, cuDNN's fused kernel where it fits; elsewhere
`models/causal_attention.py`, in blocks of queries), SwiGLU or GELU MLP, no biases.

Every weight carries `logical_axes` metadata (names like 'embed', 'heads', 'mlp', 'vocab'); the
training core maps those names to mesh axes with one rules table, so this file knows nothing of
meshes. Shape letters are defined in `models/config.py`.

`Transformer.extend` runs new tokens against a key/value cache (`models/kv_cache.py`) for decoding,
through the same weights, projections and attention as the training forward pass.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import kv_cache, mup
from models.causal_attention import causal_attention
from models.config import ModelConfig
from models.constraints import constrain
from models.dense import project

LAYERS = "layers"  # logical name of the stacked-layer axis when layers are scanned


def _param(rngs: nnx.Rngs, shape, axes, std: float) -> nnx.Param:
    value = std * jax.random.normal(rngs.params(), shape, jnp.float32)
    return nnx.Param(value, logical_axes=axes)


class RMSNorm(nnx.Module):
    def __init__(self, cfg: ModelConfig):
        self.eps = cfg.norm_eps
        self.scale = nnx.Param(jnp.ones((cfg.d_model,), jnp.float32), logical_axes=("norm",))

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        return rms_norm(x_BxLxD, self.scale[...], self.eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x_BxLxD: jax.Array, scale_D: jax.Array, eps: float) -> jax.Array:
    """x / rms(x) * scale (Zhang & Sennrich 2019), in float32 even under bf16 compute: the mean of
    squares loses precision in bf16."""
    return _rms_norm_fwd(x_BxLxD, scale_D, eps)[0]


def _rms_norm_fwd(x_BxLxD, scale_D, eps):
    x32_BxLxD = x_BxLxD.astype(jnp.float32)
    inv_rms_BxLx1 = jax.lax.rsqrt(jnp.mean(x32_BxLxD * x32_BxLxD, axis=-1, keepdims=True) + eps)
    xn_BxLxD = x32_BxLxD * inv_rms_BxLx1
    return (xn_BxLxD * scale_D).astype(x_BxLxD.dtype), (xn_BxLxD, inv_rms_BxLx1, scale_D)


def _rms_norm_bwd(eps, residuals, dy_BxLxD):
    xn_BxLxD, inv_rms_BxLx1, scale_D = residuals
    dy32_BxLxD = dy_BxLxD.astype(jnp.float32)
    D = scale_D.shape[0]
    # The scale's gradient sums over every token: as a matmul with a ones vector, not XLA:CPU's
    # tree of reduce-windows down the token axis (together with one pass fewer over x, the train
    # step ~1.5% faster, bench/train_throughput.py).
    prod_NxD = (dy32_BxLxD * xn_BxLxD).reshape(-1, D)
    dscale_D = jax.lax.dot_general(prod_NxD, jnp.ones((prod_NxD.shape[0],), jnp.float32),
                                   (((0,), (0,)), ((), ())))
    g_BxLxD = dy32_BxLxD * scale_D
    dx_BxLxD = inv_rms_BxLx1 * (g_BxLxD - xn_BxLxD * jnp.mean(g_BxLxD * xn_BxLxD, axis=-1, keepdims=True))
    return dx_BxLxD.astype(dy_BxLxD.dtype), dscale_D


rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)


def _rotary_freqs_K2(theta: float, K: int):
    return theta ** (-np.arange(0, K // 2, dtype=np.float32) * np.float32(2 / K))


@functools.lru_cache(maxsize=16)
def _rotary_tables(theta: float, L: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    # One array object per shape: JAX embeds a constant once per object, so q and k of every layer
    # share one copy in the lowered program (not 2 x n_layer).
    angle_LxK2 = np.arange(L, dtype=np.float32)[:, None] * _rotary_freqs_K2(theta, K)[None, :]
    return np.sin(angle_LxK2), np.cos(angle_LxK2)


def rotary(x: jax.Array, theta: float, seq_axis: int, positions_BxL: jax.Array | None = None) -> jax.Array:
    """Rotary position embedding (Su et al. 2021), rotating pairs (i, i + K/2) of the last axis.

    Positions are 0..L-1 in every row unless `positions_BxL` gives them (decoding: cache slots).
    """
    L, K = x.shape[seq_axis], x.shape[-1]
    shape = [1] * x.ndim
    shape[seq_axis], shape[-1] = L, K // 2
    if positions_BxL is None:
        # The sines and cosines as constants, computed here in float32 as XLA would: computed in
        # the graph, XLA:CPU fuses them into the rotation's loop and evaluates them for every
        # batch row and head again (~6% of the 10M-parameter CPU train step).
        sin_LxK2, cos_LxK2 = _rotary_tables(theta, L, K)
        sin, cos = sin_LxK2.reshape(shape), cos_LxK2.reshape(shape)
    else:
        angle_BxLxK2 = positions_BxL.astype(jnp.float32)[..., None] * _rotary_freqs_K2(theta, K)
        shape[0] = positions_BxL.shape[0]
        sin, cos = jnp.sin(angle_BxLxK2).reshape(shape), jnp.cos(angle_BxLxK2).reshape(shape)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def attention_kernel(cfg: ModelConfig, backend: str | None = None) -> str:
    """The attention path: 'cudnn' (flash), 'xla' (dot_product_attention left to XLA) or 'einsum'.

    jax.nn.dot_product_attention with no `implementation` always lowers through XLA, which writes
    the L x L scores to memory; the cuDNN kernel must be asked for by name. `backend` is the JAX
    platform the model will run on (default: this process's), so a CPU can plan a GPU's runs.
    """
    if cfg.attention == "auto":
        if (backend or jax.default_backend()) != "gpu":
            return "einsum"
        return "cudnn" if cfg.cudnn_attention_fits else "xla"
    return {"cudnn": "cudnn", "dot_product": "xla", "einsum": "einsum"}[cfg.attention]


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        D, H, K = cfg.d_model, cfg.n_heads, cfg.head_dim
        std = cfg.init_std * mup.hidden_init_mult(cfg)
        qkv_axes = ("embed", "heads", "head_dim")
        self.wq = _param(rngs, (D, H, K), qkv_axes, std)
        self.wk = _param(rngs, (D, H, K), qkv_axes, std)
        self.wv = _param(rngs, (D, H, K), qkv_axes, std)
        # Residual-branch outputs scaled by 1/sqrt(2·n_layer) as in GPT-2 (Radford et al. 2019).
        self.wo = _param(rngs, (H, K, D), ("heads", "head_dim", "embed"), std / (2 * cfg.n_layer) ** 0.5)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dtype = x_BxLxD.dtype
        kernel = attention_kernel(self.cfg)
        qkv = self._qkv(x_BxLxD)
        if kernel != "einsum":
            q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (constrain(t, "batch", "length", "heads", "head_dim")
                                               for t in qkv)
            o_BxLxHxK = jax.nn.dot_product_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, is_causal=True,
                                                     implementation="cudnn" if kernel == "cudnn" else None)
            return project("blhk,hkd->bld", o_BxLxHxK, self.wo[...].astype(dtype))
        q_BxHxLxK, k_BxHxLxK, v_BxHxLxK = (
            constrain(t.swapaxes(1, 2), "batch", "heads", "length", "head_dim") for t in qkv)
        o_BxHxLxK = causal_attention(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK)
        o_BxHxLxK = constrain(o_BxHxLxK, "batch", "heads", "length", "head_dim")
        return project("bhlk,hkd->bld", o_BxHxLxK, self.wo[...].astype(dtype))

    def _qkv(self, x_BxLxD: jax.Array, positions_BxL: jax.Array | None = None):
        """q, k, v [B, L, H, K], q and k rotated.

        Token-major, as plain matmuls; the einsum path moves them heads-major after the rotation.
        Projecting straight to [B, H, L, K] made XLA:CPU transpose the weights and the activation
        gradients around every projection: the train step 4% slower (bench/train_throughput.py),
        and a one-token decode step paid more for copying the weights than for the matmul
        (bench/decode_throughput.py).
        """
        dtype = x_BxLxD.dtype
        q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (project("bld,dhk->blhk", x_BxLxD, w[...].astype(dtype))
                                           for w in (self.wq, self.wk, self.wv))
        if mup.is_mup(self.cfg):  # μP's 1/K attention through the kernels' 1/sqrt(K) (models/mup.py)
            q_BxLxHxK = q_BxLxHxK * jnp.asarray(mup.query_mult(self.cfg), dtype)
        q_BxLxHxK = rotary(q_BxLxHxK, self.cfg.rope_theta, seq_axis=1, positions_BxL=positions_BxL)
        k_BxLxHxK = rotary(k_BxLxHxK, self.cfg.rope_theta, seq_axis=1, positions_BxL=positions_BxL)
        return q_BxLxHxK, k_BxLxHxK, v_BxLxHxK

    def extend(self, x_BxLxD: jax.Array, layer: kv_cache.LayerCache,
               at: kv_cache.Where) -> tuple[jax.Array, kv_cache.LayerCache]:
        """Attention of L new tokens over this layer's cache and each other; the cache gets their
        keys and values.

        The einsum path on every backend: the cache needs a mask of written, non-padding slots that
        the causal flag of dot_product_attention cannot express, and a decode step (L = 1) is bound
        by reading the weights and the cache, not by its 1 x S scores.
        """
        qkv = self._qkv(x_BxLxD, at.positions_BxL)
        q_BxHxLxK, k_BxHxLxK, v_BxHxLxK = (t.swapaxes(1, 2) for t in qkv)
        # Attend over the cache as it was, and over the new tokens, then write: the write is then
        # the cache's last use and XLA does it in place. (Written first, XLA:CPU fused the write
        # into each reader and copied the whole cache three times a step: ~10x the step time.)
        o_BxHxLxK = softmax_attention(q_BxHxLxK, [(layer.k_BxHxSxK, layer.v_BxHxSxK, at.cached_Bx1x1xS),
                                                  (k_BxHxLxK, v_BxHxLxK, at.new_Bx1xLxL)])
        layer = kv_cache.write(layer, k_BxHxLxK, v_BxHxLxK, at.index)
        return project("bhlk,hkd->bld", o_BxHxLxK, self.wo[...].astype(x_BxLxD.dtype)), layer


def softmax_attention(q_BxHxLxK: jax.Array, blocks) -> jax.Array:
    """softmax(q k^T / sqrt(K)) v (Vaswani et al. 2017, eq. 1), scores and softmax in float32.

    `blocks`: (k_BxHxMxK, v_BxHxMxK, mask) key/value blocks that one softmax spans; each mask
    broadcasts to [B, H, L, M] (True: visible), None is causal (M = L). Decoding passes two: the
    cache and the new tokens (training uses models/causal_attention.py, the same function for one
    causal block, with a cheaper backward).
    """
    L, K = q_BxHxLxK.shape[2], q_BxHxLxK.shape[3]
    scores = []
    for k_BxHxMxK, _, mask in blocks:
        s_BxHxLxM = jnp.einsum("bhlk,bhmk->bhlm", q_BxHxLxK * K ** -0.5, k_BxHxMxK,
                               preferred_element_type=jnp.float32)
        if mask is None:
            mask = jnp.tril(jnp.ones((L, L), dtype=bool))
        scores.append(jnp.where(mask, s_BxHxLxM, jnp.finfo(jnp.float32).min))
    p_BxHxLxM = jax.nn.softmax(jnp.concatenate(scores, axis=-1) if len(scores) > 1 else scores[0], axis=-1)
    outs, start = [], 0
    for k_BxHxMxK, v_BxHxMxK, _ in blocks:
        M = k_BxHxMxK.shape[2]
        p_block = p_BxHxLxM[..., start:start + M] if len(blocks) > 1 else p_BxHxLxM
        outs.append(jnp.einsum("bhlm,bhmk->bhlk", p_block.astype(v_BxHxMxK.dtype), v_BxHxMxK))
        start += M
    return functools.reduce(jnp.add, outs)


class Mlp(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, F = cfg.d_model, cfg.d_ff
        std = cfg.init_std * mup.hidden_init_mult(cfg)
        self.swiglu = cfg.mlp == "swiglu"
        if self.swiglu:
            self.w_gate = _param(rngs, (D, F), ("embed", "mlp"), std)
        self.w_up = _param(rngs, (D, F), ("embed", "mlp"), std)
        self.w_down = _param(rngs, (F, D), ("mlp", "embed"), std / (2 * cfg.n_layer) ** 0.5)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dtype = x_BxLxD.dtype
        up_BxLxF = project("bld,df->blf", x_BxLxD, self.w_up[...].astype(dtype))
        if self.swiglu:  # Shazeer 2020
            gate_BxLxF = project("bld,df->blf", x_BxLxD, self.w_gate[...].astype(dtype))
            h_BxLxF = jax.nn.silu(gate_BxLxF) * up_BxLxF
        else:
            h_BxLxF = jax.nn.gelu(up_BxLxF)
        h_BxLxF = constrain(h_BxLxF, "batch", "length", "mlp")
        return project("blf,fd->bld", h_BxLxF, self.w_down[...].astype(dtype))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = Mlp(cfg, rngs)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        x_BxLxD = constrain(x_BxLxD + self.attn(self.attn_norm(x_BxLxD)), "batch", "length", "embed")
        return constrain(x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD)), "batch", "length", "embed")

    def extend(self, x_BxLxD: jax.Array, layer: kv_cache.LayerCache,
               at: kv_cache.Where) -> tuple[jax.Array, kv_cache.LayerCache]:
        h_BxLxD, layer = self.attn.extend(self.attn_norm(x_BxLxD), layer, at)
        x_BxLxD = x_BxLxD + h_BxLxD
        return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD)), layer


def _output_mult(cfg: ModelConfig, logits_BxLxV: jax.Array) -> jax.Array:
    """μP's 1/m on the logits (models/mup.py); SP's logits untouched."""
    return logits_BxLxV * mup.output_mult(cfg) if mup.is_mup(cfg) else logits_BxLxV


def _block_forward(block: Block, x_BxLxD: jax.Array) -> jax.Array:
    return block(x_BxLxD)


class Transformer(nnx.Module):
    """tokens [B, L] int32 -> logits [B, L, V] float32."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        V, D = cfg.vocab_size, cfg.d_model
        self.embed = _param(rngs, (V, D), ("vocab", "embed"), cfg.init_std)
        if cfg.scan_layers:
            # One Block whose weights are stacked along a leading 'layers' axis: the compiler sees
            # one layer, so compile time stays flat in depth.
            @nnx.split_rngs(splits=cfg.n_layer)
            @nnx.vmap(in_axes=0, out_axes=0,
                      transform_metadata={nnx.PARTITION_NAME: LAYERS, "logical_axes": LAYERS})
            def make_blocks(rngs: nnx.Rngs) -> Block:
                return Block(cfg, rngs)

            self.blocks = make_blocks(rngs)
        else:
            self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layer)])
        self.final_norm = RMSNorm(cfg)
        if not cfg.tie_embeddings:
            self.unembed = _param(rngs, (D, V), ("embed", "vocab"), cfg.init_std)

    def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        # The table whole along embed (FSDP gathers it, as it does every weight before use): a
        # gather from an embed-sharded table yields rows split along D, which XLA cannot turn into
        # batch-split rows without replicating them.
        embed_VxD = constrain(self.embed[...], "vocab", None)
        x_BxLxD = jnp.take(embed_VxD, tokens_BxL, axis=0).astype(dtype)
        x_BxLxD = constrain(x_BxLxD, "batch", "length", "embed")
        forward = nnx.remat(_block_forward) if cfg.remat else _block_forward
        if cfg.scan_layers:
            @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry,
                      transform_metadata={nnx.PARTITION_NAME: LAYERS, "logical_axes": LAYERS})
            def run_layers(block: Block, x_BxLxD: jax.Array) -> jax.Array:
                return forward(block, x_BxLxD)

            x_BxLxD = run_layers(self.blocks, x_BxLxD)
        else:
            for block in self.blocks:
                x_BxLxD = forward(block, x_BxLxD)
        x_BxLxD = self.final_norm(x_BxLxD)
        unembed_DxV = self.embed[...].T if cfg.tie_embeddings else self.unembed[...]
        # Logits in float32: the softmax over V loses too much in bf16.
        logits_BxLxV = project("bld,dv->blv", x_BxLxD, unembed_DxV.astype(dtype), jnp.float32)
        logits_BxLxV = _output_mult(cfg, logits_BxLxV)
        return constrain(logits_BxLxV, "batch", "length", "vocab")

    def extend(self, tokens_BxL: jax.Array,
               cache: kv_cache.KVCache) -> tuple[jax.Array, kv_cache.KVCache]:
        """Logits of L new tokens that follow the cache's, and the cache holding them too.

        A prefill is one call with the prompt, a decode step one with L = 1: no prefix is recomputed.
        """
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        at = kv_cache.where(cache, tokens_BxL.shape[1])
        x_BxLxD = jnp.take(self.embed[...], tokens_BxL, axis=0).astype(dtype)
        if cfg.scan_layers:
            @nnx.scan(in_axes=(0, nnx.Carry, 0), out_axes=(nnx.Carry, 0),
                      transform_metadata={nnx.PARTITION_NAME: LAYERS, "logical_axes": LAYERS})
            def run_layers(block: Block, x_BxLxD: jax.Array, layer: kv_cache.LayerCache):
                return block.extend(x_BxLxD, layer, at)

            x_BxLxD, layers = run_layers(self.blocks, x_BxLxD, cache.layers)
        else:
            layers = []
            for block, layer in zip(self.blocks, cache.layers):
                x_BxLxD, layer = block.extend(x_BxLxD, layer, at)
                layers.append(layer)
            layers = tuple(layers)
        x_BxLxD = self.final_norm(x_BxLxD)
        unembed_DxV = self.embed[...].T if cfg.tie_embeddings else self.unembed[...]
        logits_BxLxV = project("bld,dv->blv", x_BxLxD, unembed_DxV.astype(dtype), jnp.float32)
        logits_BxLxV = _output_mult(cfg, logits_BxLxV)
        return logits_BxLxV, kv_cache.advance(cache, layers, tokens_BxL.shape[1])
