"""The batched Approach 2 refits (analysis.laws.approach2_many), the pruned Akima vertex
(analysis.laws.akima_min) and the leave-one-out reuse give what the one-at-a-time fits give."""
import numpy as np
import pytest
import scipy.interpolate

from analysis.diagnostics import misspec, validate
from analysis.laws import allocation, approach2, approach2_many
from analysis.laws.akima_min import akima_argmin
from analysis.tables import tables
from analysis.uncertainty import calibrate as cal, noise, parametric
from analysis.uncertainty.synthetic import isoflop_table

LAW = allocation.LawParams(E=0.82, A=20.1, B=115.0, alpha=0.368, beta=0.380)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """4 budgets x 5 sizes, 2 seeds at the 2 central sizes: 28 runs."""
    path = tmp_path_factory.mktemp("a2m") / "results.csv"
    isoflop_table(path, LAW, budgets=(1.5e11, 4.8e11, 1.5e12, 4.8e12), per_budget=5, span_dex=0.4, sigma_nats=0.022,
                  seeds=2, replicated=2, seed=3)
    return tables.load_runs(path, tables.Columns())


def one_at_a_time(runs, losses, sigma):
    out = []
    for i, row in enumerate(losses):
        s = sigma[i] if sigma is not None and np.ndim(sigma) == 2 else sigma
        try:
            r = approach2.fit_approach2(runs.with_loss(row), "parabola", False, s)
            out.append((r.n_law.exponent, r.n_law.log10_k, r.d_law.exponent, r.d_law.log10_k, misspec.trend(r)))
        except approach2.InputError as e:
            out.append(str(e))
    return out


@pytest.mark.parametrize("weights", ["measured", "none", "per draw"])
def test_rows_equal_the_one_at_a_time_fits(runs, weights):
    p = parametric.plan(runs)
    # wide noise: some draws lose their interior optima and fail, as the per-table fit does
    losses = np.concatenate([parametric.loss_draws(p, 30, 1),
                             parametric.loss_draws(dataclasses_replace(p, sigma=p.sigma * 15), 30, 2)])
    sigma = {"measured": noise.run_noise(runs).sigma, "none": None,
             "per draw": noise.sigma_rows(runs, losses)}[weights]
    want = one_at_a_time(runs, losses, sigma)
    got = [str(f) if isinstance(f, Exception) else
           (f.n_law.exponent, f.n_law.log10_k, f.d_law.exponent, f.d_law.log10_k, f.trend)
           for f in approach2_many.fit_rows(runs, losses, sigma)]
    assert any(isinstance(w, str) for w in want) and any(not isinstance(w, str) for w in want)
    for w, g in zip(want, got):
        if isinstance(w, str) or isinstance(g, str):
            assert w == g
        else:
            np.testing.assert_allclose(g, w, rtol=1e-7, atol=1e-12)


def dataclasses_replace(p, **kw):
    import dataclasses
    return dataclasses.replace(p, **kw)


def test_sigma_rows_is_run_noise_of_each_draw(runs):
    losses = parametric.loss_draws(parametric.plan(runs), 20, 4)
    want = np.array([noise.run_noise(runs.with_loss(r)).sigma for r in losses])
    np.testing.assert_allclose(noise.sigma_rows(runs, losses), want, rtol=1e-13)


def test_pruned_akima_vertex_is_the_fine_grid_argmin():
    rng = np.random.default_rng(0)
    for n, sd in ((5, 0.02), (9, 0.2), (9, 0.001), (4, 0.05)):
        ux = np.sort(rng.uniform(3, 6, n))
        means = 3 + 0.4 * (ux - ux.mean())[:, None] ** 2 + rng.normal(0, sd, (n, 300))
        means[:, :5] = np.round(means[:, :5], 1)  # ties and flat stretches: argmin's first occurrence
        fine = np.linspace(ux[0], ux[-1], 2001)
        want = fine[np.argmin(scipy.interpolate.Akima1DInterpolator(ux, means, axis=0)(fine), 0)]
        np.testing.assert_array_equal(akima_argmin(ux, means), want)


def test_leave_one_out_reuses_the_other_budgets(runs):
    sig = noise.run_noise(runs).sigma
    full = approach2.fit_approach2(runs, sigma=sig).n_law.exponent
    shifts = []
    for i in range(len(runs)):
        keep = np.arange(len(runs)) != i
        try:
            shifts.append(abs(approach2.fit_approach2(runs.subset(keep), sigma=sig[keep]).n_law.exponent - full))
        except approach2.InputError:
            pass
    loo = validate.loo_approach2(runs, sigma=sig)
    assert loo.max_shift == pytest.approx(max(shifts), rel=1e-12) and loo.failed == len(runs) - len(shifts)


def test_calibration_rows_equal_the_per_study_path(runs, monkeypatch):
    """A few simulated studies: coverage and check rows with the batched refits, then with every
    resample refitted one table at a time (the path the batched one replaced)."""
    grid = cal.approach3.StartGrid(alpha=(0.5,), beta=(0.5,), e=(0.0, 0.5), a=(3.0, 6.0), b=(5.0, 8.0))
    opts = cal.CalibrationOptions(studies=3, resamples=10, scenarios=("correct",), validation=False, grid=grid)
    d = cal.design(runs, opts, LAW, "test")
    keep = ("studies", "fitted", "failed", "failure_reasons", "intervals", "checks")
    fast = {k: v for k, v in cal.run_scenario(d, "correct", opts).items() if k in keep}
    generic, a3 = parametric.generic, parametric.approach3
    monkeypatch.setattr(parametric, "generic", lambda *a, rows=None, **k: generic(*a, **k))
    monkeypatch.setattr(parametric, "approach3", lambda *a, paired_rows=None, **k: a3(*a, **k))
    slow = {k: v for k, v in cal.run_scenario(d, "correct", opts).items() if k in keep}
    assert [fast[k] for k in keep[:4]] == [slow[k] for k in keep[:4]]
    for part in ("intervals", "checks"):
        assert fast[part].keys() == slow[part].keys()
        for key, row in fast[part].items():
            for name, v in row.items():
                assert v == (slow[part][key][name] if isinstance(v, str) else pytest.approx(slow[part][key][name], rel=1e-7, abs=1e-12, nan_ok=True)), (key, name)
    assert sum(c["n"] for c in fast["checks"].values()) > 0
