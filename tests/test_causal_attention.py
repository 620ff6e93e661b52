"""models/causal_attention.py: blocked causal attention with its own backward = plain softmax attention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.causal_attention import causal_attention, key_fraction, query_block_size
from models.transformer import softmax_attention


def _reference(q, k, v):  # the full L x L scores with JAX's own derivative
    return softmax_attention(q, [(k, v, None)])


def _loss(attend):
    def f(q, k, v, w):
        return jnp.sum(jnp.sin(attend(q, k, v).astype(jnp.float32)) * w)
    return f


@pytest.mark.parametrize("seq_len", [32, 100, 128, 192])
def test_values_and_gradients_equal_full_attention(seq_len):
    q, k, v, w = (jax.random.normal(key, (2, 3, seq_len, 16))
                  for key in jax.random.split(jax.random.key(seq_len), 4))
    q = q * 3.0  # peaked softmax rows, where a wrong mask or normaliser shows
    np.testing.assert_allclose(causal_attention(q, k, v), _reference(q, k, v), rtol=1e-5, atol=1e-5)
    want = jax.grad(_loss(_reference), argnums=(0, 1, 2))(q, k, v, w)
    got = jax.grad(_loss(causal_attention), argnums=(0, 1, 2))(q, k, v, w)
    for name, g, r in zip("qkv", got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5, err_msg=f"d{name}")


def test_later_keys_do_not_reach_earlier_queries():
    q, k, v = (jax.random.normal(key, (1, 2, 128, 8)) for key in jax.random.split(jax.random.key(1), 3))
    v2 = v.at[:, :, 100:].set(7.0)  # change keys/values after position 99 only
    k2 = k.at[:, :, 100:].set(-3.0)
    np.testing.assert_array_equal(causal_attention(q, k, v)[:, :, :100],
                                  causal_attention(q, k2, v2)[:, :, :100])
    dv = jax.grad(lambda v: jnp.sum(causal_attention(q, k, v)[:, :, :64]))(v)
    assert float(jnp.max(jnp.abs(dv[:, :, 64:]))) == 0.0


def test_bfloat16_keeps_the_operand_dtypes():
    q, k, v = (jax.random.normal(key, (2, 2, 128, 16), jnp.bfloat16)
               for key in jax.random.split(jax.random.key(2), 3))
    out = causal_attention(q, k, v)
    assert out.dtype == jnp.bfloat16
    grads = jax.grad(lambda *a: jnp.sum(causal_attention(*a).astype(jnp.float32)), argnums=(0, 1, 2))(q, k, v)
    assert all(g.dtype == jnp.bfloat16 for g in grads)
    ref = _reference(*(t.astype(jnp.float32) for t in (q, k, v)))
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=0.05)


def test_block_sizes():
    assert query_block_size(256) == 64 and query_block_size(128) == 64
    assert query_block_size(2048) == 256  # at most 8 blocks
    assert query_block_size(64) == 64 and query_block_size(100) == 100  # one block


def test_key_fraction_counts_the_computed_pairs():
    assert key_fraction(256) == 5 / 8 and key_fraction(128) == 3 / 4 and key_fraction(100) == 1.0
