"""Registry laws (analysis.laws.registry): known parameters recovered from synthetic tables, the
chinchilla law equal to Approach 3's fit, --fix, --predict, and one-line input errors.
Small tables, few explicit starts and few resamples keep each test to a compile or two."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from analysis import fit as fit_cli
from analysis.laws import approach3, law_fit, law_report, registry
from analysis.laws.law_table import LawColumns, law_table
from analysis.records import InputError

TRUTH = {
    "chinchilla": dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36),
    "broken_power": dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36, gamma=0.03),
    "overtraining": dict(E=1.7, a=2000.0, b=9000.0, eta=0.17),
    "data_constrained": dict(E=1.87, A=521.0, B=1488.0, alpha=0.353, R_D_star=15.4, R_N_star=5.3),
    "kaplan": dict(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103),
}


def synthetic(name: str, rows: int = 80, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Runs over N in [1e7, 3e9], D/N in [2, 500], unique tokens in {1e8, 1e9, 1e10, 1e13}."""
    law = registry.get(name)
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(3e9), rows))
    d = n * np.exp(rng.uniform(np.log(2), np.log(500), rows))
    u = np.exp(rng.choice(np.log([1e8, 1e9, 1e10, 1e13]), rows))
    logs = {"log_n": np.log(n), "log_d": np.log(d), "log_u": np.log(u)}
    with jax.enable_x64(True):
        x = {p.name: jnp.full((1, 1), p.to_search(TRUTH[name][p.name])) for p in law.params}
        consts = {k: jnp.float64(v) for k, v in law.constants(logs).items()}
        log_l = np.asarray(law.predict_log(x, {k: jnp.asarray(v) for k, v in logs.items()}, consts))[0]
    loss = np.exp(log_l + noise * rng.standard_normal(rows))
    return pd.DataFrame({"params": n, "tokens": d, "unique_tokens": u, "loss": loss})


def near_truth(name: str, k: int = 3, seed: int = 1) -> tuple:
    """k starts scattered around the truth in search coordinates (+-0.5 in logs, +-30% in exponents)."""
    law = registry.get(name)
    rng = np.random.default_rng(seed)
    x = np.array([p.to_search(TRUTH[name][p.name]) for p in law.params])
    scale = np.array([0.5 if p.transform == registry.LOG else 0.3 * abs(v) + 0.01 for p, v in zip(law.params, x)])
    return tuple(map(tuple, x + scale * rng.uniform(-1, 1, (k, len(x)))))


def run(name: str, df: pd.DataFrame, **kw) -> law_report.LawResult:
    law = registry.get(name)
    table = law_table(df, LawColumns(), law.inputs)
    opts = law_report.LawOptions(**{"bootstrap": 0, "starts": near_truth(name), "validation": False, **kw})
    return law_report.run(law, table.data, opts)


@pytest.mark.parametrize("name", list(TRUTH))
def test_noise_free_table_gives_back_the_parameters(name):
    rec = run(name, synthetic(name)).record
    for k, v in TRUTH[name].items():
        assert rec.params[k] == pytest.approx(v, rel=5e-3), k
    if name == "broken_power":  # gamma = 0.03 bends the exponent by 0.17 over the range: not Chinchilla
        assert rec.extra["comparison"]["p_value"] < 1e-3 and rec.extra["comparison"]["delta_aic"] < -10


@pytest.mark.parametrize("name", list(TRUTH))
def test_with_one_percent_noise_the_truth_is_inside_the_intervals(name):
    # One draw per law at the 99% level: a check that intervals are of the right size, not a
    # coverage claim (that needs a simulation over many tables).
    rec = run(name, synthetic(name, noise=0.01, seed=2), bootstrap=40, grid_starts=2, level=0.99).record
    for k, v in TRUTH[name].items():
        lo, hi = rec.intervals[k]
        assert lo <= v <= hi, (k, lo, v, hi)
    assert rec.extra["resampling"]["failed"] == 0


