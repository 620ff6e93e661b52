"""The speed-ups of the Approach-3 fit: float32 screening + float64 polish, the per-slot line
search, the pool-free path, background compilation. Behaviour only; timings live in bench/fit_speed.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis.laws import allocation, approach3
from analysis.tables import tables
from analysis.laws.lbfgs import LbfgsOptions, minimize_batched, precompile
from analysis.uncertainty.synthetic import isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)
GRID_96 = approach3.StartGrid(alpha=(0.0, 0.5, 1.0, 2.0), beta=(0.0, 0.5, 1.0, 2.0), e=(-1.0, 1.0),
                              a=(0.0, 10.0, 20.0), b=(5.0,))


@pytest.fixture(scope="module")
def noisy_runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "r.csv"
    isoflop_table(path, LAW, noise=0.005, seed=2)
    return tables.load_runs(path)


def test_screen_then_polish_finds_the_all_float64_optimum(noisy_runs):
    r = noisy_runs
    two_phase = approach3.fit_huber(r.N, r.D, r.loss, grid=GRID_96, polish=4)
    every_start = approach3.fit_huber(r.N, r.D, r.loss, grid=GRID_96, polish=len(GRID_96.points()))
    assert two_phase.n_starts == every_start.n_starts == 96
    assert two_phase.objective == pytest.approx(every_start.objective, rel=1e-9)
    np.testing.assert_allclose(two_phase.x, every_start.x, rtol=1e-4)
    # The winner is a float64 answer: its objective re-evaluated in numpy float64 agrees to 1e-10.
    assert approach3.huber_objective(two_phase.x, r.N, r.D, r.loss) == pytest.approx(two_phase.objective, rel=1e-10)
    assert two_phase.x.dtype == np.float64


def test_screening_alone_is_float32_and_less_precise(noisy_runs):
    r = noisy_runs
    x0 = GRID_96.points()
    with jax.enable_x64(True):
        c = lambda v: jnp.asarray(v, jnp.float32)
        shared = (c(np.log(r.N)), c(np.log(r.D)), c(np.log(r.loss)), c(1e-3), jnp.bool_(False))
        f, g = approach3.huber_value_and_grad(c(x0[:3]), shared, None)
        assert f.dtype == g.dtype == jnp.float32  # no silent promotion to float64 inside the pass
        res = minimize_batched(approach3.huber_value_and_grad, c(x0), shared, None, approach3.SCREEN_OPTIONS,
                               32, np.float32)
    assert res.x_SxP.dtype == np.float32
    assert res.iters_S.max() <= approach3.SCREEN_OPTIONS.max_iter


def test_float32_needs_float32_starts_and_polish_must_be_positive(noisy_runs):
    with jax.enable_x64(True), pytest.raises(ValueError, match="float32 starts"):
        minimize_batched(approach3.huber_value_and_grad, jnp.zeros((2, 5)), None, None, dtype=np.float32)
    with pytest.raises(approach3.InputError, match="polish"):
        approach3.fit_huber(noisy_runs.N, noisy_runs.D, noisy_runs.loss, polish=0)


def quadratic_nan_outside(x_SxP, shared, lane):
    """sum((x - 1)^2), NaN where any |x| > 3: a start whose steps all land outside fails its search."""
    f = jnp.sum((x_SxP - 1.0) ** 2, 1)
    bad = jnp.any(jnp.abs(x_SxP) > 3.0, 1)
    return jnp.where(bad, jnp.nan, f), jnp.where(bad[:, None], jnp.nan, 2.0 * (x_SxP - 1.0))


def test_a_failing_line_search_stops_its_start_only():
    # Start 0 is NaN from the outset; with one slot, the next starts reuse its slot (whose old
    # direction is NaN) and must not inherit it.
    x0 = np.array([[5.0, 5.0], [0.0, 0.5], [2.0, -2.0]])
    with jax.enable_x64(True):
        for width in (1, 3):  # pool and pool-free paths
            res = minimize_batched(quadratic_nan_outside, jnp.asarray(x0), None, None, LbfgsOptions(max_iter=50), width)
            assert not res.converged_S[0] and not np.isfinite(res.f_S[0])
            np.testing.assert_allclose(res.x_SxP[1:], 1.0, atol=1e-8)
            assert res.converged_S[1:].all()


def rosenbrock(x_SxP, shared, lane):
    x, y = x_SxP[:, 0], x_SxP[:, 1]
    f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    return f, jnp.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)], 1)


def test_pool_free_path_equals_pool_and_reports_convergence():
    x0 = np.random.default_rng(4).uniform(-2, 2, (9, 2))
    with jax.enable_x64(True):
        pooled = minimize_batched(rosenbrock, jnp.asarray(x0), None, None, LbfgsOptions(max_iter=2000), width=4)
        solo = minimize_batched(rosenbrock, jnp.asarray(x0), None, None, LbfgsOptions(max_iter=2000), width=9)
    assert pooled.converged_S.all() and solo.converged_S.all()
    np.testing.assert_allclose(solo.x_SxP, pooled.x_SxP, atol=1e-12)
    np.testing.assert_array_equal(solo.iters_S, pooled.iters_S)


def test_precompiled_program_gives_the_same_answer():
    x0 = np.random.default_rng(5).uniform(-2, 2, (6, 2))
    opts = LbfgsOptions(max_iter=1500, gtol=1e-8)
    with jax.enable_x64(True):
        precompile(rosenbrock, jax.ShapeDtypeStruct((6, 2), jnp.float64), None, None, opts, 6)
        res = minimize_batched(rosenbrock, jnp.asarray(x0), None, None, opts, 6)
    np.testing.assert_allclose(res.x_SxP, 1.0, atol=1e-6)
