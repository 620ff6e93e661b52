"""Schedules end where the papers say; weight decay skips norms; accumulation is one big batch."""
import jax
import numpy as np
import pytest

from scaling import optim, step as step_lib, validate
from scaling.config import default_config
from scaling.sharding import make_mesh


def _train(**kw):
    t = default_config().train
    t.update(steps=100, warmup_steps=10, lr=1e-3, **kw)
    return t


def test_cosine_reaches_ten_percent_exactly_at_the_last_step():
    f = optim.schedule(_train(schedule="cosine"))
    assert f(0) == pytest.approx(1e-4) and f(9) == pytest.approx(1e-3)
    assert f(99) == pytest.approx(1e-4, rel=1e-6)
    lrs = [f(t) for t in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone after warmup
    assert f(98) > 1e-4


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_is_flat_then_cools_down_to_zero(shape):
    f = optim.schedule(_train(schedule="wsd", cooldown_frac=0.2, cooldown_shape=shape))
    assert all(f(t) == pytest.approx(1e-3) for t in range(10, 80))
    assert f(99) == 0.0 and 0 < f(80) < 1e-3
    mid = f(89)  # halfway through the cooldown
    expect = 0.5 if shape == "linear" else 1 - np.sqrt(0.5)
    assert mid == pytest.approx(1e-3 * expect, rel=1e-5)


def test_constant_schedule():
    f = optim.schedule(_train(schedule="constant"))
    assert f(50) == pytest.approx(1e-3) and f(99) == pytest.approx(1e-3)


def _one_step(grad_accum, **train_kw):
    c = default_config()
    c.model.update(n_layer=1, d_model=32, n_heads=2, seq_len=16)
    c.train.update(global_batch=8, grad_accum=grad_accum, warmup_steps=0, **train_kw)
    c.mesh.shape = (1, 1, 1)
    comp = step_lib.build(c, validate.check(c, 1), make_mesh((1, 1, 1), jax.devices()[:1]))
    tokens = np.random.default_rng(0).integers(0, 257, (8, 17)).astype(np.int32)
    weights = np.ones((8, 16), np.float32)
    weights[-1, 5:] = 0  # padding must not count, whichever micro-batch holds it
    local = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": weights}
    with jax.set_mesh(comp.mesh):
        state = comp.init()
        before = jax.device_get(state["params"])
        batch = step_lib.global_batch(local, comp.batch_sharding, 8, grad_accum)
        state, m = comp.train_step(state, batch, comp.schedule(0))
    return before, jax.device_get(state["params"]), jax.device_get(m)


def test_gradient_accumulation_equals_one_batch():
    _, p1, m1 = _one_step(1)
    _, p4, m4 = _one_step(4)
    np.testing.assert_allclose(m1["train_loss"], m4["train_loss"], rtol=1e-6)
    # Adam's first update is ~lr·g/|g|: where |g| is tiny, summation order shows up, so compare
    # against the update's own scale (lr = 3e-3).
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p4)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_weight_decay_skips_norm_scales():
    # Decay adds lr·wd·p to each decayed weight's update; norm scales must not see it.
    before, after_wd, _ = _one_step(1, weight_decay=10.0)
    _, after_no, _ = _one_step(1, weight_decay=0.0)
    norm_scale = ("blocks", 0, "attn_norm", "scale")
    get = lambda tree, path: tree[path[0]][path[1]][path[2]][path[3]]
    np.testing.assert_array_equal(get(after_wd, norm_scale), get(after_no, norm_scale))
    assert not np.array_equal(after_wd["embed"], after_no["embed"])


def test_z_loss_changes_the_update_not_the_reported_loss():
    _, p0, m0 = _one_step(1)
    _, pz, mz = _one_step(1, z_loss=1.0)
    assert m0["train_loss"] == mz["train_loss"]
    assert not np.array_equal(p0["unembed"], pz["unembed"])
