"""analysis.calibrate: simulated studies of a table's own design, end to end on a tiny one."""
import json

import numpy as np
import pytest
import scipy.stats

from analysis import calibrate
from analysis.laws import allocation
from analysis.tables import conventions, tables
from analysis.uncertainty import calibrate as cal
from analysis.uncertainty.synthetic import isoflop_table

LAW = allocation.LawParams(E=0.82, A=20.1, B=115.0, alpha=0.368, beta=0.380)  # isoflop_cpu's scale
SMALL = ["--grid-alpha", "0.5", "--grid-beta", "0.5", "--grid-e", "0,0.5", "--grid-a", "3,6", "--grid-b", "5,8"]


@pytest.fixture()
def table(tmp_path):
    """3 budgets x 5 sizes, 2 seeds at the 2 central sizes: 21 runs."""
    isoflop_table(tmp_path / "results.csv", LAW, budgets=(1.5e11, 6e11, 2.4e12), per_budget=5, span_dex=0.4,
                  sigma_nats=0.022, seeds=2, replicated=2, seed=3)
    return tmp_path / "results.csv"


def test_calibration_runs_end_to_end_on_a_tiny_design(table, tmp_path, capsys):
    out = tmp_path / "cal"
    assert calibrate.main(["--results", str(table), "--out", str(out), "--studies", "8", "--resamples", "20",
                           "--scenarios", "correct", *SMALL]) == 0
    rec = json.loads((out / "calibration.json").read_text())
    assert rec["design"]["runs"] == 21 and rec["design"]["seed_residuals"] == 12
    assert set(rec["scenarios"]) == {"correct"}  # the other scenarios' truths: test_truth_of_each_scenario
    sc = rec["scenarios"]["correct"]
    assert sc["studies"] == 8 and sc["fitted"] + sc["failed"] == 8 and sc["seconds_per_study"] > 0
    for key, _ in cal.INTERVALS:
        v = sc["intervals"][key]
        assert {"coverage", "coverage_error", "width_ratio", "mean_width", "spread_width", "bias"} <= set(v)
        assert v["coverage"] >= 0.5, (key, v)  # the correct law: not absurd, even with 8 studies of 20 resamples
    assert "parabola and Akima vertices agree" in sc["checks"]
    assert all(0 <= c["failure_rate"] <= 1 for c in sc["checks"].values() if c["n"])
    printed = capsys.readouterr().out
    assert "approach3_E" in printed and "in 8 simulated studies of this design" in printed


def test_truth_of_each_scenario():
    isoflop = (1.5e11, 4.8e12)
    runs = tables.Runs(np.array(["a", "b", "c", "d"]), np.array([1e4, 1e5, 1e4, 1e5]),
                       np.array([2.5e6, 2.5e5, 8e7, 8e6]),
                       np.array([1.5e11, 1.5e11, 4.8e12, 4.8e12]), np.ones(4), np.repeat(isoflop, 2), None)
    d = cal.design(runs, cal.CalibrationOptions(sigma=0.02), LAW, "test")
    a_eq4 = allocation.exponents(LAW)[0]
    correct, off = cal.true_values(d, "correct"), cal.true_values(d, "offcentre")
    assert correct["approach3_a"] == pytest.approx(a_eq4, abs=1e-6)
    n_opt = allocation.optimal_allocation(LAW, 4.8e13).N_opt[0]
    assert correct["approach3_N_opt"] == pytest.approx(np.log10(n_opt), abs=1e-6)
    assert off["approach3_N_opt"] - correct["approach3_N_opt"] == pytest.approx(cal.OFFCENTRE_DEX, abs=1e-6)
    # the curved law equals the law at the design's centre, and its local N exponent drifts
    curved, _ = cal.scenario_law(d, "curved")
    centre = np.sqrt(1e4 * 1e5)
    assert curved(centre, 1e6) == pytest.approx(LAW.loss(centre, 1e6), rel=1e-12)
    slope = lambda n: -np.log((curved(n * 1.001, 1e30) - LAW.E) / (curved(n, 1e30) - LAW.E)) / np.log(1.001)
    assert slope(1e4) == pytest.approx(LAW.alpha - cal.CURVE_DALPHA, abs=1e-3)
    assert slope(1e5) == pytest.approx(LAW.alpha + cal.CURVE_DALPHA, abs=1e-3)