def test_chinchilla_law_equals_approach3_huber_fit():
    df = synthetic("chinchilla", 40, 0.01, seed=4)
    grid = approach3.StartGrid(alpha=(0.3, 0.6), beta=(0.3,), e=(0.5,), a=(5.0, 7.0), b=(7.0,))
    a3 = approach3.fit_huber(df.params, df.tokens, df.loss, grid=grid)
    # The registry's order is (E, A, B, alpha, beta): the same starts, permuted.
    starts = grid.points()[:, [2, 0, 1, 3, 4]]
    law = registry.get("chinchilla")
    got = law_fit.fit_law(law, law_table(df, LawColumns(), law.inputs).data, starts=starts).values()
    want = a3.params
    for k in ("E", "A", "B", "alpha", "beta"):
        assert got[k] == pytest.approx(getattr(want, k), rel=1e-6), k


def test_fix_freezes_parameters_and_frees_the_rest():
    fixed = {k: TRUTH["data_constrained"][k] for k in ("E", "A", "B", "alpha")}
    df = synthetic("data_constrained")
    starts = ((np.log(5.0), np.log(2.0)), (np.log(40.0), np.log(20.0)))
    rec = run("data_constrained", df, fix=fixed, starts=starts).record
    assert {k: rec.params[k] for k in fixed} == pytest.approx(fixed, rel=1e-12)
    assert rec.params["R_D_star"] == pytest.approx(15.4, rel=5e-3)
    assert rec.params["R_N_star"] == pytest.approx(5.3, rel=5e-3)
    assert rec.extra["fixed"] == sorted(fixed)


def test_cli_law_writes_a_section_and_predictions(tmp_path, capsys):
    synthetic("overtraining", 40, 0.01).to_csv(tmp_path / "runs.csv", index=False)
    synthetic("overtraining", 4, seed=9).drop(columns="loss").to_csv(tmp_path / "big.csv", index=False)
    out = tmp_path / "out"
    assert fit_cli.main(["--results", str(tmp_path / "runs.csv"), "--law", "overtraining", "--out", str(out),
                         "--bootstrap", "20", "--predict", str(tmp_path / "big.csv"),
                         "--fix", "E=1.7,eta=0.17", "--figures"]) == 0  # 16 starts over (a, b): one phase, one compile
    fits = json.loads((out / "fits.json").read_text())
    sec = fits["overtraining"]
    assert set(fits) == {"overtraining"} and sec["extra"]["law"] == "overtraining"
    assert {"E", "a", "b", "eta", "M_opt"} <= set(sec) and "a" in sec["intervals"]
    assert sec["E"] == 1.7 and "E" not in sec["intervals"] and sec["extra"]["fixed"] == ["E", "eta"]
    checks = {c["name"].split(":")[0].split(" (")[0]: c for c in sec["extra"]["diagnostics"]}
    assert set(checks) == {"residuals vs log N", "residuals vs log D", "residuals vs log M = D/N",
                           "residuals normal", "leave-one-out predictions within noise",
                           "rolling origin predictions within noise"}
    loo, roll = checks["leave-one-out predictions within noise"], checks["rolling origin predictions within noise"]
    assert loo["predicted"] == 40 and len(loo["rows"]) == 40 and loo["holds"] is not None  # every row of 40
    assert roll["predicted"] >= 15 and len(roll["cuts"]) >= 3 and roll["holds"] is not None
    assert "20 resampled fits" in loo["summary"] and "leave-one-out predictions within noise" in capsys.readouterr().out
    assert (out / "figures" / "overtraining_loss_vs_multiplier.png").exists()
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["params", "tokens", "unique_tokens", "predicted_loss", "predicted_low",
                                  "predicted_high"]
    assert np.all(pred.predicted_low <= pred.predicted_loss) and np.all(pred.predicted_loss <= pred.predicted_high)


def test_rolling_origin_cuts_keep_budgets_whole_and_cut_dense_scales_at_ranks():
    from analysis.laws import law_validation
    rng = np.random.default_rng(0)
    budgets = np.repeat(np.log(np.geomspace(1e17, 1e21, 9)), 10) + rng.uniform(-0.02, 0.02, 90)
    blocks = law_validation.roll_blocks(budgets, need=6)
    assert [len(fitted) for fitted, _ in blocks] == [40, 50, 60, 70, 80]  # 0.5 x 90 = 45 moves back to 40
    for fitted, predicted in blocks:
        assert budgets[fitted].max() < budgets[predicted].min() - 1.0  # a budget never straddles a cut
    dense = np.log(np.arange(1, 201, dtype=float))  # points along a curve: gaps below TIE_LN from row 20
    assert [len(f) for f, _ in law_validation.roll_blocks(dense, need=6)] == [100, 120, 140, 160, 180]
    rows = law_validation.loo_rows(dense)
    assert len(rows) == law_validation.MAX_LOO and rows[0] == 0 and rows[-1] == 199


