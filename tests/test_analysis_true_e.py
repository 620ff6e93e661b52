"""analysis.fit compares every fitted E with the source's exact optimal loss E* (--true-e or a column)."""
import json

import pandas as pd
import pytest

from analysis import fit
from analysis.laws import allocation
from analysis.uncertainty.synthetic import isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)
SMALL = ["--grid-alpha", "0.5", "--grid-beta", "0.5", "--grid-e", "0.5", "--grid-a", "6", "--grid-b", "7"]


@pytest.fixture()
def table(tmp_path):
    isoflop_table(tmp_path / "results.csv", LAW, budgets=(1e17, 1e18, 1e19), noise=0.002, seed=1)
    return tmp_path / "results.csv"


def _fit(table, out, *flags):
    assert fit.main(["--results", str(table), "--approach", "3", "--out", str(out), "--bootstrap", "0",
                     "--no-ml", *SMALL, *flags]) == 0
    return json.loads((out / "fits.json").read_text())["approach3"]


def test_true_e_flag_lands_in_fits_json(table, tmp_path, capsys):
    a3 = _fit(table, tmp_path / "o", "--true-e", "1.7")
    assert a3["extra"]["true_loss"] == 1.7
    assert a3["extra"]["E_rel_error"] == pytest.approx((a3["E"] - 1.7) / 1.7)
    assert abs(a3["extra"]["E_rel_error"]) < 0.03  # the synthetic table's E is 1.7
    assert "E vs E* (approach3)" in capsys.readouterr().out


def test_true_loss_column_is_used_and_must_agree(table, tmp_path):
    df = pd.read_csv(table)
    df.assign(true_loss=2.0).to_csv(tmp_path / "col.csv", index=False)
    a3 = _fit(tmp_path / "col.csv", tmp_path / "o2")
    assert a3["extra"]["true_loss"] == 2.0 and a3["extra"]["E_rel_error"] < -0.1
    df.assign(true_loss=[2.0 + 0.01 * i for i in range(len(df))]).to_csv(tmp_path / "bad.csv", index=False)
    assert fit.main(["--results", str(tmp_path / "bad.csv"), "--approach", "3", "--out", str(tmp_path / "o3"),
                     "--bootstrap", "0", "--no-ml", *SMALL]) == 2


def test_no_true_e_no_comparison(table, tmp_path):
    assert "true_loss" not in _fit(table, tmp_path / "o4").get("extra", {})
