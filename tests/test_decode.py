"""Decoding with the key/value cache computes what the full forward pass does; the sampling filters
keep what they promise."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import decode, kv_cache, sampling
from models.config import ConfigError, ModelConfig
from models.sampling import Sampling
from models.transformer import Transformer

BASE = ModelConfig(n_layer=2, d_model=32, n_heads=4, seq_len=24, vocab_size=257)
EOD = 256


def _model(**changes):
    cfg = dataclasses.replace(BASE, **changes)
    graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    return cfg, graphdef, nnx.to_pure_dict(state)


def _tokens(B, L, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 257, (B, L)), jnp.int32)


_extend = jax.jit(lambda g, p, t, c: nnx.merge(g, p).extend(t, c), static_argnums=0)
_forward = jax.jit(lambda g, p, t: nnx.merge(g, p)(t), static_argnums=0)


@pytest.mark.parametrize("changes", [{}, {"scan_layers": True}, {"attention": "dot_product"},
                                     {"tie_embeddings": True, "mlp": "gelu"},
                                     {"parametrization": "mup", "mup_base_width": 16}])
def test_cached_decoding_equals_the_full_forward_pass_at_every_position(changes):
    cfg, graphdef, params = _model(**changes)
    tokens = _tokens(2, cfg.seq_len)
    full_BxLxV = _forward(graphdef, params, tokens)
    cache = kv_cache.init(cfg, 2, cfg.seq_len)
    pieces = []
    # A prefill of 7, a chunk of 3, then one token per step to the end.
    for lo, hi in [(0, 7), (7, 10)] + [(i, i + 1) for i in range(10, cfg.seq_len)]:
        logits, cache = _extend(graphdef, params, tokens[:, lo:hi], cache)
        pieces.append(logits)
    assert int(cache.index) == cfg.seq_len
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full_BxLxV, atol=1e-5, rtol=0)


def test_left_padded_rows_compute_what_the_prompt_alone_does():
    cfg, graphdef, params = _model()
    short, long = _tokens(1, 5, seed=1)[0], _tokens(1, 9, seed=2)[0]
    prompts = decode.left_pad([np.asarray(short), np.asarray(long)], pad_id=EOD)
    cache = kv_cache.init(cfg, 2, 12, prompts.start_B)
    logits, cache = _extend(graphdef, params, jnp.asarray(prompts.tokens_BxP), cache)
    step, cache = _extend(graphdef, params, jnp.asarray([[7], [7]], jnp.int32), cache)
    alone = _forward(graphdef, params, jnp.concatenate([short, jnp.asarray([7])])[None])
    np.testing.assert_allclose(logits[0, 4:], alone[0, :5], atol=1e-5, rtol=0)
    np.testing.assert_allclose(step[0, 0], alone[0, 5], atol=1e-5, rtol=0)
    alone = _forward(graphdef, params, jnp.concatenate([long, jnp.asarray([7])])[None])
    np.testing.assert_allclose(step[1, 0], alone[0, 9], atol=1e-5, rtol=0)


def test_cache_longer_than_the_model_is_refused():
    with pytest.raises(ConfigError, match="seq_len=24"):
        kv_cache.init(BASE, 1, 25)
    with pytest.raises(ConfigError, match=r"need 25 positions.*seq_len=24.*lower max_new_tokens to 20"):
        decode.check_fits(BASE, prompt_len=5, max_new=21)
    decode.check_fits(BASE, prompt_len=5, max_new=20)  # 24 slots: the 20th new token is never fed


# ------------------------------------------------------------------ filters
# Jitted once per shape: eager dispatch of each filter's dozen ops costs seconds per call here.
_top_k = jax.jit(sampling.top_k_logits, static_argnums=1)
_top_p = jax.jit(sampling.top_p_logits)
_filtered = jax.jit(sampling.filtered_logits, static_argnums=1)
_next_token = jax.jit(sampling.next_token, static_argnums=2)


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = jnp.asarray([[3.0, 1.0, 3.0, 3.0, 0.5, 2.0], [0.0] * 6])
    for k in (1, 2, 3, 5):
        kept = np.isfinite(np.asarray(_top_k(logits, k)))
        assert kept.sum(axis=1).tolist() == [k, k]
    kept = np.isfinite(np.asarray(_top_k(logits, 2)))[0]
    assert kept.tolist() == [True, False, True, False, False, False]  # ties: the lower ids
    top4 = np.isfinite(np.asarray(_top_k(logits, 4)))[0]
    assert top4.tolist() == [True, False, True, True, False, True]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = np.asarray([0.05, 0.5, 0.15, 0.3])
    logits = jnp.asarray(np.log(probs))[None]
    for p, expected in [(0.3, {1}), (0.7, {1, 3}), (0.9, {1, 3, 2}), (0.99, {0, 1, 2, 3})]:
        kept = set(np.flatnonzero(np.isfinite(np.asarray(_top_p(logits, p))[0])))
        assert kept == expected, p
    # Random rows: the kept set is a prefix of the ranking, reaches p, and is minimal.
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(64, 50)) * 2, jnp.float32)
    for p in (0.1, 0.5, 0.9):
        kept = np.isfinite(np.asarray(_top_p(logits, p)))
        probs = np.asarray(jax.nn.softmax(logits, axis=-1))
        for row in range(64):
            order = np.argsort(-probs[row], kind="stable")
            n = kept[row].sum()
            assert kept[row, order[:n]].all()
            mass = np.cumsum(probs[row, order])
            assert mass[n - 1] >= p - 1e-6 and (n == 1 or mass[n - 2] < p + 1e-6)


def test_temperature_zero_is_argmax_and_filters_apply_after_temperature():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(8, 257)), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 8)
    greedy = _next_token(logits, keys, Sampling(temperature=0.0, top_k=5, top_p=0.5))
    np.testing.assert_array_equal(greedy, jnp.argmax(logits, axis=-1))
    # top-k=1 at any temperature is greedy too.
    np.testing.assert_array_equal(_next_token(logits, keys, Sampling(2.0, top_k=1)), greedy)
    # A high temperature flattens the distribution: top-p then keeps more tokens.
    hot = np.isfinite(np.asarray(_filtered(logits, Sampling(3.0, top_p=0.5)))).sum()
    cold = np.isfinite(np.asarray(_filtered(logits, Sampling(0.3, top_p=0.5)))).sum()
    assert hot > cold


def test_sampled_tokens_come_only_from_the_filtered_set():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(1, 257)), jnp.float32).repeat(256, 0)
    keys = jax.random.split(jax.random.key(3), 256)
    tokens = np.asarray(_next_token(logits, keys, Sampling(1.0, top_k=7)))
    allowed = set(np.argsort(-np.asarray(logits[0]))[:7])
    assert set(tokens) <= allowed and len(set(tokens)) > 1


@pytest.mark.parametrize("field,value", [("temperature", -0.1), ("top_k", -1), ("top_p", 0.0),
                                         ("top_p", 1.5)])
def test_bad_sampling_settings_are_one_line(field, value):
    with pytest.raises(ConfigError, match=field) as e:
        Sampling(**{field: value})
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ generation
@pytest.fixture(scope="module")
def scanned():
    return _model(scan_layers=True)


def _generate(model, prompts, max_new, settings, seed, eod=EOD):
    cfg, graphdef, params = model
    padded = decode.left_pad(prompts, EOD)
    gen = decode.compiled_generate(max_new=max_new, sampling=settings, eod_id=eod)
    out = gen(graphdef, params, jnp.asarray(padded.tokens_BxP), jnp.asarray(padded.start_B),
              jax.random.key(seed))
    return np.asarray(out.tokens_BxN), np.asarray(out.n_new_B)


def test_greedy_generation_equals_argmax_of_the_full_forward_pass(scanned):
    cfg, graphdef, params = scanned
    prompt = np.asarray([EOD, 100, 101, 102], np.int32)
    tokens, n_new = _generate(scanned, [prompt], 12, Sampling(temperature=0.0), seed=0)
    # One fixed-length forward per token: causal, so the zeros after position t change nothing.
    seq = np.zeros((1, len(prompt) + 12), np.int32)
    seq[0, :len(prompt)] = prompt
    for t in range(len(prompt), seq.shape[1]):
        seq[0, t] = int(jnp.argmax(_forward(graphdef, params, jnp.asarray(seq))[0, t - 1]))
        if seq[0, t] == EOD:
            break
    assert tokens[0, :n_new[0]].tolist() == seq[0, len(prompt):t + 1].tolist()


def test_same_seed_same_text_other_seed_other_text(scanned):
    prompts = [np.asarray([EOD, 65], np.int32)] * 3
    settings = Sampling(temperature=1.0, top_k=50, top_p=0.95)
    a, _ = _generate(scanned, prompts, 16, settings, seed=0)
    b, _ = _generate(scanned, prompts, 16, settings, seed=0)
    c, _ = _generate(scanned, prompts, 16, settings, seed=1)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert (a[0] != a[1]).any()  # rows of one batch draw independently
    # A row's text does not depend on how many rows are drawn with it.
    one, _ = _generate(scanned, prompts[:1], 16, settings, seed=0)
    np.testing.assert_array_equal(one[0], a[0])


def test_generation_stops_at_end_of_document(scanned):
    prompts = [np.asarray([EOD, 10 + r], np.int32) for r in range(3)]
    free, n_free = _generate(scanned, prompts, 16, Sampling(temperature=0.0), seed=0, eod=-1)
    assert n_free.tolist() == [16, 16, 16]
    # Call the token row 0 emits 4th the end of document: row 0 must stop right there, the others
    # at their own first occurrence of it (or run to the limit), and only it may follow.
    stop = int(free[0, 3])
    first = [int(np.flatnonzero(row == stop)[0]) + 1 if (row == stop).any() else 16 for row in free]
    tokens, n_new = _generate(scanned, prompts, 16, Sampling(temperature=0.0), seed=0, eod=stop)
    assert n_new.tolist() == first
    for row in range(3):
        np.testing.assert_array_equal(tokens[row, :first[row]], free[row, :first[row]])
        assert (tokens[row, first[row]:] == stop).all()
