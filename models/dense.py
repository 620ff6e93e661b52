"""`project`: an einsum of activations with a weight, whose weight gradient copies the least.

dW sums x ⊗ dy over the tokens: one matmul contracting the token axes of both operands, and XLA:CPU
copies its left operand into a transposed [features, tokens] layout first (a slow strided copy).
JAX's own rule for `x @ W` puts dy on the left and then transposes dW, which made XLA:CPU give every
activation gradient a transposed layout (36% of the 10M-parameter train step's op time). `project`
puts the smaller of x and dy on the left and writes dW in W's own axis order: an MLP block's
forward+backward went from ~170 to ~136 ms on the 2-core CPU with x always on the left, and the
down projection's [tokens, d_model] dy instead of its [tokens, d_ff] input took the step ~1.5%
further (bench/train_throughput.py, alternating in one process).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def project(spec: str, x: jax.Array, w: jax.Array, out_dtype=None) -> jax.Array:
    """jnp.einsum(spec, x, w) for a 2-operand spec 'x_axes,w_axes->y_axes' (out_dtype: the result's)."""
    return jnp.einsum(spec, x, w, preferred_element_type=out_dtype)


def _project_fwd(spec, x, w, out_dtype):
    return project(spec, x, w, out_dtype), (x, w)


def _project_bwd(spec, out_dtype, residuals, dy):
    x, w = residuals
    ins, y_axes = spec.split("->")
    x_axes, w_axes = ins.split(",")
    # Cotangents in the compute dtype (bf16 under mixed precision, where w is the bf16 copy of a
    # float32 weight), each produced straight in its operand's dtype: no separate convert pass.
    dy = dy.astype(x.dtype)
    dx = jnp.einsum(f"{y_axes},{w_axes}->{x_axes}", dy, w, preferred_element_type=x.dtype)
    return dx, _weight_grad(x, x_axes, dy, y_axes, w_axes, w.dtype)


def _weight_grad(x, x_axes: str, dy, y_axes: str, w_axes: str, dtype) -> jax.Array:
    """sum over the token axes of x ⊗ dy, in w_axes order, the smaller operand on the left."""
    if dy.size >= x.size or any(a in x_axes and a in y_axes for a in w_axes):
        return jnp.einsum(f"{x_axes},{y_axes}->{w_axes}", x, dy, preferred_element_type=dtype)
    tokens = [a for a in x_axes if a in y_axes and a not in w_axes]
    # dot_general, not einsum: jnp.einsum would swap the operands back to spare dW's transpose.
    contract = (tuple(y_axes.index(a) for a in tokens), tuple(x_axes.index(a) for a in tokens))
    dw = jax.lax.dot_general(dy, x, (contract, ((), ())), preferred_element_type=dtype)
    produced = [a for a in y_axes if a not in tokens] + [a for a in x_axes if a not in tokens]
    return dw.transpose([produced.index(a) for a in w_axes])


project.defvjp(_project_fwd, _project_bwd)
