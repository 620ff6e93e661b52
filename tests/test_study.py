"""experiments.study: one command from a study config to a report, killed and resumed.

The end-to-end test runs the real planner and trainer on the isoflop_ci preset (its grid narrowed:
SMALL_GRID); the others drive the study with test_launch's small trainer (it sleeps instead of
computing) or check input errors.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_launch import REPO, log, run_json, wait_for

RUN_ENV = {**os.environ, "PYTHONPATH": str(REPO)}
# The suite compiles at LLVM -O0 (conftest.py): half the compile time, but a step ~4x slower. The CI
# study's trainers ran 190-670 steps each (222-568 since SMALL_GRID), where -O1 costs least: this test
# alone, cold cache, back to back on 2 quiet cores: 244 and 250 CPU s at -O0, 220 at -O1, 241 at -O2.
RUN_ENV["XLA_FLAGS"] = RUN_ENV.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0",
                                                            "--xla_backend_optimization_level=1")


# The preset's grid made smaller for this test, which checks the study's plumbing, not its fit: sizes
# within 0.07 decades of the prior (the preset: 0.1) keep 3 per budget, 6 runs of 6 shapes and 2,286
# steps in all, against 9 runs of 7 shapes and 3,512 steps. On the suite's cold compilation cache each
# new shape costs its trainer ~15 CPU s of compiling, each trainer ~7 CPU s to start. Smaller budgets
# (1e10 and 2e10, 4 shapes) were tried: their models are so data-limited that Approach 3's fit went
# degenerate (A = 0 or inf) and no validation run could be planned from it. This grid's fit is finite
# and its N* (2e10) lands on the ladder's 1.02e4, as the preset's does.
SMALL_GRID = ("--config.study.sizes.span=0.07",)


def study_cmd(study: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "experiments.study", "--config=experiments/configs/isoflop_ci.py",
            f"--study={study}", "--workers=2", "--poll-s=0.5", "--probe=off", "--bootstrap=0", *SMALL_GRID, *flags]


def _attempts(study: Path, run_id: str) -> list[str]:
    return [a["outcome"] for a in json.loads((study / "runs" / run_id / "attempts.json").read_text())]


@pytest.mark.slow
def test_isoflop_ci_study_killed_and_rerun_trains_each_run_once_and_reports(tmp_path):
    study = tmp_path / "ci"
    first = subprocess.Popen(study_cmd(study), cwd=REPO, env=RUN_ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (study / "plan.json").exists(), timeout=300, what="the plan")
    specs = json.loads((study / "plan.json").read_text())["runs"]
    ids = [s["run_id"] for s in specs]
    wait_for(lambda: any(sum("train_loss" in m for m in log(study, r, "metrics.jsonl")) >= 2 for r in ids),
             timeout=300, what="a real run to train")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    final = subprocess.run(study_cmd(study), cwd=REPO, env=RUN_ENV, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stdout + final.stderr
    # One progress line per change, each naming the study and its phase; the last one names the report.
    lines = final.stdout.strip().splitlines()
    assert all(line.startswith("study isoflop_ci") for line in lines), lines
    assert any("| train 2/8 | grid:" in x and "ETA" in x for x in lines)
    assert lines[-1].endswith(str(study / "report.html"))
    interrupted = 0
    for s in specs:
        outcomes = _attempts(study, s["run_id"])
        assert outcomes.count("completed") == 1 and outcomes[-1] == "completed", (s["run_id"], outcomes)
        interrupted += outcomes[0] == "interrupted"
        steps = [m["step"] for m in log(study, s["run_id"], "metrics.jsonl") if "train_loss" in m]
        assert steps == sorted(set(steps)) and steps[-1] == s["steps"]  # resumed, never retrained
        assert run_json(study, s["run_id"])["status"] == "completed"
    assert interrupted >= 1  # the killed study's trainers were stopped and later resumed
    rows = list(csv.DictReader(open(study / "results.csv")))
    # The grid, then its one validation run (isoflop_ci: N* at the smallest budget), trained once.
    frozen = json.loads((study / "prediction.json").read_text())
    (val,) = [r["run_id"] for r in frozen["runs"]]
    assert [r["run_id"] for r in rows] == [*ids, val] and {r["status"] for r in rows} == {"completed"}
    assert [r["role"] for r in rows][-1] == "validation" and _attempts(study, val) == ["completed"]
    for r in rows:
        assert abs(float(r["flops_chinchilla"]) / float(r["budget"]) - 1) <= 0.01
    fits = json.loads((study / "fits" / "fits.json").read_text())
    assert "approach3" in fits and "diagnostics" in fits
    assert fits["approach3"]["n_runs"] == len(ids)  # the validation run never enters the grid's fit
    assert fits["prediction_test"]["runs"][0]["run_id"] == val and fits["prediction_test"]["same_fit"]
    # isoflop_ci takes its lr from the recipe's rule, which has no interval (study.hparams would)
    assert fits["lr_sensitivity"]["reason"].startswith("no lr law with an interval: sensitivity not computed")
    md, html = (study / "report.md").read_text(), (study / "report.html").read_text()
    assert md.index("## Prediction test") < md.index("## What was run")  # the report opens with it
    for heading in ("Prediction test", "Calibration on this design", "What was run", "Beside Hoffmann et al. 2022, Table 2",
                    "Diagnostics", "Sensitivity to the lr law", "Figures",
                    "Compute-optimal allocation", "Runs left out"):
        assert heading in md and heading in html
    for rid in ids:
        assert rid in md
    pngs = sorted((study / "figures").glob("*.png"))
    assert len(pngs) >= 2 and html.count("data:image/png;base64,") == len(pngs)
    assert "http://" not in html and "https://" not in html  # opens offline
    # A finished study run again: nothing is retrained and the report is not rebuilt.
    before = {p: p.stat().st_mtime_ns for p in (study / "report.html", study / "fits" / "fits.json",
                                                study / "prediction.json")}
    attempts = {r: _attempts(study, r) for r in [*ids, val]}
    again = subprocess.run(study_cmd(study), cwd=REPO, env=RUN_ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "plan 1/8" not in again.stdout and "fit 4/8" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert {r: _attempts(study, r) for r in [*ids, val]} == attempts


@pytest.mark.parametrize("command, flag", [("experiments.study", "--study"), ("experiments.plan", "--study"),
                                           ("scaling.train", "--workdir")])
def test_missing_config_is_one_line_exit_2(tmp_path, command, flag):
    out = subprocess.run([sys.executable, "-m", command, "--config=no_such.py", f"{flag}={tmp_path / 'x'}",
                          "--config.seed=1"], cwd=REPO, env=RUN_ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "no_such.py" in out.stderr, out.stderr
    assert not (tmp_path / "x").exists()


def _study_in_process(argv: list[str], capsys) -> tuple[int, str]:
    from experiments import study
    try:
        code = study.main(argv)
    except SystemExit as e:  # argparse's error: what the command exits with
        code = e.code
    return code, capsys.readouterr().err


def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    # The first case through the real command; the others through its main() in this process
    # (a process each cost ~6 s).
    monkeypatch.chdir(REPO)
    for i, (flags, needle) in enumerate(((["--workers=0"], "--workers"), (["--targets=1e13,-5"], "--targets"),
                                         (["--bogus"], "--bogus"), (["--config.study.budgets=()"], "study.budgets"),
                                         (["--calibration-scenarios=correct,nope"], "--calibration-scenarios"))):
        argv = ["--config=experiments/configs/isoflop_ci.py", f"--study={tmp_path / 's'}", "--probe=off", *flags]
        if i == 0:
            out = subprocess.run([sys.executable, "-m", "experiments.study", *argv], cwd=REPO, env=RUN_ENV,
                                 capture_output=True, text=True, timeout=300)
            code, err = out.returncode, out.stderr.strip()
        else:
            code, err = _study_in_process(argv, capsys)
            err = err.strip()
        assert code == 2, (flags, err)
        assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, (flags, err)


def test_an_analysis_step_stops_with_one_line_and_its_traceback_in_the_log(tmp_path):
    from analysis.records import InputError
    from experiments import study

    def bad_input():
        raise InputError("results.csv has no loss column")

    def bug():
        raise ZeroDivisionError("oops")
    assert study.run_step(tmp_path, "fit", lambda: print("fine")) is None
    assert study.run_step(tmp_path, "fit", bad_input) == "fit: error: results.csv has no loss column (DIR/logs/fit.log)"
    assert study.run_step(tmp_path, "report", bug) == "report: ZeroDivisionError: oops (traceback in DIR/logs/report.log)"
    assert "fine" in (tmp_path / "logs" / "fit.log").read_text()
    assert "Traceback" in (tmp_path / "logs" / "report.log").read_text()
