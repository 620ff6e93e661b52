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
