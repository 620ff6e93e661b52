"""The study tests its own prediction (issue 18): validation runs planned from a given fit on the CI
preset (no training), the frozen prediction reused on rerun, the runs kept out of the grid's fit, and
the report's "Prediction test" from a small hand-made table."""
import json
import math

import pandas as pd
import pytest

from analysis.laws import allocation, predict
from analysis.output import prediction_test, report
from analysis.output.report_render import to_markdown
from analysis.tables.tables import Columns
from analysis.uncertainty.synthetic import isoflop_table
from experiments import plan, study_dir as st, study_validation as sv
from experiments.planning import grid, validation
from experiments.planning.errors import StudyError
from experiments.planning.study import Study
from experiments.spec import RunSpec
from scaling import validate

CI = "experiments/configs/isoflop_ci.py"
# A law whose N*(2e10) = 1.72e4, the CI preset's prior (alpha = beta: a = 0.5).
LAW = allocation.LawParams(E=3.0, A=100.0, B=233.0, alpha=0.35, beta=0.35)


def fits_body(law=LAW):
    return {"approach3": {"approach": "approach3", **{k: getattr(law, k) for k in predict.LAW_KEYS},
                          "extra": {"flops_per_param_token": 6.0}},
            "diagnostics": {"seed_noise": [{"pooled_std": None, "dof": 0, "median_run_se": 0.01}]}}


@pytest.fixture(scope="module")
def ci():
    config = plan.load_file_config(CI)
    return config, Study.from_config(config.study)


def _plan(ci, v=None):
    config, s = ci
    v = v or s.validation
    pr = predict.Predictor.from_fits(fits_body())
    largest = max(pr.allocation(C).N.mid for C in v.targets(s.budgets))
    rungs = validation.ladder_for(s.recipe, validate.model_config(config), s, largest, v.spread if v.sizes > 1 else 0)
    return pr, rungs, validation.plan_validation(pr, rungs, s, v, "cfg.py", {}, 10**9)


def test_ci_plans_one_run_at_the_predicted_optimum_with_the_grids_rules(ci):
    config, s = ci
    pr, rungs, vp = _plan(ci)
    assert s.validation.targets(s.budgets) == (2e10,)
    (run,), (p,) = vp.runs, vp.predictions
    C = run.budget
    n_star = pr.allocation(C).N.mid
    assert run.role == "validation" and run.run_id.startswith("val-") and p.run_id == run.run_id
    assert run.params == validation.nearest_rung(rungs, n_star).params.total
    assert abs(p.offset_dex) <= 0.1  # the nearest rung: rungs are <= 0.15 decades apart
    same = grid.solve(C, validation.nearest_rung(rungs, n_star), s, 10**9)  # the grid's own rules
    assert (run.steps, run.global_batch, run.lr, run.tokens) == (same.steps, same.global_batch, same.peak_lr,
                                                                 same.steps * same.tokens_per_step)
    assert abs(run.flops / C - 1) <= 0.01
    assert p.loss.loss.mid == pytest.approx(float(LAW.loss(run.params, run.tokens)))
    assert p.loss.loss.lo < p.loss.loss.mid < p.loss.loss.hi  # eval SE as the run noise


def test_three_sizes_straddle_n_star(ci):
    _, _, vp = _plan(ci, validation.Validation(decades=(0.3,), sizes=3, spread=0.3))
    offsets = sorted(p.offset_dex for p in vp.predictions)
    assert len(offsets) == 3 and offsets[0] < -0.2 and abs(offsets[1]) < 0.1 and offsets[2] > 0.2


def test_bad_validation_fields_are_one_line_errors():
    import ml_collections
    for field, value in (("sizes", 2), ("decades", (-1.0,)), ("approach", "approach2")):
        cfg = ml_collections.ConfigDict({"decades": (0.5,), field: value})
        with pytest.raises(StudyError, match=f"study.validation.{field}"):
            validation.Validation.from_config(cfg)
    assert not validation.Validation.from_config(ml_collections.ConfigDict({"decades": ()})).enabled


def test_prediction_is_frozen_and_reused_and_its_runs_join_the_plan_once(tmp_path):
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "fits.json").write_text(json.dumps(fits_body()))
    grid_run = RunSpec("C2e+10-N1.7e+04", 2e10, "chinchilla", 2e10, 17000, 9000, 10**6, 100, 8, 64, 1e-3, 10,
                       "cosine", "cfg.py")
    section = {"name": "x"}
    (tmp_path / "plan.json").write_text(json.dumps(st.Plan({**section, "hash": st.plan_hash(section, [grid_run])},
                                                           (grid_run,)).to_json()))
    first = sv.freeze(tmp_path, CI, [])
    assert first["fits_hash"] == predict.fits_hash(fits_body()) and len(first["runs"]) == len(first["specs"]) == 1
    # A refit (another law) cannot move the goalposts: the frozen file is reused as it is.
    (tmp_path / "fits" / "fits.json").write_text(json.dumps(fits_body(allocation.LawParams(3.1, 90, 250, 0.3, 0.3))))
    assert sv.freeze(tmp_path, CI, []) == first
    assert sv.add_to_plan(tmp_path, first) == 1 and sv.add_to_plan(tmp_path, first) == 0
    p = st.load_plan(tmp_path)
    assert [r.role for r in p.runs] == ["isoflop", "validation"] and p.section["hash"] == p.hash
    assert st.spec_hash(p.runs[0]) == st.spec_hash(grid_run)  # the grid's specs are untouched


