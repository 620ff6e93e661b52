"""Causal softmax attention for training, in blocks of queries, with a hand-written backward pass.

Each block of Q queries attends only to the keys at or before its last position, so the L x L scores
of full causal attention are computed for (n_blocks + 1) / (2 n_blocks) of the pairs (62.5% at four
blocks) and each block's scores stay small enough for the CPU's caches. The backward pass is the
standard one for softmax attention (as in FlashAttention, Dao et al. 2022, without recomputation):
dS = P * (dP - rowsum(dO * O)), which reads the L x L arrays fewer times than JAX's derivative of
`jax.nn.softmax`, and its key/value gradients are contracted with the small [L, K] operand on the
left, so XLA transposes that one rather than an [L, L] one. On the 2-core CPU a layer's attention
(B=16, H=5, L=256, K=64, f32) forward+backward went from ~67 to ~38 ms; values match the plain
einsum attention to float32 rounding (tests/test_causal_attention.py).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

MIN_BLOCK = 64  # queries per block; smaller blocks cost more in per-op overhead than they save
MAX_BLOCKS = 8  # bounds the ops per layer (and compile time) at long sequences


def query_block_size(seq_len: int) -> int:
    """Queries per block for a sequence of `seq_len`: the whole sequence when it does not split."""
    size = max(MIN_BLOCK, seq_len // MAX_BLOCKS)
    return size if seq_len % size == 0 and seq_len > size else seq_len


def key_fraction(seq_len: int) -> float:
    """Share of the L x L (query, key) pairs whose scores are computed: (n + 1) / (2 n) at n blocks."""
    n = seq_len // query_block_size(seq_len)
    return (n + 1) / (2 * n)


def causal_attention(q_BxHxLxK: jax.Array, k_BxHxLxK: jax.Array, v_BxHxLxK: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(K) + causal mask) v, scores and softmax in float32, heads-major."""
    L = q_BxHxLxK.shape[2]
    Q = query_block_size(L)
    outs = []
    for start in range(0, L, Q):
        end = start + Q
        outs.append(_query_block(q_BxHxLxK[:, :, start:end], k_BxHxLxK[:, :, :end],
                                 v_BxHxLxK[:, :, :end], start))
    return jnp.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]


def _dot(a, b, contract: tuple[int, int], dtype):
    """Batched (over the leading B, H axes) matmul of a and b contracting a's axis contract[0] with
    b's axis contract[1], a on the left (jnp.einsum may swap them)."""
    return jax.lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((0, 1), (0, 1))),
                               preferred_element_type=dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _query_block(q_BxHxQxK, k_BxHxMxK, v_BxHxMxK, start: int):
    """Queries start..start+Q over keys 0..M-1 (M = start + Q), each seeing keys at or before it."""
    return _block_fwd(q_BxHxQxK, k_BxHxMxK, v_BxHxMxK, start)[0]


def _block_fwd(q_BxHxQxK, k_BxHxMxK, v_BxHxMxK, start):
    Q, K, M = q_BxHxQxK.shape[2], q_BxHxQxK.shape[3], k_BxHxMxK.shape[2]
    qs_BxHxQxK = q_BxHxQxK * K ** -0.5
    s_BxHxQxM = _dot(qs_BxHxQxK, k_BxHxMxK, (3, 3), jnp.float32)
    visible_QxM = (start + jnp.arange(Q))[:, None] >= jnp.arange(M)[None, :]
    s_BxHxQxM = jnp.where(visible_QxM, s_BxHxQxM, jnp.finfo(jnp.float32).min)
    p_BxHxQxM = jax.nn.softmax(s_BxHxQxM, axis=-1).astype(v_BxHxMxK.dtype)
    o_BxHxQxK = _dot(p_BxHxQxM, v_BxHxMxK, (3, 2), v_BxHxMxK.dtype)
    return o_BxHxQxK, (qs_BxHxQxK, k_BxHxMxK, v_BxHxMxK, p_BxHxQxM, o_BxHxQxK)


def _block_bwd(start, residuals, do_BxHxQxK):
    del start  # the mask is in P: its hidden entries are exactly 0
    qs_BxHxQxK, k_BxHxMxK, v_BxHxMxK, p_BxHxQxM, o_BxHxQxK = residuals
    K = qs_BxHxQxK.shape[3]
    do_BxHxQxK = do_BxHxQxK.astype(v_BxHxMxK.dtype)
    dv_BxHxKxM = _dot(do_BxHxQxK, p_BxHxQxM, (2, 2), v_BxHxMxK.dtype)
    dp_BxHxQxM = _dot(do_BxHxQxK, v_BxHxMxK, (3, 3), jnp.float32)
    # rowsum(dP * P) = dO . O: one pass over [Q, K] instead of one over [Q, M].
    delta_BxHxQx1 = jnp.sum(do_BxHxQxK.astype(jnp.float32) * o_BxHxQxK.astype(jnp.float32),
                            axis=-1, keepdims=True)
    ds_BxHxQxM = (p_BxHxQxM.astype(jnp.float32) * (dp_BxHxQxM - delta_BxHxQx1)).astype(qs_BxHxQxK.dtype)
    dq_BxHxQxK = _dot(ds_BxHxQxM, k_BxHxMxK, (3, 2), jnp.float32) * K ** -0.5
    dk_BxHxKxM = _dot(qs_BxHxQxK, ds_BxHxQxM, (2, 2), k_BxHxMxK.dtype)
    return (dq_BxHxQxK.astype(qs_BxHxQxK.dtype), dk_BxHxKxM.swapaxes(2, 3),
            dv_BxHxKxM.swapaxes(2, 3))


_query_block.defvjp(_block_fwd, _block_bwd)
