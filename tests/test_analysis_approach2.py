"""Approach 2: IsoFLOP vertices, edge flags, Akima option, power laws, errors."""
import numpy as np
import pytest

from analysis.laws import allocation, approach2
from analysis.tables import tables
from analysis.uncertainty import bootstrap, parametric
from analysis.records import InputError
from analysis.uncertainty.synthetic import isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)


def test_parabola_vertex_is_exact_for_a_parabola():
    x = np.linspace(7, 9, 7)
    loss = 2.0 + 0.3 * (x - 8.2) ** 2
    o = approach2.budget_optimum(x, 10 - x, loss, 1e19)
    assert o.N_opt == pytest.approx(10**8.2, rel=1e-9)
    assert o.D_opt == pytest.approx(10**1.8, rel=1e-9)
    assert not o.at_edge


def test_vertex_outside_the_sampled_range_is_flagged():
    x = np.linspace(7, 8, 5)
    o = approach2.budget_optimum(x, 10 - x, 2.0 + 0.3 * (x - 8.4) ** 2, 1e19)
    assert o.at_edge


def test_akima_option_finds_the_minimum():
    x = np.linspace(7, 9, 9)
    o = approach2.budget_optimum(x, 10 - x, 2.0 + 0.3 * np.abs(x - 8.0) ** 1.5, 1e19, method="akima")
    assert np.log10(o.N_opt) == pytest.approx(8.0, abs=0.01)
    assert o.coeffs == ()


def test_power_laws_recover_eq4_exponents(tmp_path):
    isoflop_table(tmp_path / "r.csv", LAW, per_budget=15, span_dex=0.5)
    r = approach2.fit_approach2(tables.load_runs(tmp_path / "r.csv"))
    a, b, _ = allocation.exponents(LAW)
    assert r.n_law.exponent == pytest.approx(a, abs=0.01)
    assert r.d_law.exponent == pytest.approx(b, abs=0.01)
    assert r.n_law.exponent + r.d_law.exponent == pytest.approx(1.0, abs=1e-6)  # C = 6ND exactly


def test_weighted_fit_follows_the_weights():
    c = np.array([1e18, 1e19, 1e20])
    y = np.array([1e8, 10**8.5, 1e10])
    light = approach2.fit_power_law(c, y, [1, 1, 1e-6])
    assert light.exponent == pytest.approx(0.5, abs=1e-3)


def test_bootstrap_interval_contains_the_estimate(tmp_path):
    isoflop_table(tmp_path / "r.csv", LAW, per_budget=10, noise=0.003, seed=2)
    runs = tables.load_runs(tmp_path / "r.csv")
    est = approach2.fit_approach2(runs)
    lo, hi = parametric.generic(runs, bootstrap.approach2_fit_values, 60, 0).intervals()["a"]
    assert lo < est.n_law.exponent < hi


def test_too_few_runs_and_single_budget_are_input_errors(tmp_path):
    df = isoflop_table(tmp_path / "r.csv", LAW, budgets=(1e18, 1e19), per_budget=5)
    df[df.index != 0].iloc[:6].to_csv(tmp_path / "few.csv", index=False)  # budget 1e18 keeps 4, 1e19 keeps 2
    with pytest.raises(InputError, match="budget 1e\\+19 has 2 runs"):
        approach2.fit_approach2(tables.load_runs(tmp_path / "few.csv"))
    df[df.budget == 1e18].to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(InputError, match="at least 2 budgets"):
        approach2.fit_approach2(tables.load_runs(tmp_path / "one.csv"))


def test_repeated_sizes_without_three_distinct_n_are_an_input_error():
    # A bootstrap resample can draw one budget's runs as only two distinct sizes; a parabola is
    # then not determined, and the resample must be rejected rather than fitted with a warning.
    x = np.array([7.0, 7.0, 8.0, 8.0])
    with pytest.raises(InputError, match="fewer than 3 distinct N"):
        approach2.budget_optimum(x, 10 - x, 2.0 + (x - 7.5) ** 2, 1e19)


def test_a_vertex_hundreds_of_decades_off_the_grid_is_at_edge_not_an_overflow():
    # A nearly flat profile: the parabola's vertex lands ~400 decades away; 10**x of a Python float
    # raised OverflowError there (issue 17), float64 gives inf and the budget is flagged at_edge.
    x = np.linspace(3, 3.8, 9)
    o = approach2.budget_optimum(x, 10 - x, 2.0 + 1e-9 * (x - 400) ** 2, 1e12, log_fpt=x + np.log10(6))
    assert o.at_edge and not o.usable
    assert o.N_opt == np.inf and o.D_opt == 0.0


def test_a_resample_that_overflows_is_counted_not_fatal(tmp_path):
    isoflop_table(tmp_path / "r.csv", LAW, per_budget=7, span_dex=0.5, sigma_nats=0.01, seeds=2)
    runs = tables.load_runs(tmp_path / "r.csv")
    calls = iter(range(10**6))

    def fit(r):
        if next(calls) % 4 == 0:
            raise OverflowError("(34, 'Numerical result out of range')")
        return bootstrap.approach2_fit_values(r)
    s = parametric.generic(runs, fit, 8, 0)
    assert s.failed == 2 and len(s.values["a"]) == 6
    assert "OverflowError" in s.summary()["failure_reasons"]