def test_validation_runs_never_enter_the_grids_fit(tmp_path):
    extra = [{"run_id": "val-x", "budget": 1e21, "params": 1e9, "non_embedding_params": 9e8, "tokens": 2e10,
              "flops_6n": 1.2e20, "final_eval_loss": 2.0, "status": "completed", "role": "validation", "seed": 0}]
    isoflop_table(tmp_path / "r.csv", LAW, budgets=(1e17, 1e18, 1e19), per_budget=5, extra_rows=extra)
    table = report.Table.load(str(tmp_path / "r.csv"), Columns())
    assert "val-x" not in set(table.runs.run_id) and len(table.runs) == 15
    assert any("validation 1" in n for n in table.runs.notes)


def frozen_record(sizes=(0.9e5, 1.5e5, 2.5e5)):
    runs = [{"run_id": f"val-{n:.3g}", "C": 1e13, "N": n, "D": 1e7, "seed": 0, "offset_dex": math.log10(n / 1.5e5),
             "predicted": [3.00, 2.97, 3.03], "param_sd": 0.01, "noise_sd": 0.01} for n in sizes]
    return {"approach": "approach3", "rule": predict.DEFAULT_RULE, "fits_hash": "abc", "level": 0.95,
            "noise": "seed noise", "resamples": 200, "budgets": [{"C": 1e13, "N": [1.5e5, 1.2e5, 1.9e5]}], "runs": runs}


def test_report_section_from_a_hand_made_table():
    measured = pd.DataFrame({"run_id": ["val-9e+04", "val-1.5e+05", "val-2.5e+05", "C1-N1"],
                             "role": ["validation"] * 3 + ["isoflop"], "status": ["completed"] * 4,
                             "final_eval_loss": [3.02, 3.01, 3.025, 9.0]})
    t = prediction_test.from_rows(frozen_record(), measured, "abc")
    assert t.same_fit and [r.inside for r in t.runs] == [True, True, True]
    assert t.runs[1].error_pct == pytest.approx(100 * 0.01 / 3.0) and t.runs[1].units == pytest.approx(1 / 3)
    (o,) = t.optima
    assert o.best_N == 1.5e5 and o.best_is_predicted and 0.9e5 < o.parabola_N < 2.5e5
    assert t.verdict.startswith("PASS")
    md = to_markdown("r", [prediction_test.section(t)], ".")
    assert "## Prediction test" in md and "PASS" in md and "val-1.5e+05" in md and "cancels" in md
    json.dumps(t.to_json())  # fits.json's prediction_test
    # Outside the interval and a misplaced optimum: MISS, saying by how much.
    worse = measured.assign(final_eval_loss=[2.95, 3.05, 3.04, 9.0])
    miss = prediction_test.from_rows(frozen_record(), worse, "other")
    assert not miss.same_fit and miss.verdict.startswith("MISS") and "NOT the measured best" in miss.verdict
    # Nothing measured yet: pending.
    assert prediction_test.from_rows(frozen_record(), measured.iloc[3:], "abc").verdict.startswith("pending")


def test_figures_mark_validation_rows_from_the_table():
    from analysis.output.figures import ValidationPoints
    df = pd.DataFrame({"role": ["isoflop", "validation", "validation"], "budget": [1e10, 1e11, 1e11],
                       "params": [1e4, 2e4, 3e4], "final_eval_loss": [3.0, 2.9, None]})
    v = ValidationPoints.from_table(df)
    assert list(v.N) == [2e4] and list(v.C) == [1e11] and list(v.loss) == [2.9]  # unmeasured rows are not drawn
    assert ValidationPoints.from_table(df.iloc[:1]) is None


def test_prediction_test_in_fits_json_is_not_read_as_a_fit(tmp_path):
    from analysis.laws.fitters import FitResult
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits_body()))
    measured = pd.DataFrame({"run_id": ["val-1.5e+05"], "role": ["validation"], "status": ["completed"],
                             "final_eval_loss": [3.01]})
    prediction_test.write_into(str(path), prediction_test.from_rows(frozen_record(), measured, "abc"))
    body = json.loads(path.read_text())
    assert body["prediction_test"]["predicted_by"] == "approach3"
    assert set(FitResult.read(path).fits) == {"approach3"}
    assert predict.fits_hash(body) == predict.fits_hash(fits_body())  # the test does not change the fit's hash


def test_preset_defaults():
    from experiments.configs import isoflop_cpu, isoflop_gpu
    cpu = Study.from_config(isoflop_cpu.get_config().study).validation
    gpu = Study.from_config(isoflop_gpu.get_config().study).validation
    assert (cpu.decades, cpu.sizes, cpu.spread, cpu.approach) == ((0.5,), 3, 0.3, "approach3")
    assert (gpu.decades, gpu.sizes) == ((1.0,), 3) and gpu.targets((6e18, 3e20)) == (3e21,)


def test_plan_table_line_says_what_the_validation_will_train():
    v = validation.Validation(decades=(0.5,), sizes=3, seeds=(0, 1))
    line = v.describe((1e11, 1e12), "5m00s")
    assert v.flops((1e11, 1e12)) == pytest.approx(3.162e12 * 6)
    assert "C = 3.16e+12" in line and "6 runs" in line and "1.9e+13 FLOPs" in line and "5m00s" in line
    assert "N* x 10^+-0.3" in line and "approach3" in line


@pytest.mark.parametrize("n_star", [float("inf"), float("nan"), 1e60])
def test_a_degenerate_fits_n_star_is_a_one_line_error_not_a_hang(ci, n_star):
    config, s = ci
    with pytest.raises(StudyError, match="degenerate fit"):
        validation.ladder_for(s.recipe, validate.model_config(config), s, n_star, 0.3)
