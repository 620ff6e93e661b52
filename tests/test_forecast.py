"""The planner's forecast: the prior law it simulates, and the Monte Carlo of Approach 2 on a plan."""
import math

import numpy as np
import pytest

from experiments.planning.build import make_plan
from experiments.planning.errors import StudyError
from experiments.planning.study import Study
from experiments.planning.table import format_table
from experiments.configs import isoflop_cpu
from experiments.planning import forecast as fc
from experiments.planning.prior import Prior

BIG_EPOCH = 10**12


@pytest.fixture(scope="module")
def cpu_plan():
    config = isoflop_cpu.get_config()
    config.study.simulations = 0
    return make_plan(config, "experiments/configs/isoflop_cpu.py", epoch=BIG_EPOCH)


def test_prior_law_has_its_optimum_and_depth_where_the_prior_says(cpu_plan):
    prior = Prior(kind="law", budget=1e12, params=5e4, a=0.55, alpha=0.3, depth=0.03)
    f = fc.fpt_curve(cpu_plan.runs)
    C0 = 1e12
    law = prior.law(f, C0)
    assert law.beta == pytest.approx(0.3 * 0.55 / 0.45)
    n = np.logspace(3.5, 6.5, 20001)
    profile = law.loss(n, C0 / np.array([f(x) for x in n]))
    assert math.log10(n[np.argmin(profile)]) == pytest.approx(math.log10(5e4), abs=2e-3)
    best = profile.min()
    up = [law.loss(N, C0 / f(N)) - best for N in (5e4 * 10**-0.4, 5e4 * 10**0.4)]
    assert np.mean(up) == pytest.approx(0.03, rel=1e-3)


def test_forecast_centres_on_the_prior_and_narrows_with_less_noise(cpu_plan):
    prior = Study.from_config(isoflop_cpu.get_config().study).prior
    wide = fc.forecast(cpu_plan.runs, prior, 0.01, "test", 40, seed=1)
    narrow = fc.forecast(cpu_plan.runs, prior, 0.002, "test", 40, seed=1)
    # The noiseless fit recovers the prior's exponent up to the grid's own FLOP-per-token curvature.
    assert wide.a.centre == pytest.approx(prior.exponent, abs=0.05)
    assert narrow.a.half_width < wide.a.half_width and narrow.b.half_width < wide.b.half_width
    assert narrow.a.low <= narrow.a.median <= narrow.a.high
    assert wide.simulations == 40 and 0 <= wide.failed < 40 and 0 < wide.interior <= 1
    assert "simulated studies" in wide.describe()


def test_noise_from_a_previous_points_csv(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("budget,params,tokens,n_seeds,mean_eval_loss,std_eval_loss\n"
                    "1e11,1e4,1e6,2,2.0,0.004\n1e11,2e4,5e5,2,1.9,0.006\n1e11,4e4,2e5,1,1.95,\n"
                    "1e12,1e5,1e6,3,1.7,0.008\n")
    noise, source = fc.noise_level(0.1, str(path))
    pooled = math.sqrt((0.004**2 + 0.006**2 + 2 * 0.008**2) / 4)  # weighted by degrees of freedom
    assert noise == pytest.approx(pooled) and "3 points (4 dof)" in source
    assert fc.noise_level(0.1, "") == (0.1, "study.noise")
    with pytest.raises(StudyError, match="study.noise_from"):
        fc.noise_level(0.1, str(tmp_path / "missing.csv"))


def test_the_plan_prints_the_forecast():
    config = isoflop_cpu.get_config()
    config.study.simulations = 10
    p = make_plan(config, "experiments/configs/isoflop_cpu.py", epoch=BIG_EPOCH)
    assert p.forecast is not None and p.forecast.simulations == 10
    table = format_table(p)
    assert "forecast (10 simulated studies" in table and p.prior in table


def test_a_simulated_study_that_overflows_is_counted_as_failed(cpu_plan, monkeypatch):
    prior = Study.from_config(isoflop_cpu.get_config().study).prior
    real, calls = fc.fit_approach2, iter(range(10**6))

    def flaky(table, **kw):
        if next(calls) == 3:  # the noiseless centre fit is call 0
            raise OverflowError("(34, 'Numerical result out of range')")
        return real(table, **kw)
    monkeypatch.setattr(fc, "fit_approach2", flaky)
    f = fc.forecast(cpu_plan.runs, prior, 0.01, "test", 6, seed=1)
    assert f.failed == 1 and f.simulations == 6 and "1 studies failed to fit" in f.describe()
