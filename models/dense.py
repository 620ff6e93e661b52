"""`project`: an einsum of activations with a weight whose gradient XLA gets in the weight's layout.

JAX's own transpose rule for `x @ W` computes dW as `dy^T x` in [out, in] order and then transposes
it to W's [in, out]; XLA:CPU folds that transpose into the matmul by giving the [tokens, features]
activation gradient a transposed layout, which costs a slow strided copy of every such tensor (36%
of the 10M-parameter train step's op time). Writing dW directly in W's axis order removes those
copies: an MLP block's forward+backward went from ~170 to ~136 ms on the 2-core CPU, bit-identical.
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
    dw = jnp.einsum(f"{x_axes},{y_axes}->{w_axes}", x, dy, preferred_element_type=w.dtype)
    return dx, dw


project.defvjp(_project_fwd, _project_bwd)
