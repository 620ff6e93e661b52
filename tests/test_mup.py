"""μP (models/mup.py): a coordinate check across widths, and the SP model left exactly as it was.

The coordinate check (Yang et al. 2022; the `mup` package's coord_check): train models that differ
only in width for a few Adam steps on random Zipf-distributed tokens, at one lr, and measure each
block's output and the logits on a held-out batch. Under μP their size and their change from init
stay flat in width; under SP they grow (the positive control: init std fixed, so hidden activations
grow as sqrt(width), and Adam updates of size lr on fan_in coordinates move them in proportion to
width).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import mup
from models.config import ConfigError, ModelConfig
from models.transformer import Transformer
from scaling import flops, optim, validate
from scaling.config import default_config
from scaling.sharding import logical_axes_tree

WIDTHS = (32, 64, 128, 256)  # one layer, one head, d_ff = d_model, 64 tokens: 9k ... 492k parameters
STEPS, LR, B, L, N_LAYER, SEEDS, VOCAB = 4, 1e-2, 8, 32, 1, 4, 64
# Each width is its own compiled program and compiling is most of the test's time; the programs
# are tiny, so XLA's optimisations cost more than they save (~4 s a width instead of ~10 s).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _model_cfg(width: int, parametrization: str) -> ModelConfig:
    return ModelConfig(n_layer=N_LAYER, d_model=width, n_heads=1, d_ff=width, vocab_size=VOCAB, seq_len=L,
                       parametrization=parametrization, mup_base_width=WIDTHS[0])


def _activations(model: Transformer, tokens_BxL: jax.Array) -> list[jax.Array]:
    """Each block's output (the residual stream) and the logits."""
    x_BxLxD = jnp.take(model.embed[...], tokens_BxL, axis=0)
    outs = []
    for block in model.blocks:
        x_BxLxD = block(x_BxLxD)
        outs.append(x_BxLxD)
    return outs + [model(tokens_BxL)]


@functools.lru_cache(maxsize=None)
def coord_check(width: int, parametrization: str) -> tuple[np.ndarray, np.ndarray]:
    """(RMS of each activation after STEPS updates, RMS of its change from init): [n_layer + 1] each,
    averaged over SEEDS models (inits and data), all in one compiled program."""
    cfg = _model_cfg(width, parametrization)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
    train = default_config().train
    train.update(weight_decay=0.0, clip_norm=0.0)
    tx = optim.optimizer(train, logical_axes_tree(abstract), cfg)
    # Zipf-distributed tokens: a unigram to learn gives the gradients a direction shared across
    # tokens (with uniform tokens the output layer's update is noise and the logits barely move).
    zipf = jnp.log(1.0 / jnp.arange(1, cfg.vocab_size + 1))

    def loss(params, tokens_BxL1):
        logits_BxLxV = nnx.merge(graphdef, params)(tokens_BxL1[:, :-1])
        logz_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
        return jnp.mean(logz_BxL - jnp.take_along_axis(logits_BxLxV, tokens_BxL1[:, 1:, None], -1)[..., 0])

    def one_seed(key):
        init_key, data_key = jax.random.split(key)
        params = nnx.to_pure_dict(nnx.split(Transformer(cfg, rngs=nnx.Rngs(init_key)))[1])
        data = jax.random.categorical(data_key, zipf, shape=(STEPS + 1, B, L + 1))
        probe = data[-1, :, :-1]  # a batch the updates never saw
        before = _activations(nnx.merge(graphdef, params), probe)

        def step(carry, tokens):
            p, s = carry
            updates, s = tx.update(jax.grad(loss)(p, tokens), s, p)
            return (jax.tree.map(lambda w, u: w + LR * u, p, updates), s), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), data[:-1])
        after = _activations(nnx.merge(graphdef, params), probe)
        rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x)))
        return jnp.stack([rms(a) for a in after]), jnp.stack([rms(a - b) for a, b in zip(after, before)])

    keys = jax.random.split(jax.random.key(0), SEEDS)
    value, delta = jax.jit(jax.vmap(one_seed), compiler_options=FAST_COMPILE)(keys)
    return np.asarray(value).mean(0), np.asarray(delta).mean(0)


