"""Issue 17's interval fixes: E at its bound, sigma | sigma-hat, the eval set's shared offset."""
import numpy as np
import pytest
import scipy.stats

from analysis.laws import approach3
from analysis.tables import tables
from analysis.uncertainty import parametric
from analysis.uncertainty.synthetic import cpu_table, isoflop_table, cpu_law, CPU_BUDGETS

# The Huber fit of cpu_table(seed=2) (isoflop_cpu's design, true E = 0.1): E at its bound.
AT_BOUND = np.array([np.log(27.987796723849872), np.log(99.29522983057929), np.log(2.5652240201128494e-13),
                     0.31878613433901365, 0.31704402232100876])


@pytest.fixture(scope="module")
def bound_runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("bound") / "results.csv"
    cpu_table(path, seed=2)
    return tables.load_runs(path)


def test_e_at_its_bound_gets_restarts_and_a_non_degenerate_interval(bound_runs):
    r = bound_runs
    starts = approach3.restart_starts(r.N, r.D, r.loss, AT_BOUND)
    assert starts.shape == (1 + len(approach3.E_RESTARTS), 5) and np.all(np.isfinite(starts))
    interior = AT_BOUND.copy()
    interior[2] = np.log(0.1)
    assert approach3.restart_starts(r.N, r.D, r.loss, interior).shape == (1, 5)  # no extra cost off the bound
    draws = parametric.loss_draws(parametric.around_law(r, parametric.plan(r), approach3.allocation.LawParams.from_logs(*AT_BOUND)), 16, 0)
    alone, ok1 = approach3.refit_draws(r.N, r.D, draws, AT_BOUND)
    restarted, ok2 = approach3.refit_draws(r.N, r.D, draws, starts)
    assert np.exp(alone[ok1, 2]).max() < 1e-9  # the old way: every resample stuck at E ~ 0
    assert np.exp(restarted[ok2, 2]).max() > 0.05  # the restarts let resamples find an interior E
    # each draw keeps its best start: never a worse objective than from the optimum alone
    f = lambda x, loss: approach3.huber_objective(x, r.N, r.D, loss)
    assert all(f(b, l) <= f(a, l) + 1e-12 for a, b, l, o1, o2 in zip(alone, restarted, draws, ok1, ok2) if o1 and o2)


def test_sigma_is_drawn_given_sigma_hat():
    p = parametric.Plan(parametric.PARAMETRIC, np.zeros(4), np.ones(4), 8, "seed noise")
    z = parametric.loss_draws(p, 20000, 0).ravel()
    # z * sqrt(dof / chi2_dof) is Student's t_8: 97.5% point 2.306 (sigma-hat's own distribution gives 2.01)
    assert np.quantile(np.abs(z), 0.95) == pytest.approx(scipy.stats.t.ppf(0.975, 8), abs=0.06)


def test_the_eval_offset_is_one_shift_per_resample_and_labelled(tmp_path):
    isoflop_table(tmp_path / "r.csv", cpu_law(), budgets=CPU_BUDGETS, per_budget=9, span_dex=0.4, seed=0,
                  sigma_nats=0.022, seeds=2, replicated=2, eval_se=0.03)
    runs = tables.load_runs(tmp_path / "r.csv")
    p = parametric.plan(runs)
    assert p.offset_sd == pytest.approx(0.03)
    with_offset = parametric.loss_draws(p, 4000, 0) - p.mu
    without = parametric.loss_draws(parametric.Plan(p.kind, p.mu, p.sigma, p.dof, p.source), 4000, 0) - p.mu
    shift = (with_offset - without)
    assert np.ptp(shift, 1).max() < 1e-12 and np.std(shift[:, 0]) == pytest.approx(0.03, rel=0.05)
    s = parametric.generic(runs, lambda r: {"m": float(r.loss.mean())}, 20, 0, p)
    assert s.summary()["eval_offset_sd"] == pytest.approx(0.03) and "E's" in s.summary()["eval_offset"]


def _a2(c, n_opt):
    from analysis.laws import approach2
    optima = tuple(approach2.BudgetOptimum(C=x, N_opt=n, D_opt=x / (6 * n), loss_opt=1.0, at_edge=False, n_runs=9,
                                           coeffs=()) for x, n in zip(c, n_opt))
    law = approach2.PowerLaw(0.5, 0.0)
    return approach2.Approach2Result(optima, law, law, tuple(c), weights=(1.0,) * len(c))


def test_misspecification_check_reads_the_local_exponents_trend_against_its_resampled_null():
    import types
    from analysis.diagnostics import misspec
    from analysis.uncertainty.parametric import Samples
    c = np.array([1.5e11, 4.8e11, 1.5e12, 4.8e12])
    x = np.log10(c) - np.log10(c).mean()
    straight = _a2(c, 10 ** (4 + 0.5 * x))
    curved = _a2(c, 10 ** (4 + 0.5 * x - 0.1 * x**2))  # d a / d log10 C = -0.2
    assert misspec.trend(straight) == pytest.approx(0.0, abs=1e-9)
    assert misspec.trend(curved) == pytest.approx(-0.2, abs=1e-9)
    null = np.random.default_rng(0).normal(0.0, 0.05, 400)  # resampled trends: 95% of |dev| within ~0.098
    ctx = lambda r2: types.SimpleNamespace(r2=r2, samples={"approach2": Samples({misspec.KEY: null}, 400, 0, (), "p", "s")})
    ok, bad = misspec.check(ctx(straight), 0.05), misspec.check(ctx(curved), 0.05)
    assert ok["holds"] is True and bad["holds"] is False and "given the law" in bad["detail"]
    from analysis.records import Fit
    fits = {"approach3": Fit("approach3", {"a": 0.5}, 0.0, {}, 44, (), {})}
    labelled = misspec.label(fits, {"checks": [bad]})
    assert labelled["approach3"].extra["given_the_law"] is True
    assert misspec.label(fits, {"checks": [ok]}) == fits
    assert misspec.check(types.SimpleNamespace(r2=_a2(c[:2], [1e4, 2e4]), samples={}), 0.05)["holds"] is None


