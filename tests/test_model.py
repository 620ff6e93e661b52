"""The transformer's options change how it computes, never what (beyond float rounding)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.config import ConfigError, ModelConfig
from models import transformer
from models.transformer import Transformer

BASE = ModelConfig(n_layer=2, d_model=32, n_heads=4, seq_len=16, vocab_size=257)
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 257, (2, 16)), jnp.int32)


def _logits(cfg, params=None):
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    if params is not None:
        state = params
    return nnx.merge(graphdef, state)(TOKENS), state


def test_einsum_attention_equals_dot_product_attention():
    a, params = _logits(dataclasses.replace(BASE, attention="dot_product"))
    b, _ = _logits(dataclasses.replace(BASE, attention="einsum"), params)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_auto_attention_asks_for_cudnn_by_name_on_gpu(monkeypatch):
    # dot_product_attention without `implementation` always lowers through XLA (the L x L scores
    # in memory: 455 ms vs 184 ms per step for 352M params on an H100), so 'auto' must name cuDNN.
    bf16 = dataclasses.replace(BASE, dtype="bfloat16")
    assert transformer.attention_kernel(bf16) == "einsum"  # this CPU
    monkeypatch.setattr(transformer.jax, "default_backend", lambda: "gpu")
    assert transformer.attention_kernel(bf16) == "cudnn"
    assert transformer.attention_kernel(BASE) == "xla"  # float32: cuDNN has no kernel
    assert transformer.attention_kernel(dataclasses.replace(bf16, attention="dot_product")) == "xla"


def test_remat_changes_nothing():
    a, params = _logits(BASE)
    b, _ = _logits(dataclasses.replace(BASE, remat=True), params)
    np.testing.assert_array_equal(a, b)


def test_scanned_layers_equal_unrolled_layers():
    scanned = Transformer(dataclasses.replace(BASE, scan_layers=True), rngs=nnx.Rngs(0))
    g, stacked = nnx.split(scanned)
    stacked = nnx.to_pure_dict(stacked)
    unrolled = Transformer(BASE, rngs=nnx.Rngs(1))
    g2, flat = nnx.split(unrolled)
    flat = nnx.to_pure_dict(flat)
    # Copy the stacked weights layer by layer into the unrolled model.
    for i in range(BASE.n_layer):
        flat["blocks"][i] = jax.tree.map(lambda x: x[i], stacked["blocks"])
    for key in ("embed", "final_norm", "unembed"):
        flat[key] = stacked[key]
    np.testing.assert_allclose(nnx.merge(g, stacked)(TOKENS), nnx.merge(g2, flat)(TOKENS), atol=1e-5)
    axes = nnx.to_flat_state(nnx.state(scanned))
    assert all(v.get_metadata()["logical_axes"][0] == "layers"
               for path, v in axes if path[0] == "blocks")


def test_causal_future_tokens_do_not_change_the_past():
    model = Transformer(BASE, rngs=nnx.Rngs(0))
    changed = TOKENS.at[:, 10:].set(7)
    np.testing.assert_allclose(model(TOKENS)[:, :10], model(changed)[:, :10], atol=1e-6)
    assert not np.allclose(model(TOKENS)[:, 10:], model(changed)[:, 10:])


def test_bf16_compute_keeps_f32_params_and_logits():
    cfg = dataclasses.replace(BASE, dtype="bfloat16")
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    leaves = jax.tree.leaves(nnx.state(model))
    assert all(x.dtype == jnp.float32 for x in leaves)
    logits = model(TOKENS)
    assert logits.dtype == jnp.float32
    ref = Transformer(BASE, rngs=nnx.Rngs(0))(TOKENS)
    np.testing.assert_allclose(logits, ref, atol=0.05)


def test_tied_embeddings_have_no_unembed():
    model = Transformer(dataclasses.replace(BASE, tie_embeddings=True), rngs=nnx.Rngs(0))
    assert "unembed" not in nnx.to_pure_dict(nnx.state(model))
    assert model(TOKENS).shape == (2, 16, 257)


def test_every_weight_names_its_axes():
    model = nnx.eval_shape(lambda: Transformer(BASE, rngs=nnx.Rngs(0)))
    for path, v in nnx.to_flat_state(nnx.state(model)):
        axes = v.get_metadata()["logical_axes"]
        assert len(axes) == len(v.get_value().shape), path


@pytest.mark.parametrize("fields,name", [
    (dict(d_model=30, n_heads=4), "model.n_heads"),
    (dict(mlp="relu"), "model.mlp"),
    (dict(dtype="float16"), "model.dtype"),
    (dict(n_layer=0), "model.n_layer"),
    (dict(head_dim=7, d_model=32, n_heads=4), "model.head_dim"),
    (dict(attention="flash"), "model.attention"),
    (dict(attention="cudnn", dtype="float32"), "model.attention"),
])
def test_impossible_shapes_are_one_sentence(fields, name):
    with pytest.raises(ConfigError, match=name) as e:
        ModelConfig(**fields)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rms_norm_gradients_equal_autodiff_of_its_formula(dtype):
    from models.transformer import rms_norm

    def plain(x, scale):
        x32 = x.astype(jnp.float32)
        return (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + 1e-6) * scale).astype(x.dtype)

    x = (3.0 * jax.random.normal(jax.random.key(0), (2, 8, 16))).astype(dtype)
    scale = 1.0 + 0.1 * jax.random.normal(jax.random.key(1), (16,))
    w = jax.random.normal(jax.random.key(2), (2, 8, 16))

    def loss(f):
        return lambda x, s: jnp.sum(jnp.sin(f(x, s).astype(jnp.float32)) * w)

    tol = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(rms_norm(x, scale, 1e-6).astype(jnp.float32),
                               plain(x, scale).astype(jnp.float32), rtol=tol, atol=tol)
    want = jax.grad(loss(plain), argnums=(0, 1))(x, scale)
    got = jax.grad(loss(lambda x, s: rms_norm(x, s, 1e-6)), argnums=(0, 1))(x, scale)
    for g, r in zip(got, want):
        assert g.dtype == r.dtype
        np.testing.assert_allclose(g.astype(jnp.float32), r.astype(jnp.float32), rtol=tol, atol=tol)
