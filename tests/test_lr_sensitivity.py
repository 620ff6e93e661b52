"""The headline a's sensitivity to the lr law a study was planned with (issue 20): a synthetic IsoFLOP
table of isoflop_cpu's design, a hand-made hparam_fit.json, and plan.json's `hparams_law` written
the planner's way (experiments.planning.hparams), so a change there shows here."""
import dataclasses
import json
import math

import numpy as np
import pytest

from analysis.diagnostics import lr_sensitivity as ls
from analysis.laws import allocation, fitters, predict
from analysis.output import lr_sensitivity_section, report
from analysis.output.report_render import to_markdown
from analysis.records import Fit
from analysis.tables.tables import Columns
from analysis.uncertainty import synthetic
from experiments.planning.hparams import SECTION_KEY, HparamLaw

LAW = synthetic.cpu_law()  # a = 0.5, profiles 0.088 nats deep 0.4 decades out
SWEEP_N = (1e4, 3e4, 1e5)  # the sweep's lr-swept groups: the law pivots at their geometric mean


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("lr_sens") / "results.csv"
    synthetic.isoflop_table(path, LAW, budgets=synthetic.CPU_BUDGETS, per_budget=9, span_dex=0.4)
    return report.Table.load(str(path), Columns()).runs


def _fits(runs, approaches=("approach2",)) -> fitters.FitResult:
    """fits.json's records as the study's fit would hold them: Approach 2 fitted here, Approach 3 the
    synthetic law itself (the table has no noise: its Huber fit is the law; no 4,500-start grid)."""
    probe = fitters.FitResult({"approach2": Fit("approach2", {})}, runs.convention, {})
    fits = {"approach2": Fit("approach2", {"a": ls.refit(runs, [runs.loss], probe)[0]["approach2"]}, n_runs=len(runs))}
    if "approach3" in approaches:
        p = dataclasses.asdict(LAW)
        fits["approach3"] = Fit("approach3", {**p, "a": allocation.exponents(LAW)[0]}, n_runs=len(runs))
    return fitters.FitResult(fits, runs.convention, {})


def _study(tmp_path, penalty: float, intervals: dict, exponents=None, hparams=True):
    """A study directory: plan.json naming a hparam_fit.json (or planned with the recipe's rule)."""
    fit = {"lr": {"prefactor": 0.006, "exponents": exponents or {"N": -0.42, "D": None}, "intervals": intervals,
                  "penalty_x2": {"mean": penalty * 2, "std": None, "relative_mean": penalty, "n_groups": 3}},
           "batch": None, "groups": [{"N": n, "D": 20 * n, "lr_swept": True} for n in SWEEP_N]}
    law_file = tmp_path / "hparam_fit.json"
    law_file.write_text(json.dumps(fit))
    study = {"recipe": "cpu", "hparams": str(law_file) if hparams else ""}
    if hparams:
        study[SECTION_KEY] = HparamLaw.from_file(str(law_file)).to_json()  # the planner's record
    (tmp_path / "plan.json").write_text(json.dumps({"study": study, "runs": []}))
    return tmp_path


def test_zero_penalty_leaves_a_unchanged(runs, tmp_path):
    fits = _fits(runs)
    sens = ls.for_study(str(_study(tmp_path, 0.0, {"N": [-0.7, -0.15], "D": None})), runs, fits)
    assert not sens.reason and [(e.exponent, e.side) for e in sens.ends] == [("N", "low"), ("N", "high")]
    for e in sens.ends:
        assert e.max_rise == 0 and e.a["approach2"] == pytest.approx(fits.fits["approach2"].params["a"], abs=1e-9)
    pivot = math.exp(np.mean(np.log(SWEEP_N)))
    assert sens.law.pivot["N"] == pytest.approx(pivot) and "sweep" in sens.law.pivot_source
    # the largest lr error: the run farthest from the pivot, by the end farther from the estimate
    lo = sens.ends[0]
    assert lo.max_factor == pytest.approx(10 ** (0.28 * np.abs(np.log10(runs.N / pivot)).max()))