def test_heavy_noise_has_the_measured_scale():
    runs = tables.Runs(np.array(["a", "b"]), np.array([1e4, 1e5]), np.array([1e6, 1e6]), np.array([6e10, 6e11]),
                       np.ones(2), np.array([6e10, 6e11]), None)
    d = cal.design(runs, cal.CalibrationOptions(sigma=0.02, eval_offset_sd=0.0), LAW, "test")
    draws = cal.draw_losses(d, "heavy", 20000, np.random.default_rng(0)) - LAW.loss(runs.N, runs.D)
    assert np.std(draws) == pytest.approx(0.02, rel=0.03)
    assert scipy.stats.kurtosis(draws.ravel()) > 3  # the mixture's tails (no residuals in this table)


def test_sentence_names_each_interval():
    rec = {"settings": {"level": 0.95}, "design": {"target": 5.76e23},
           "scenarios": {"correct": {"fitted": 200, "intervals": {
               "approach3_a": {"coverage": 0.94}, "approach3_E": {"coverage": 0.93},
               "approach3_loss": {"coverage": 0.92}}}}}
    assert cal.calibration_sentence(rec) == ("95% intervals: Approach 3 a 94%, E 93%, loss at 5.76e23 92% "
                                             "in 200 simulated studies of this design")


@pytest.mark.parametrize("flags, message", [
    (["--studies", "1"], "--studies"),
    (["--scenarios", "correct,bent"], "--scenarios bent"),
    (["--heavy", "tails"], "--heavy"),
    (["--fits", "/nonexistent/fits.json"], "--fits"),
])
def test_bad_input_is_one_line_exit_2(table, tmp_path, capsys, flags, message):
    assert _exit_code(["--results", str(table), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_table_without_noise_is_one_line_exit_2(tmp_path, capsys):
    isoflop_table(tmp_path / "r.csv", LAW, budgets=(1.5e11, 6e11, 2.4e12), per_budget=5, span_dex=0.4)
    assert _exit_code(["--results", str(tmp_path / "r.csv"), "--out", str(tmp_path / "o"), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sigma" in err


def _exit_code(argv) -> int:
    """A bad flag exits from the parser (plumbing.cli.Parser), a bad file returns 2 from main."""
    try:
        return calibrate.main(argv)
    except SystemExit as e:
        return e.code


def test_truth_from_fits_json_and_every_flag_documented(tmp_path):
    fits = {"approach3": {"approach": "approach3", "E": 0.9, "A": 30.0, "B": 200.0, "alpha": 0.4, "beta": 0.41,
                          "intervals": {}}}
    (tmp_path / "fits.json").write_text(json.dumps(fits))
    assert calibrate.law_from_fits(tmp_path / "fits.json") == allocation.LawParams(0.9, 30.0, 200.0, 0.4, 0.41)
    (tmp_path / "other.json").write_text(json.dumps({"approach2": {"approach": "approach2", "a": 0.5}}))
    with pytest.raises(calibrate.InputError, match="no Approach 3 law"):
        calibrate.law_from_fits(tmp_path / "other.json")
    helps = [a.help for a in calibrate.build_parser()._actions if a.option_strings and a.dest != "help"]
    assert all(helps)


def test_truth_in_each_estimates_own_flop_count():
    """FLOPs per token not proportional to N (an attention term): a's truth follows the table's own
    count, as Approach 3's reported a does, and Approach 3's projection stays eq. 4's (C = k N D)."""
    n = np.array([1e4, 3e4, 1e5] * 2)
    c = np.repeat([1.5e11, 4.8e12], 3)
    d_tok = c / (6 * n + 4e5)
    runs = tables.Runs(np.array(list("abcdef")), n, d_tok, c, np.ones(6), c, None)
    d = cal.design(runs, cal.CalibrationOptions(sigma=0.02), LAW, "test")
    truth = cal.true_values(d, "correct")
    assert truth["approach3_a"] == pytest.approx(conventions.allocation_exponents(LAW, runs)[0], abs=1e-4)
    assert truth["approach3_a"] != pytest.approx(allocation.exponents(LAW)[0], abs=1e-3)
    k = allocation.flops_per_param_token(c, n, d_tok)
    assert truth["approach3_N_opt"] == pytest.approx(np.log10(allocation.optimal_allocation(LAW, d.target, k).N_opt[0]), abs=1e-6)