def test_stat_tests_agree_with_scipy_stats():
    """The diagnostics' tests without scipy.stats (analysis.laws.stat_tests): scipy's numbers, ties included."""
    import scipy.stats
    from analysis.laws import stat_tests
    rng = np.random.default_rng(0)
    for n in (8, 40, 300):
        x = rng.choice(np.log([1e8, 1e9, 1e10]), n)  # ties, as a column of unique-token limits has
        y = 0.01 * rng.standard_t(3, n) + 0.002 * x
        ref = scipy.stats.spearmanr(x, y)
        assert np.allclose(stat_tests.spearman(x, y), (ref.statistic, ref.pvalue), rtol=1e-10, atol=0)
        assert np.isclose(stat_tests.normal_test(y), scipy.stats.normaltest(y).pvalue, rtol=1e-10, atol=0)
    assert np.isnan(stat_tests.spearman(np.ones(5), np.arange(5.0))[1])
    assert np.isclose(stat_tests.norm_isf(0.05 / 80), scipy.stats.norm.isf(0.05 / 80), rtol=1e-14)
    assert np.isclose(stat_tests.norm_pdf(0.7), scipy.stats.norm.pdf(0.7), rtol=1e-14)
    assert np.isclose(stat_tests.chi2_sf(2.19, 1), scipy.stats.chi2.sf(2.19, 1), rtol=1e-14)


