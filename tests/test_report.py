"""analysis.report from anyone's tables: every section, the fits beside Hoffmann et al.'s Table 2,
diagnostics rendered generically, figures embedded in one offline HTML file, targets with their cost,
and a study directory's runs left out with their reasons."""
import json
import os
import re

import numpy as np
import pytest

from analysis import report
from analysis.laws import allocation
from analysis.output import report_content
from analysis.uncertainty.synthetic import curves_table, isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)
SMALL = ["--grid-alpha", "0.5", "--grid-beta", "0.5", "--grid-e", "0.5", "--grid-a", "6", "--grid-b", "7"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    isoflop_table(d / "results.csv", LAW, budgets=(1e17, 1e18, 1e19, 1e20), noise=0.002, seed=1)
    curves_table(d / "curves.csv", LAW, np.logspace(7.5, 9, 5), max_flops=1e20, points=40)
    out = d / "out"
    assert report.main(["--results", str(d / "results.csv"), "--curves", str(d / "curves.csv"), "--out", str(out),
                        "--bootstrap", "20", "--targets", "1e21,5.76e23", "--mfu", "0.5", "--peak-flops", "1e15",
                        *SMALL]) == 0
    return out, json.loads((out / "fits" / "fits.json").read_text())


def test_report_has_every_section_and_every_fit_value(built):
    out, fits = built
    md = (out / "report.md").read_text()
    for heading in ("What was run", "Fitted laws", "Beside Hoffmann et al. 2022, Table 2", "Diagnostics", "Figures",
                    "Compute-optimal allocation at the target budgets", "Runs left out"):
        assert f"## {heading}" in md
    for key, f in report_content.approaches(fits).items():
        for name in ("E", "alpha", "beta", "a", "b"):
            if name in f:
                assert report_content.g(f[name]) in md, (key, name)
    # Table 2 as published, beside ours.
    for paper in ("0.50 (0.488, 0.502)", "0.49 (0.462, 0.534)", "0.46 (0.454, 0.455)", "0.54 (0.542, 0.543)", "| 0.73 |"):
        assert paper in md
    a2 = fits["approach2"]
    assert report_content.with_interval(a2["a"], a2["intervals"]["a"]) in md


def test_diagnostics_render_checks_and_every_table(built):
    out, fits = built
    md = (out / "report.md").read_text()
    diag = fits["diagnostics"]
    for c in diag["checks"]:
        assert c["name"] in md
    for name, rows in diag.items():
        if name != "checks" and isinstance(rows, list) and rows:
            assert f"{name.replace('_', ' ')}:" in md
            assert "| " + " | ".join(rows[0]) + " |" in md  # its columns, as a table


def test_targets_cost_and_intervals(built):
    out, fits = built
    md = (out / "report.md").read_text()
    rows = [r for r in md.splitlines() if r.startswith("| 5.76e+23 |")]
    assert len(rows) == 2  # Approach 3 and Approach 2
    cells = rows[0].split(" | ")
    assert cells[1] == f"{5.76e23 / 8.64e19:.3g}"  # PF-days
    assert cells[2] == f"{5.76e23 / 0.5e15 / 3600:.3g}"  # device-hours at 50% of 1 PFLOP/s
    mid, lo, hi = (float(x) for x in re.match(r"(\S+) \[(\S+), (\S+)\]", cells[4]).groups())
    assert lo <= mid <= hi
    n_star = allocation.optimal_allocation(allocation.LawParams(*(fits["approach3"][k] for k in
                                                                 ("E", "A", "B", "alpha", "beta"))), 5.76e23).N_opt[0]
    assert mid == pytest.approx(n_star, rel=1e-3)


def test_html_is_self_contained_with_every_figure(built):
    out, _ = built
    html = (out / "report.html").read_text()
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {"chinchilla_fig2", "chinchilla_fig3", "chinchilla_fig4", "kaplan_fig1"}
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # nothing to fetch: opens offline
    assert "<table>" in html and "Table 2" in html
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "report.html").stat().st_mode & 0o777 == 0o666 & ~umask  # shareable, not mkstemp's 0600


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_study_directory_gives_plan_devices_commit_and_reasons(tmp_path):
    isoflop_table(tmp_path / "results.csv", LAW, budgets=(1e17, 1e18, 1e19), noise=0.002, seed=2)
    import pandas as pd
    df = pd.read_csv(tmp_path / "results.csv")
    study = tmp_path / "study"
    specs = [{"run_id": r.run_id, "budget": r.budget, "flop_convention": "6n", "flops": r.flops_6n, "params": int(r.params),
              "non_embedding_params": int(r.params * 0.9), "tokens": int(r.tokens), "steps": 100, "global_batch": 8,
              "seq_len": 64, "lr": 1e-3, "warmup_steps": 5, "schedule": "cosine", "config_file": "x.py"}
             for r in df.itertuples()]
    _write(study / "plan.json", {"study": {"name": "tiny", "flop_convention": "6n"}, "runs": specs,
                                 "dropped": [{"C": 1e17, "N": 123, "reason": "fewer than study.min_steps steps"}]})
    _write(study / "launched.json", {"launches": [{"time": 1.0}]})
    env = {"device_kind": "TPU v9", "device_platform": "tpu", "device_count": 4, "packages": {"jax": "0.10.2"},
           "python": "3.11", "git": {"commit": "abcdef1234567890", "dirty": False}, "flops_per_token": {"6n": 6e6}}
    for i, s in enumerate(specs):
        status = "diverged" if i == 0 else "failed" if i == 1 else "completed"
        _write(study / "runs" / s["run_id"] / "run.json", {**env, "status": status, "tokens": s["tokens"],
                                                          "tokens_per_s": 1e3, "wall_time_s": 60.0})
    for i, s in enumerate(specs):  # the last run ends 2 h after the first launch (t = 1 s)
        os.utime(study / "runs" / s["run_id"] / "run.json", (1.0 + 3600 * (1 + i / (len(specs) - 1)),) * 2)
    _write(study / "runs" / specs[1]["run_id"] / "attempts.json", [{"outcome": "failed", "exit_code": 1}] * 3)
    (study / "runs" / specs[1]["run_id"] / "train.log").write_text("...\nRuntimeError: out of memory\n")
    from experiments import collect  # the report reads the study's provenance.json, which collect writes
    collect.collect_tables(study)
    df.loc[0, "status"], df.loc[1, "status"] = "diverged", "failed"
    df.to_csv(tmp_path / "results.csv", index=False)
    out = tmp_path / "out"
    assert report.main(["--results", str(tmp_path / "results.csv"), "--out", str(out), "--study", str(study),
                        "--bootstrap", "0", *SMALL]) == 0
    md = (out / "report.md").read_text()
    assert "study tiny" in md and "4 x TPU v9 (tpu)" in md and "abcdef123456" in md and "jax 0.10.2" in md
    assert "diverged: the loss became NaN/Inf" in md
    assert "failed 3 time(s) (exit 1): RuntimeError: out of memory" in md
    assert "fewer than study.min_steps steps" in md
    assert "2.00 h from the first launch to the last run's end" in md  # not the time the report was built
    assert "## Sensitivity to the lr law" in md and "no lr law with an interval: sensitivity not computed" in md
    # measured rate: 6e6 FLOPs/token x 1e3 tokens/s over 4 devices
    assert f"{6e6 * 1e3 / 4:.3g} FLOP/s per device" in md
    power_law_rows = [line for line in md.splitlines() if "2 (power laws)" in line]
    assert power_law_rows and not any("[" in line for line in power_law_rows)  # --bootstrap 0: no interval
    for s in specs:
        assert s["run_id"] in md