def test_approaches_2_and_3_disagreeing_beyond_their_paired_null_is_flagged():
    from analysis.diagnostics import misspec
    from analysis.records import Fit
    from analysis.uncertainty.parametric import Samples
    rng = np.random.default_rng(0)
    a3 = rng.normal(0.5, 0.03, 200)
    s3 = Samples({"a": a3, "paired_a2": a3 - 0.01 + rng.normal(0, 0.01, 200)}, 200, 0, (), "p", "s")
    fits = lambda a3: {"approach2": Fit("approach2", {"a": 0.5}, None, {}, 44, (), {}),
                       "approach3": Fit("approach3", {"a": a3}, 0.0, {}, 44, (), {})}
    # null: differences ~ N(0.01, 0.01): 95% of |deviations| within ~0.02
    near, far = misspec.agreement(fits(0.52), {"approach3": s3}, 0.05), misspec.agreement(fits(0.55), {"approach3": s3}, 0.05)
    assert near["holds"] is True and far["holds"] is False
    assert misspec.label(fits(0.55), {"checks": [far]})["approach2"].extra["given_the_law"] is True
    assert misspec.agreement(fits(0.55), {}, 0.05)["holds"] is None


def _curvature_check(runs, seed=0):
    import types
    from analysis.diagnostics import curvature, misspec
    grid = approach3.StartGrid(alpha=(0.3,), beta=(0.3,), e=(-2.0, 0.0), a=(3.0, 6.0), b=(5.0, 8.0))
    r3 = approach3.fit_huber(runs.N, runs.D, runs.loss, grid=grid)
    s = parametric.approach3(runs, r3.x, 30, seed, at_fit=curvature.at_fit(runs))
    assert len(s.values["paired_" + curvature.KEY]) == len(s.values["alpha"])  # one t per refitted resample
    return misspec.curvature(types.SimpleNamespace(runs=runs, r3=r3, samples={"approach3": s}), 0.05)


def test_score_test_for_a_drifting_n_exponent_holds_on_the_law_and_fires_on_a_curved_one(bound_runs):
    from analysis.diagnostics import misspec
    from analysis.records import Fit
    ok = _curvature_check(bound_runs)  # the correct law, fitted with E at its bound (the harder case)
    assert ok["holds"] is True and "t of the drift" in ok["detail"]
    # the same design under L = E + A N^-alpha exp(-gamma l^2 / 2) + B/D^beta, the exponent drifting -+0.2
    law, ln = cpu_law(), np.log(bound_runs.N)
    u = ln - 0.5 * (ln.min() + ln.max())
    gamma = 0.2 / (0.5 * np.ptp(ln))
    curved = (law.E + law.A * np.exp(-law.alpha * ln - 0.5 * gamma * u * u) + law.B * bound_runs.D ** -law.beta
              + 0.022 * np.random.default_rng(1).standard_normal(len(ln)))
    bad = _curvature_check(bound_runs.with_loss(curved))
    assert bad["holds"] is False and "given the law" in bad["detail"]
    fits = {"approach3": Fit("approach3", {"a": 0.5}, 0.0, {}, 44, (), {})}
    assert misspec.label(fits, {"checks": [bad]})["approach3"].extra["given_the_law"] is True
    assert misspec.label(fits, {"checks": [ok]}) == fits


def test_the_drift_statistic_is_scale_free_and_nan_where_the_design_cannot_see_a_drift():
    from analysis.diagnostics import curvature
    rng = np.random.default_rng(0)
    log_n = np.log(np.logspace(4, 5.5, 30))
    log_d = np.log(1e12 / (6 * np.exp(log_n))) + rng.normal(0, 0.5, 30)
    x = np.array([np.log(32.6), np.log(133.6), np.log(0.1), 0.34, 0.34])
    log_l = curvature.columns(log_n, log_d, x)[0][0] + rng.normal(0, 0.01, 30)
    t = curvature.gamma_t(log_n, log_d, log_l, x)
    assert np.isfinite(t).all()
    assert curvature.gamma_t(log_n, log_d, log_l, x, sigma=np.full(30, 0.02)) == pytest.approx(t)
    one_size = np.full(30, log_n[0])  # one N: the drift column is the A column's multiple
    assert np.isnan(curvature.gamma_t(one_size, log_d, log_l, x)).all()
    from analysis.diagnostics import misspec
    # a Monte Carlo test's 95% point of 48 draws: the 47th smallest (exceeded with probability 2/49)
    assert misspec.monte_carlo_point(np.arange(48.0, 0, -1), 0.95) == 47.0
    assert misspec.monte_carlo_point(np.arange(10.0), 0.95) == np.inf  # too few draws for a 5% test
