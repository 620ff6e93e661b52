"""fit -> figures -> report on tables that used to abort a study's last phases (issue 17): a flat
IsoFLOP profile, an estimate outside its own interval, E at its lower bound. Every phase completes
and what is odd is stated (a note, a †, a figure note), never raised."""
import json

import numpy as np
import pandas as pd
import pytest

from analysis.laws import approach3, fitters
from analysis.output import figures, report
from analysis.tables import tables
from analysis.uncertainty import parametric, synthetic

SMALL_GRID = approach3.StartGrid(alpha=(0.5,), beta=(0.5,), e=(0.0,), a=(2.0, 6.0), b=(2.0, 7.0))
OPTIONS = fitters.FitOptions(bootstrap=20, ml=False, grid=SMALL_GRID)
TARGETS = (4.8e13, 5.76e23)


def pipeline(csv, out):
    """The study's last phases as experiments.study runs them: fit, figures, report."""
    table = report.Table.load(str(csv), tables.Columns())
    fit = fitters.fit(table.runs, OPTIONS).write(out / "fits.json")
    ropt = report.ReportOptions(targets=TARGETS, bootstrap=20)
    a2 = report.approach2_projection(table, fit, ropt)
    drawn = figures.draw(table.runs, OPTIONS, str(out / "figures"), None, TARGETS, fit, a2[1])
    md, _ = report.report(table, fit, str(out), str(out / "figures"), ropt, None, [*fit.notes, *drawn.notes], a2)
    return json.loads((out / "fits.json").read_text()), drawn, open(md).read()


def test_a_flat_isoflop_profile(tmp_path):
    df = synthetic.cpu_table(tmp_path / "r.csv", seed=3)
    flat = df.budget == synthetic.CPU_BUDGETS[1]
    rng = np.random.default_rng(0)
    df.loc[flat, "final_eval_loss"] = 1.9 + synthetic.CPU_SIGMA * rng.standard_normal(flat.sum())
    df.to_csv(tmp_path / "r.csv", index=False)
    fits, drawn, md = pipeline(tmp_path / "r.csv", tmp_path)
    assert "approach2" in fits and "approach3" in fits
    row = [m for m in fits["diagnostics"]["minima"] if m["C"] == synthetic.CPU_BUDGETS[1]][0]
    assert not row["used"]  # at the edge or non-convex: left out of the power laws, and said so
    assert any(p.endswith("chinchilla_fig3.png") for p in drawn.paths)
    assert "## Diagnostics" in md and "Compute-optimal allocation" in md


def test_an_estimate_outside_its_interval(tmp_path, monkeypatch):
    # Force the finding: every percentile interval lies wholly above the estimate it belongs to.
    real = parametric.Samples.intervals

    def above(self, level=0.95):
        return {k: (hi + (hi - lo) + 1e-9, hi + 2 * (hi - lo) + 2e-9) for k, (lo, hi) in real(self, level).items()}
    monkeypatch.setattr(parametric.Samples, "intervals", above)
    synthetic.cpu_table(tmp_path / "r.csv", seed=1)
    fits, drawn, md = pipeline(tmp_path / "r.csv", tmp_path)
    assert any("lies outside its own 95% interval" in n for n in fits["approach2"]["notes"])
    flags = [n for n in drawn.notes if n.startswith("figure 3:")]
    assert flags and all("outside its own" in n for n in flags)
    assert "†" in md and "the estimate lies outside its own interval" in md
    assert flags[0] in md  # under the figures


def test_e_at_its_lower_bound(tmp_path):
    synthetic.cpu_table(tmp_path / "r.csv", synthetic.cpu_law(E=1e-9), seed=2, sigma=0.002)
    fits, drawn, md = pipeline(tmp_path / "r.csv", tmp_path)
    assert fits["approach3"]["E"] < 1e-3
    assert drawn.paths and "## Fitted laws" in md
