"""Loading results tables: column mapping, auto-detection, status filter, budgets, one-line errors."""
import numpy as np
import pandas as pd
import pytest

from analysis.laws import allocation
from analysis.tables import tables
from analysis.records import InputError
from analysis.uncertainty.synthetic import isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)


def _write(tmp_path, df):
    p = tmp_path / "t.csv"
    df.to_csv(p, index=False)
    return p


def test_our_results_layout_is_auto_detected(tmp_path):
    df = isoflop_table(tmp_path / "r.csv", LAW)
    runs = tables.load_runs(tmp_path / "r.csv")
    np.testing.assert_allclose(runs.N, df["params"])
    np.testing.assert_allclose(runs.D, df["tokens"])
    np.testing.assert_allclose(runs.loss, df["final_eval_loss"])
    np.testing.assert_allclose(runs.budget, df["budget"])
    np.testing.assert_allclose(runs.N_nonembed, df["non_embedding_params"])
    assert list(runs.run_id[:2]) == ["r0", "r1"]


def test_named_columns_and_d_from_c_by_6nd(tmp_path):
    p = _write(tmp_path, pd.DataFrame({"Model Size": [1e8, 2e8], "Training FLOP": [6e18, 1.2e19], "xl": [3.0, 2.9]}))
    runs = tables.load_runs(p, tables.Columns(n="Model Size", c="Training FLOP", loss="xl"))
    np.testing.assert_allclose(runs.D, [1e10, 1e10])


def test_diverged_and_failed_rows_are_left_out_with_a_note(tmp_path):
    df = isoflop_table(tmp_path / "r.csv", LAW)
    df.loc[0, "status"] = "diverged"
    df.loc[1, "status"] = "failed"
    df.loc[1, "final_eval_loss"] = np.nan  # a failed run's missing loss must not raise
    runs = tables.load_runs(_write(tmp_path, df))
    assert len(runs) == len(df) - 2
    assert any("2 runs" in n for n in runs.notes)


@pytest.mark.parametrize("value, what", [(np.nan, "NaN"), (np.inf, "infinite"), (-1.0, "not positive"), (0.0, "not positive")])
def test_bad_values_name_the_column_and_run(tmp_path, value, what):
    df = isoflop_table(tmp_path / "r.csv", LAW)
    df.loc[3, "tokens"] = value
    with pytest.raises(InputError, match=r"'tokens'.*r3"):
        tables.load_runs(_write(tmp_path, df))


def test_missing_column_and_empty_table(tmp_path):
    p = _write(tmp_path, pd.DataFrame({"params": [1e8], "tokens": [1e9]}))
    with pytest.raises(InputError, match="--loss-col"):
        tables.load_runs(p)
    with pytest.raises(InputError, match="--n-col 'nope'"):
        tables.load_runs(p, tables.Columns(n="nope"))
    empty = tmp_path / "e.csv"
    empty.write_text("params,tokens,loss\n")
    with pytest.raises(InputError, match="no rows"):
        tables.load_runs(empty)
    (tmp_path / "z.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        tables.load_runs(tmp_path / "z.csv")


def test_budgets_grouped_by_gap_and_snapped_to_nominal():
    c = np.array([0.95e19, 1.0e19, 1.04e19, 2.9e19, 3.1e19, 5e19])
    g = tables.group_budgets(c, 0.1)
    assert len(np.unique(g)) == 3 and g[0] == g[2] and g[3] == g[4]
    s = tables.snap_budgets(c, (1e19, 3e19), 0.06)
    np.testing.assert_allclose(s[:5], [1e19, 1e19, 1e19, 3e19, 3e19])
    assert np.isnan(s[5])


def test_drop_highest_loss_keeps_the_lowest(tmp_path):
    df = isoflop_table(tmp_path / "r.csv", LAW)
    runs = tables.drop_highest_loss(tables.load_runs(tmp_path / "r.csv"), 5)
    assert len(runs) == len(df) - 5
    assert runs.loss.max() <= np.sort(df["final_eval_loss"])[-6] + 1e-12
