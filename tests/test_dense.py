"""`project` computes einsum and its exact gradient, with dW written straight in W's layout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.dense import project

SPECS = [("bld,df->blf", (2, 8, 6), (6, 5)), ("bld,dhk->bhlk", (2, 8, 6), (6, 3, 4)),
         ("bhlk,hkd->bld", (2, 3, 8, 4), (3, 4, 6))]


def _loss(f, spec):
    return lambda x, w: jnp.sum(jnp.sin(f(spec, x, w)))


@pytest.mark.parametrize("spec,xs,ws", SPECS)
def test_value_and_gradients_equal_einsum(spec, xs, ws):
    x = jax.random.normal(jax.random.key(0), xs)
    w = jax.random.normal(jax.random.key(1), ws)
    ref = jax.grad(_loss(lambda s, a, b: jnp.einsum(s, a, b), spec), argnums=(0, 1))(x, w)
    got = jax.grad(_loss(project, spec), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(project(spec, x, w), jnp.einsum(spec, x, w), rtol=1e-6)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_weight_gradient_needs_no_transpose():
    # JAX's rule for x @ W builds dW as (dy^T x) and transposes it; XLA:CPU then copies the big
    # activation gradient into a transposed layout. project's dW comes out in W's order.
    x, w = jnp.ones((4, 16, 8)), jnp.ones((8, 12))
    plain = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w))))(w)
    ours = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(jnp.tanh(project("bld,df->blf", x, w)))))(w)
    assert "transpose" in str(plain)
    assert "transpose" not in str(ours)


def test_mixed_precision_cotangents_keep_the_operand_dtypes():
    x = jax.random.normal(jax.random.key(0), (2, 8, 6)).astype(jnp.bfloat16)
    w32 = jax.random.normal(jax.random.key(1), (6, 5))

    def loss(x, w32):  # float32 master weight, bf16 compute, float32 logits
        return jnp.sum(project("bld,dv->blv", x, w32.astype(jnp.bfloat16), jnp.float32) ** 2)

    assert project("bld,dv->blv", x, w32.astype(jnp.bfloat16), jnp.float32).dtype == jnp.float32
    dx, dw = jax.grad(loss, argnums=(0, 1))(x, w32)
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
    ref = jax.grad(lambda w: jnp.sum(jnp.einsum("bld,dv->blv", x.astype(jnp.float32), w) ** 2))(w32)
    np.testing.assert_allclose(dw, ref, rtol=0.05, atol=0.05)


def test_the_smaller_operand_goes_left_in_the_weight_gradient():
    # The down projection: dy [tokens, 8] is smaller than x [tokens, 12], so XLA:CPU should copy dy
    # (the matmul's left operand) into the transposed layout, not x.
    x, w = jnp.ones((4, 16, 12)), jnp.ones((12, 8))
    jaxpr = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(jnp.tanh(project("blf,fd->bld", x, w)))))(w)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    weight_dot = [e for e in dots if e.outvars[0].aval.shape == (8, 12)]
    assert len(weight_dot) == 1, [e.outvars[0].aval.shape for e in dots]
    assert weight_dot[0].invars[0].aval.shape == (4, 16, 8)  # dy on the left
