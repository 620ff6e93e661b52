"""analysis.predict: N*, D*, D*/N* and the loss at a budget, and one run's loss with its prediction
interval, from a fits.json alone (hand-made here: no fit runs)."""
import json
import math
import statistics

import numpy as np
import pytest

from analysis import predict as cli
from analysis.laws import allocation, predict

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)


def fits_body(n_draws=200, spread=0.02, sigma=0.01, dof=4, se=None):
    rng = np.random.default_rng(0)
    draws = {k: [getattr(LAW, k) * float(np.exp(spread * z)) for z in rng.standard_normal(n_draws)]
             for k in predict.LAW_KEYS}
    return {"approach3": {"approach": "approach3", **{k: getattr(LAW, k) for k in predict.LAW_KEYS},
                          "extra": {"flops_per_param_token": 6.0, **({"draws": draws} if n_draws else {})}},
            "diagnostics": {"seed_noise": [{"pooled_std": sigma, "dof": dof, "median_run_se": se}]}}


def test_allocation_is_eq4_of_the_fit_with_the_resamples_interval():
    pr = predict.Predictor.from_fits(fits_body())
    a, mid = pr.allocation(1e21), allocation.optimal_allocation(LAW, 1e21)
    assert a.N.mid == pytest.approx(mid.N_opt[0]) and a.D.mid == pytest.approx(mid.D_opt[0])
    assert a.ratio.mid == pytest.approx(mid.tokens_per_param[0]) and a.loss.mid == pytest.approx(mid.loss[0])
    for iv in (a.N, a.D, a.ratio, a.loss):
        assert iv.lo < iv.mid < iv.hi


def test_prediction_interval_combines_parameter_spread_and_run_noise():
    n, d = 1e8, 2e9
    both = predict.Predictor.from_fits(fits_body(sigma=0.02)).loss(n, d)
    params_only = predict.Predictor.from_fits(fits_body(sigma=0.0, dof=0)).loss(n, d)
    noise_only = predict.Predictor.from_fits(fits_body(n_draws=0, sigma=0.02)).loss(n, d)
    width = lambda x: x.loss.hi - x.loss.lo
    assert width(both) > max(width(params_only), width(noise_only))
    # In quadrature, within Monte Carlo error (4,000 draws: a few %).
    assert width(both) == pytest.approx(math.hypot(width(params_only), width(noise_only)), rel=0.1)
    # No resamples: exactly mid +- 1.96 sigma.
    half = statistics.NormalDist().inv_cdf(0.975) * 0.02
    assert (noise_only.loss.lo, noise_only.loss.hi) == pytest.approx((noise_only.loss.mid - half, noise_only.loss.mid + half))
    assert noise_only.loss.mid == pytest.approx(float(LAW.loss(n, d)))


def test_noise_falls_back_to_eval_se_then_none():
    assert predict.run_noise([{"pooled_std": None, "dof": 0, "median_run_se": 0.003}])[0] == 0.003
    assert predict.run_noise([])[0] == 0.0
    pr = predict.Predictor.from_fits(fits_body(n_draws=0, sigma=0.0, dof=0))
    assert math.isnan(pr.loss(1e8, 2e9).loss.lo)  # no interval is claimed without any uncertainty


def test_interval_units_are_half_widths_on_the_measured_side():
    iv = predict.Interval(1.0, 0.9, 1.2)
    assert iv.units(1.1) == pytest.approx(0.5) and iv.units(0.8) == pytest.approx(-2.0)
    assert iv.contains(1.2) and not iv.contains(0.8)


def test_cli_prints_a_table_and_json(tmp_path, capsys):
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits_body()))
    assert cli.main(["--fits", str(path), "--flops", "1e20,1e21", "--at", "1e8:2e9"]) == 0
    out = capsys.readouterr().out
    assert "C=1e+20" in out and "C=1e+21" in out and "prediction interval" in out
    assert cli.main(["--fits", str(path), "--flops", "1e21", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["resamples"] == 200 and body["allocations"][0]["C"] == 1e21


@pytest.mark.parametrize("argv, needle", [(["--flops", "1e21", "--approach", "approach2"], "--approach"),
                                          ([], "--flops"), (["--at", "1e8x2"], "--at")])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, needle):
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits_body()))
    assert cli.main(["--fits", str(path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
