"""The study's own calibration: computed once per fit, reused while its inputs hold, shown in the report."""
import json

import pytest

from analysis.laws import approach3, fitters
from analysis.output import calibration_section
from analysis.output.report_render import to_markdown
from analysis.tables import tables
from analysis.uncertainty import calibrate as cal, study_calibration as sc
from analysis.uncertainty.synthetic import isoflop_table
from test_calibrate import LAW

GRID = approach3.StartGrid(alpha=(0.5,), beta=(0.5,), e=(0.0, 0.5), a=(3.0, 6.0), b=(5.0, 8.0))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "results.csv"
    isoflop_table(path, LAW, budgets=(1.5e11, 6e11, 2.4e12), per_budget=5, span_dex=0.4,
                  sigma_nats=0.022, seeds=2, replicated=2, seed=3)
    runs = tables.load_runs(str(path), tables.Columns())
    fits = fitters.fit(runs, fitters.FitOptions(approach="3", bootstrap=0, validation=False, ml=False, grid=GRID))
    return runs, fits


def test_written_once_reused_and_redone_when_its_inputs_change(fitted, tmp_path):
    runs, fits = fitted
    options = cal.CalibrationOptions(studies=2, resamples=10, scenarios=("correct",), validation=False, grid=GRID)
    first = sc.run(str(tmp_path), runs, fits, options)
    assert first.record is not None and not first.reused
    body = json.loads((tmp_path / sc.FILE).read_text())
    assert body["inputs_key"] == sc.inputs_key(runs, sc.law_of(fits), options)
    assert body["scenarios"]["correct"]["studies"] == 2
    again = sc.run(str(tmp_path), runs, fits, options)
    assert again.reused and again.record == first.record
    moved = runs.with_loss(runs.loss + 0.01)  # another table: calibrated again
    assert sc.inputs_key(moved, sc.law_of(fits), options) != body["inputs_key"]


def test_report_section_states_coverage_and_false_alarms(fitted, tmp_path):
    runs, fits = fitted
    options = cal.CalibrationOptions(studies=2, resamples=10, scenarios=("correct",), validation=False, grid=GRID)
    result = sc.run(str(tmp_path), runs, fits, options)
    md = to_markdown("t", [calibration_section.section(result.record)], str(tmp_path))
    assert "in 2 simulated studies of this design" in md and "Approach 3 a" in md
    assert "coverage" in md and "false alarms" in md and "validation refits off" in md


def test_no_law_or_no_intervals_is_said_not_raised(fitted, tmp_path):
    runs, fits = fitted
    no_a3 = fitters.FitResult({}, fits.convention, {})
    options = cal.CalibrationOptions(studies=2, resamples=10, scenarios=("correct",), grid=GRID)
    got = sc.run(str(tmp_path), runs, no_a3, options)
    assert got.record is None and "no Approach 3 law" in got.reason
    md = to_markdown("t", [calibration_section.section(None, "--bootstrap 0")], str(tmp_path))
    assert "Not calibrated: --bootstrap 0." in md


def test_a_coverage_off_the_band_by_less_than_its_error_is_not_called_off():
    flag = calibration_section._flag
    assert flag({"coverage": 0.95, "coverage_error": 0.015, "width_ratio": 1.1}) == "as stated"
    assert "simulation error" in flag({"coverage": 0.905, "coverage_error": 0.021, "width_ratio": 1.16})
    assert flag({"coverage": 0.72, "coverage_error": 0.03, "width_ratio": 1.0}) == "covers less than it says"
    assert flag({"coverage": 1.0, "coverage_error": 0.0, "width_ratio": 2.0}) == "covers more than it says; wider than its spread x1.3"
