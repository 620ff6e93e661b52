"""CLIs: fits.json contents, one-line errors with exit code 2, figures written as PNG and PDF."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import figures, fit
from analysis.laws import allocation
from analysis.output import figures as figures_lib
from analysis.uncertainty.synthetic import curves_table, isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)
SMALL = ["--grid-alpha", "0.5", "--grid-beta", "0.5", "--grid-e", "0.5", "--grid-a", "6", "--grid-b", "7"]


@pytest.fixture()
def table(tmp_path):
    isoflop_table(tmp_path / "results.csv", LAW, budgets=(1e17, 1e18, 1e19, 1e20), noise=0.002, seed=1)
    return tmp_path / "results.csv"


def test_fit_all_writes_fits_json_with_the_named_values(table, tmp_path, capsys):
    out = tmp_path / "out"
    assert fit.main(["--results", str(table), "--approach", "all", "--out", str(out), "--bootstrap", "20",
                     "--validate", *SMALL]) == 0
    fits = json.loads((out / "fits.json").read_text())
    approaches = {k for k, v in fits.items() if isinstance(v, dict) and "approach" in v}
    assert approaches == {"approach2", "approach3", "approach3_ml", "kaplan"}
    assert fits["convention"] == "6n"
    names = [c["name"] for c in fits["diagnostics"]["checks"]]
    assert any("interior" in n for n in names) and any("held-out" in n for n in names)
    a3 = fits["approach3"]
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G", "objective"):
        assert np.isfinite(a3[k]), k
    assert a3["alpha"] == pytest.approx(0.33, abs=0.02)
    assert a3["intervals"]["alpha"][0] < a3["alpha"] < a3["intervals"]["alpha"][1]
    assert "a" in fits["approach2"]["intervals"]
    assert (out / "holdout.csv").read_text().count("\n") == 1 + 9  # header + the largest budget's runs
    printed = capsys.readouterr().out
    assert "approach3" in printed and "hold-out" in printed


def test_fit_maps_reference_style_columns(tmp_path):
    df = pd.DataFrame({"Model Size": [1e8, 2e8, 4e8] * 2, "Training FLOP": [1e19] * 3 + [1e20] * 3,
                       "loss": [3.1, 3.0, 3.05, 2.8, 2.7, 2.75]})
    df.to_csv(tmp_path / "ref.csv", index=False)
    assert fit.main(["--results", str(tmp_path / "ref.csv"), "--n-col", "Model Size", "--c-col", "Training FLOP",
                     "--loss-col", "loss", "--approach", "2", "--out", str(tmp_path / "o"), "--bootstrap", "0"]) == 0
    assert "approach2" in json.loads((tmp_path / "o/fits.json").read_text())


@pytest.mark.parametrize("edit, flags, message", [
    (lambda df: df.iloc[:0], [], "no rows"),
    (lambda df: df.drop(columns=["final_eval_loss"]), [], "--loss-col"),
    (lambda df: df.assign(params=df.params.where(df.index != 2, np.nan)), [], "'params'"),
    (lambda df: df.assign(tokens=df.tokens.where(df.index != 2, -5.0)), [], "'tokens'"),
    (lambda df: df.iloc[[0, 1, 9, 10, 11]], ["--approach", "2"], "has 2 runs"),
    (lambda df: df.iloc[:4], ["--approach", "3"], "at least 5 runs"),
    (lambda df: df[df.budget == 1e17], ["--approach", "2"], "at least 2 budgets"),
    (lambda df: df, ["--approach", "1"], "--curves"),
])
def test_bad_input_is_one_line_exit_2(table, tmp_path, capsys, edit, flags, message):
    edit(pd.read_csv(table)).to_csv(tmp_path / "bad.csv", index=False)
    code = fit.main(["--results", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o"), "--bootstrap", "0",
                     *SMALL, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0], err


def test_subprocess_error_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "analysis.fit", "--results", str(tmp_path / "missing.csv"),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr and "does not exist" in r.stderr
    r = subprocess.run([sys.executable, "-m", "analysis.fit", "--results", "x", "--out", "y", "--approach", "9"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0


def test_help_documents_every_flag():
    text = fit.build_parser().format_help()
    for flag in ("--results", "--approach", "--out", "--n-col", "--d-col", "--c-col", "--loss-col", "--budgets",
                 "--bootstrap", "--seed", "--delta", "--interp", "--validate", "--grid-alpha", "--curves"):
        assert flag in text
    helps = [a.help for a in fit.build_parser()._actions if a.option_strings and a.dest != "help"]
    assert all(helps)


def test_figures_written_as_png_and_pdf(table, tmp_path, monkeypatch):
    monkeypatch.setattr(figures_lib, "FORMATS", ("png", "pdf"))  # the suite's default is PNG alone (conftest.py)
    curves_table(tmp_path / "curves.csv", LAW, np.logspace(7, 9, 12), max_flops=1e20, points=40)
    out = tmp_path / "figs"
    assert figures.main(["--results", str(table), "--curves", str(tmp_path / "curves.csv"), "--out", str(out),
                         "--which", "2,3,4,kaplan", *SMALL]) == 0
    for name in ("chinchilla_fig2", "chinchilla_fig3", "chinchilla_fig4", "kaplan_fig1"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert not list(out.glob(".*.tmp"))


def test_all_skips_an_approach_the_table_cannot_support_but_a_named_one_fails(tmp_path, capsys):
    isoflop_table(tmp_path / "one.csv", LAW, budgets=(1e18,), noise=0.0, seed=1)
    out = tmp_path / "out"
    assert fit.main(["--results", str(tmp_path / "one.csv"), "--approach", "all", "--out", str(out),
                     "--no-ml", *SMALL]) == 0
    fits = json.loads((out / "fits.json").read_text())
    assert "approach2" not in fits and "approach3" in fits
    assert [m["C"] for m in fits["diagnostics"]["minima"]] == [1e18]  # reported, though no power law fits
    assert "approach 2 skipped" in capsys.readouterr().err
    assert fit.main(["--results", str(tmp_path / "one.csv"), "--approach", "2", "--out", str(out)]) == 2
