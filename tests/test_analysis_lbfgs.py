"""The batched L-BFGS: many starts, more starts than slots, per-start data."""
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from analysis.laws.lbfgs import LbfgsOptions, minimize_batched


def rosenbrock(x_SxP, shared, lane):
    a = shared if lane is None else lane[:, 0]
    x, y = x_SxP[:, 0], x_SxP[:, 1]
    f = (a - x) ** 2 + 100 * (y - x * x) ** 2
    g = jnp.stack([-2 * (a - x) - 400 * x * (y - x * x), 200 * (y - x * x)], 1)
    return f, g


def test_every_start_reaches_the_minimum_with_fewer_slots_than_starts():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-2, 2, (37, 2))
    with jax.enable_x64(True):
        res = minimize_batched(rosenbrock, jnp.asarray(x0), jnp.float64(1.0), None, LbfgsOptions(max_iter=2000), width=8)
    np.testing.assert_allclose(res.x_SxP, 1.0, atol=1e-6)
    assert res.converged_S.all()
    # Same answer as scipy's L-BFGS-B from one of the starts.
    ref = scipy.optimize.minimize(scipy.optimize.rosen, x0[5], jac=scipy.optimize.rosen_der, method="L-BFGS-B")
    np.testing.assert_allclose(res.x_SxP[5], ref.x, atol=1e-3)


def test_nan_starts_pad_a_pool_stopping_at_once_and_leave_the_others_alone():
    """law_fit.pad's padding lanes: a NaN start stops at its first evaluation (no iterations, no
    finite objective) and the real starts end where they end without it."""
    x0 = np.random.default_rng(1).uniform(-2, 2, (6, 2))
    padded = np.concatenate([x0, np.full((10, 2), np.nan)])
    with jax.enable_x64(True):
        res, alone = (minimize_batched(rosenbrock, jnp.asarray(x), jnp.float64(1.0), None, LbfgsOptions(max_iter=2000),
                                       width=4) for x in (padded, x0))
    assert np.all(res.iters_S[6:] == 0) and not np.isfinite(res.f_S[6:]).any()
    np.testing.assert_allclose(res.x_SxP[:6], alone.x_SxP, rtol=1e-12)
    np.testing.assert_array_equal(res.iters_S[:6], alone.iters_S)


def test_per_start_data_reaches_each_start():
    x0 = np.zeros((5, 2))
    a = np.arange(1.0, 6.0)[:, None]
    with jax.enable_x64(True):
        res = minimize_batched(rosenbrock, jnp.asarray(x0), jnp.float64(0.0), jnp.asarray(a),
                               LbfgsOptions(max_iter=3000), width=2)
    np.testing.assert_allclose(res.x_SxP[:, 0], a[:, 0], rtol=1e-5)
    np.testing.assert_allclose(res.x_SxP[:, 1], a[:, 0] ** 2, rtol=1e-5)


def test_float32_starts_are_refused():
    import pytest
    with pytest.raises(ValueError, match="enable_x64"):
        minimize_batched(rosenbrock, np.zeros((2, 2), np.float32), 1.0)