def test_n_exponent_error_lowers_a_at_both_ends(runs, tmp_path):
    """The rise p (delta log10(N / N_pivot) / log10 2)^2 L is a bowl centred on the pivot for either
    sign of delta: each budget's optimum moves toward the pivot, so a falls at both ends, to first
    order to a k / (k + c), k the profiles' curvature (nats per decade^2), c = p L delta^2 / log10(2)^2."""
    fits = _fits(runs, ls.APPROACHES)
    p, lo, hi = 0.02, -0.70, -0.15
    sens = ls.for_study(str(_study(tmp_path, p, {"N": [lo, hi], "D": None})), runs, fits)
    k = 0.088 / 0.4**2
    for e in sens.ends:
        c = p * float(np.mean(runs.loss)) * e.delta**2 / math.log10(2) ** 2
        for key in ls.APPROACHES:
            a0 = fits.fits[key].params["a"]
            assert e.a[key] < a0 - 0.01, (e, key)
            assert e.a[key] == pytest.approx(a0 * k / (k + c), abs=0.006)
    lines = sens.lines()
    assert lines[0].startswith("Approach 2: a = 0.500; with the lr law's N exponent at -0.700 / -0.150: 0.4")
    assert lines[1].startswith("Approach 3: a = 0.500")


def test_d_exponent_error_raises_a(runs, tmp_path):
    """The D exponent's bowl sits at D = D_pivot, i.e. N = C / (6 D_pivot), moving with C at slope 1:
    it pulls each optimum along a line steeper than a = 0.5, so a rises."""
    fits = _fits(runs)
    sens = ls.for_study(str(_study(tmp_path, 0.02, {"N": None, "D": [-0.2, 0.2]}, {"N": -0.42, "D": 0.0})),
                        runs, fits)
    assert [e.exponent for e in sens.ends] == ["D", "D"]
    assert all(e.a["approach2"] > fits.fits["approach2"].params["a"] + 0.005 for e in sens.ends)


def test_no_law_says_not_computed_and_fits_json_keeps_its_fits(runs, tmp_path):
    path = str(tmp_path / "fits" / "fits.json")
    fits = _fits(runs).write(path)
    before = predict.fits_hash(json.load(open(path)))
    sens = ls.for_study(str(_study(tmp_path, 0.02, {"N": [-0.7, -0.15], "D": None}, hparams=False)), runs, fits)
    assert sens.reason.startswith("no lr law with an interval: sensitivity not computed")
    assert not sens.ends
    body = json.load(open(path))
    assert body[ls.KEY]["reason"] == sens.reason
    assert set(fitters.FitResult.from_json(body).fits) == {"approach2"}  # not read as a fit
    assert predict.fits_hash(body) == before  # the validation's frozen fit hash ignores it
    assert ls.LrSensitivity.from_json(body[ls.KEY]) == sens
    md = to_markdown("t", [lr_sensitivity_section.section(sens)], str(tmp_path))
    assert "## Sensitivity to the lr law" in md and "no lr law with an interval: sensitivity not computed" in md


def test_section_and_record_round_trip(runs, tmp_path):
    fits = _fits(runs).write(str(tmp_path / "fits.json"))
    sens = ls.for_study(str(_study(tmp_path, 0.01, {"N": [-0.6, -0.2], "D": None})), runs, fits)
    assert ls.LrSensitivity.from_json(json.load(open(tmp_path / "fits.json"))[ls.KEY]) == sens
    md = to_markdown("t", [lr_sensitivity_section.section(sens)], str(tmp_path))
    assert "only ever raises losses" in md and "1.00%" in md and "N: -0.600 (estimate -0.420)" in md


def test_changed_or_missing_law_file_is_not_used(runs, tmp_path):
    study = _study(tmp_path, 0.02, {"N": [-0.7, -0.15], "D": None})
    (study / "hparam_fit.json").write_text(json.dumps({"lr": None}))
    assert "changed since the plan" in ls.read_law(str(study), runs)
    (study / "hparam_fit.json").unlink()
    assert "cannot be read" in ls.read_law(str(study), runs)
    no_interval = _study(tmp_path, 0.02, {"N": None, "D": None})
    assert ls.read_law(str(no_interval), runs).startswith("no lr law with an interval")