@pytest.mark.parametrize("flags, message", [
    (["--law", "nope"], "--law 'nope': choose one of"),
    (["--law", "data_constrained", "--unique-col", "U"], "--unique-col 'U': no such column"),
    (["--law", "chinchilla", "--fix", "gamma=1"], "--fix 'gamma=1': no parameter of that name"),
    (["--law", "chinchilla", "--fix", "E=-1"], "E must be positive"),
    (["--law", "overtraining", "--rows", "3"], "needs at least 6 rows, the table has 3"),
    (["--law", "annealing"], "none of run_id, run found; name it with --run-col"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, flags, message):
    rows = int(flags[flags.index("--rows") + 1]) if "--rows" in flags else 20
    flags = [f for i, f in enumerate(flags) if "--rows" not in flags[max(0, i - 1):i + 1]]
    synthetic("chinchilla", rows).to_csv(tmp_path / "runs.csv", index=False)
    assert fit_cli.main(["--results", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


ANNEAL = dict(L0=2.0, A=0.6, alpha=0.5, C=0.3)


def anneal_curves(kinds, steps: int = 1000, every: int = 10, noise: float = 0.0, seed: int = 0,
                  decay: float = 0.999) -> pd.DataFrame:
    """Curves with the lr at every step and the loss every `every` steps (as an eval would log it):
    100 warmup steps, then constant, cosine to 0, or WSD (last 20% linear to 0)."""
    from analysis.laws import schedule
    rng = np.random.default_rng(seed)
    step = np.arange(1, steps + 1, dtype=float)
    warm = np.minimum(1.0, step / 100)
    shape = {"constant": np.ones(steps), "cosine": 0.5 * (1 + np.cos(np.pi * step / steps)),
             "wsd": np.clip((steps - step) / (0.2 * steps), 0, 1)}
    frames = []
    for kind in kinds:
        lr = 1e-3 * warm * shape[kind]
        s1, s2 = schedule.areas(step, lr, decay)
        loss = (ANNEAL["L0"] + ANNEAL["A"] * s1 ** -ANNEAL["alpha"] - ANNEAL["C"] * s2) \
            * np.exp(noise * rng.standard_normal(steps))
        frames.append(pd.DataFrame({"run_id": kind, "step": step, "lr": lr,
                                    "loss": np.where(step % every == 0, loss, np.nan)}))
    return pd.concat(frames, ignore_index=True)


def test_annealing_law_fitted_on_constant_and_cosine_predicts_wsd():
    law = registry.get("annealing")
    table = law_table(anneal_curves(["constant", "cosine"]), LawColumns(), law.inputs)
    starts = ((0.5, -0.8, 0.4, -1.0), (0.9, 0.0, 0.7, -1.5))
    res = law_report.run(law, table.data, law_report.LawOptions(bootstrap=0, starts=starts))
    for k, v in ANNEAL.items():
        assert res.record.params[k] == pytest.approx(v, rel=5e-3), k
    wsd = anneal_curves(["wsd"])
    target = law_table(wsd.drop(columns="loss"), LawColumns(), law.inputs, with_loss=False)
    pred = law_report.predictions(res, target.frame, target.data, 0.95)
    assert pred.predicted_loss.iloc[-1] == pytest.approx(wsd.loss.iloc[-1], rel=1e-3)


def test_annealing_decay_profiled_on_the_fitted_curves_and_kept_in_the_predictions():
    """Curves drawn with lambda 0.995: the profile picks it from constant and cosine alone, records it,
    and the WSD prediction's interval holds the point predictions at every kept lambda."""
    from analysis.laws import annealing_decay
    law, cols = registry.get("annealing"), LawColumns()
    starts = ((0.5, -0.8, 0.4, -1.0), (0.9, 0.0, 0.7, -1.5))
    options = law_report.LawOptions(bootstrap=0, starts=starts, validation=False)
    af = annealing_decay.fit(law, anneal_curves(["constant", "cosine"], decay=0.995), cols, options)
    assert af.choice.value == 0.995 and 0.995 in af.choice.kept and 0.9995 not in af.choice.kept
    assert af.result.record.extra["decay"]["lambda"] == 0.995 and len(af.choice.objective) == len(annealing_decay.DECAYS)
    wsd = anneal_curves(["wsd"], decay=0.995)
    pred = annealing_decay.predict(af, wsd.drop(columns="loss"), cols, 0.95)
    assert pred.predicted_loss.iloc[-1] == pytest.approx(wsd.loss.iloc[-1], rel=1e-3)
    # Each interval is widened to hold every kept lambda's point prediction (no resamples: their range).
    frame = pd.DataFrame({"predicted_loss": [2.0, 2.0], "predicted_low": [1.9, np.nan], "predicted_high": [2.1, np.nan]})
    wide = annealing_decay.widen(frame, {0.99: np.array([1.8, 2.05]), 0.998: np.array([2.2, 1.95])})
    assert wide.predicted_low.tolist() == [1.8, 1.95] and wide.predicted_high.tolist() == [2.2, 2.05]
    fixed = annealing_decay.fit(law, anneal_curves(["constant", "cosine"]), cols, options, fixed=0.999)
    assert fixed.choice.kept == (0.999,) and fixed.result.record.extra["decay"]["rule"] == "fixed (--decay)"
    for bad in ("x", "1.5"):
        with pytest.raises(InputError, match="--decay"):
            annealing_decay.parse(bad)


def test_annealing_with_one_percent_noise_truth_inside_intervals():
    law = registry.get("annealing")
    table = law_table(anneal_curves(["constant", "cosine"], noise=0.01, seed=3), LawColumns(), law.inputs)
    starts = ((0.5, -0.8, 0.4, -1.0), (0.9, 0.0, 0.7, -1.5))
    rec = law_report.run(law, table.data, law_report.LawOptions(bootstrap=40, grid_starts=2, level=0.99,
                                                                starts=starts)).record
    for k, v in ANNEAL.items():
        lo, hi = rec.intervals[k]
        assert lo <= v <= hi, (k, lo, v, hi)


def test_non_positive_value_is_one_line_and_exit_2(tmp_path, capsys):
    df = synthetic("chinchilla", 20)
    df.loc[2, "loss"] = -1.0
    df.to_csv(tmp_path / "runs.csv", index=False)
    assert fit_cli.main(["--results", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "o"), "--law", "chinchilla"]) == 2
    err = capsys.readouterr().err.strip()
    assert "column 'loss': value -1.0 in row 3 is NaN, infinite or not positive" in err and "\n" not in err