@pytest.mark.parametrize("flags, needle", [(["--mfu", "0.5"], "--peak-flops"), (["--targets", "-1"], "--targets"),
                                           (["--study", "/no/such"], "--study"), (["--fits", "/no/such.json"], "--fits")])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, flags, needle):
    isoflop_table(tmp_path / "r.csv", LAW, budgets=(1e17, 1e18), noise=0.0)
    assert report.main(["--results", str(tmp_path / "r.csv"), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_an_estimate_outside_its_interval_is_marked_and_footnoted():
    # Issue 17: a finding, stated in the table and under it, never an exception.
    assert report_content.with_interval(0.5, (0.4, 0.6)) == "0.5 [0.4, 0.6]"
    cell = report_content.with_interval(0.3, (0.4, 0.6))
    assert cell == f"0.3 [0.4, 0.6] {report_content.OUTSIDE}"
    assert report_content.outside_note([["a", "0.5 [0.4, 0.6]"]]) == []
    assert "outside its own interval" in report_content.outside_note([["a", cell]])[0]


def test_fits_json_keeps_the_resampled_laws_that_analysis_predict_reads(built):
    from analysis.laws import predict
    out, fits = built
    draws = fits["approach3"]["extra"]["draws"]
    assert len(draws["alpha"]) >= 15 and fits["approach3"]["extra"]["flops_per_param_token"] > 0
    a = predict.Predictor.from_fits(fits).allocation(1e21)
    md = (out / "report.md").read_text()
    # The same resamples as the report's target table (same table, seed and plan; 7 digits kept).
    assert report_content.with_interval(a.N.mid, (a.N.lo, a.N.hi)) in md


def test_range_of_a_over_parameter_counts_and_conventions_is_said():
    rows = [{"convention": "6n", "name": "6N (total)", "N": "total", "a_approach2": 0.47, "a_approach3": 0.48},
            {"convention": "6n", "name": "6N (total)", "N": "non-embedding", "a_approach2": 0.55, "a_approach3": 0.56}]
    lines = report_content.convention_range({"convention": "6n", "diagnostics": {"conventions": rows}})
    assert len(lines) == 2 and "0.470 (6N (total), N total) to 0.550 (6N (total), N non-embedding)" in lines[0]
    assert report_content.convention_range({"diagnostics": {"conventions": rows[:1]}}) == []