def slopes(parametrization: str, widths: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Slope of log RMS against log width, per activation: (of the values, of their changes)."""
    stats = [coord_check(w, parametrization) for w in widths]
    log_w = np.log(widths)
    fit = lambda ys: np.array([np.polyfit(log_w, np.log(y), 1)[0] for y in np.stack(ys, 1)])
    return fit([s[0] for s in stats]), fit([s[1] for s in stats])


def test_mup_activations_and_their_updates_are_flat_in_width():
    values, deltas = slopes("mup", WIDTHS)
    # Measured (mean of 4 seeds): slopes <= 0.03 for the block output and the logits, values and changes.
    assert np.all(np.abs(values) < 0.1) and np.all(np.abs(deltas) < 0.1), (values, deltas)


def test_sp_activations_grow_with_width():
    # The positive control, at the two end widths only (a compile each): measured slopes 1.98 (block
    # output) and 0.45 (logits, which saturate), for values and changes alike (`python tests/test_mup.py`).
    values, deltas = slopes("sp", (WIDTHS[0], WIDTHS[-1]))
    assert values[0] > 1.5 and deltas[0] > 1.5 and values[-1] > 0.25 and deltas[-1] > 0.25, (values, deltas)


def test_mup_at_its_base_width_is_the_sp_model_exactly():
    for sp, mu in zip(coord_check(WIDTHS[0], "sp"), coord_check(WIDTHS[0], "mup")):
        np.testing.assert_array_equal(sp, mu)


def _axes(cfg: ModelConfig) -> dict:
    _, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
    return logical_axes_tree(abstract)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_lr_multipliers_scale_hidden_weights_only(scan_layers):
    cfg = ModelConfig(d_model=256, n_heads=4, parametrization="mup", mup_base_width=64,
                      scan_layers=scan_layers)
    lrs = mup.lr_multipliers(cfg, _axes(cfg))
    block = lrs["blocks"] if scan_layers else lrs["blocks"][0]
    assert [block["attn"][w] for w in ("wq", "wk", "wv", "wo")] == [0.25] * 4
    assert [block["mlp"][w] for w in ("w_gate", "w_up", "w_down")] == [0.25] * 3
    assert block["attn_norm"]["scale"] == block["mlp_norm"]["scale"] == lrs["final_norm"]["scale"] == 1.0
    assert lrs["embed"] == lrs["unembed"] == 1.0
    assert mup.output_mult(cfg) == 0.25 and mup.hidden_init_mult(cfg) == 0.5
    assert mup.query_mult(cfg) == 0.5  # heads widen with the model: K 64 against K_base 16
    fixed_heads = dataclasses.replace(cfg, mup_base_head_dim=cfg.head_dim)
    assert mup.query_mult(fixed_heads) == 1.0


def test_sp_has_no_multipliers_and_the_counts_do_not_change():
    sp = ModelConfig(d_model=256, n_heads=4)
    assert all(v == 1.0 for v in jax.tree.leaves(mup.lr_multipliers(sp, _axes(sp))))
    assert mup.output_mult(sp) == mup.query_mult(sp) == mup.hidden_init_mult(sp) == 1.0
    mu = dataclasses.replace(sp, parametrization="mup")
    assert flops.count_params(mu) == flops.count_params(sp)
    assert flops.flops_per_token(mu) == flops.flops_per_token(sp)


@pytest.mark.parametrize("field, value", [("parametrization", "mu-p"), ("mup_base_width", 0),
                                          ("mup_base_head_dim", -1)])
def test_a_bad_parametrization_field_is_one_line(field, value):
    config = default_config()
    assert config.model.parametrization == "sp"
    config.model[field] = value
    with pytest.raises(ConfigError, match=f"model.{field}=") as e:
        validate.check(config, device_count=1)
    assert "\n" not in str(e.value)


if __name__ == "__main__":  # the measured numbers quoted above
    for p in ("sp", "mup"):
        for w in WIDTHS:
            value, delta = coord_check(w, p)
            print(p, w, "rms", np.round(value, 4), "delta", np.round(delta, 4))
        print(p, "slopes", [np.round(s, 3) for s in slopes(p, WIDTHS)])
