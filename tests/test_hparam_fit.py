"""experiments.planning.hparam_fit on a synthetic sweep drawn from known laws (Step Law's shape):
lr* = 0.01 (N/1e6)^-0.3 (D/1e8)^0.1, B* = 2^17 (D/1e8)^0.4 tokens, a quadratic valley in
(log10 lr, log10 B) plus Gaussian noise."""
import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from analysis.records import InputError
from experiments.planning import hparam_fit

TRUE = {"lr": {"N": -0.3, "D": 0.1}, "batch": {"N": 0.0, "D": 0.4}}
K_LR, K_B = 0.08, 0.04  # loss rise per dex^2 off the optimum in lr, in batch


def synthetic_sweep(sizes=(1e6, 3e6, 1e7, 3e7, 1e8), tokens=(1e8, 1e9, 1e10), n_lr=20, n_batch=10,
                    noise=0.002, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    log_lr = np.linspace(-3.4, -1.0, n_lr)
    log_b = np.log10(2.0 ** np.arange(14, 14 + n_batch))
    rows = []
    for n in sizes:
        for d in tokens:
            lr_star = math.log10(0.01) - 0.3 * math.log10(n / 1e6) + 0.1 * math.log10(d / 1e8)
            b_star = math.log10(2**17) + 0.4 * math.log10(d / 1e8)
            floor = 1.7 + 400 / n**0.34 + 400 / d**0.28
            for x in log_lr:
                for y in log_b:
                    loss = floor + K_LR * (x - lr_star) ** 2 + K_B * (y - b_star) ** 2 + rng.normal(0, noise)
                    rows.append({"run_id": f"n{n:g}-d{d:g}-lr{x:.3f}-b{y:.2f}", "params": n, "tokens": d,
                                 "lr": 10**x, "batch_tokens": 10**y, "final_eval_loss": loss,
                                 "status": "completed"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    return synthetic_sweep()


@pytest.mark.parametrize("rule", hparam_fit.RULES)
def test_recovers_the_laws_it_was_drawn_from(table, rule):
    opts = hparam_fit.Options(rule=rule)
    f = hparam_fit.fit(hparam_fit.sweep_from(table, opts), opts)
    print()
    print(hparam_fit.report(f))
    for law in (f.lr, f.batch):
        for k, truth in TRUE[law.name].items():
            est, (lo, hi) = law.exponents[k], law.intervals[k]
            print(f"{rule} {law.name} exponent {k}: {est:+.3f} [{lo:+.3f}, {hi:+.3f}] truth {truth:+.3f}")
            assert abs(est - truth) <= 0.05
            assert lo <= truth <= hi
    # Prefactor in the columns' units: 0.01 * 1e6^0.3 * 1e8^-0.1 for lr.
    assert f.lr.prefactor == pytest.approx(0.01 * 1e6**0.3 * 1e8**-0.1, rel=0.25)
    # The valley is exactly quadratic: rise at x2 = k * log10(2)^2 along each axis.
    assert f.penalty("lr_rise_x2")["mean"] == pytest.approx(K_LR * math.log10(2) ** 2, rel=0.1)
    assert f.penalty("batch_rise_x2")["mean"] == pytest.approx(K_B * math.log10(2) ** 2, rel=0.1)
    assert not any(g.edge for g in f.groups)


def test_near_best_keeps_the_runs_within_tolerance(table):
    opts = hparam_fit.Options(tolerance=0.0025)
    s = hparam_fit.sweep_from(table, opts)
    f = hparam_fit.fit(s, opts)
    for g in f.groups:
        assert all(s.loss[i] <= g.best_loss * 1.0025 for i in g.kept)
        assert 1 < len(g.kept) < g.n_runs


def test_cli_writes_the_record(table, tmp_path, capsys):
    path = tmp_path / "results.csv"
    extra = pd.DataFrame([{**table.iloc[0].to_dict(), "run_id": "trunk", "role": "trunk", "final_eval_loss": 0.1},
                          {**table.iloc[0].to_dict(), "run_id": "nan", "final_eval_loss": float("nan")},
                          {**table.iloc[0].to_dict(), "run_id": "div", "status": "diverged"}])
    pd.concat([table.assign(role="hparam_sweep"), extra]).to_csv(path, index=False)
    assert hparam_fit.main(["--study", str(tmp_path), "--resamples", "200"]) == 0
    rec = json.loads((tmp_path / "hparam_fit.json").read_text())
    assert rec["columns"]["batch"] == "batch_tokens" and rec["columns"]["id"] == "run_id"
    for name in ("lr", "batch"):
        law = rec[name]
        assert set(law["exponents"]) == {"N", "D"} and len(law["intervals"]["D"]) == 2
        assert law["kept"]["rule"] == "near_best" and law["kept"]["tolerance"] == 0.0025
        assert law["kept"]["rows"][0].startswith("n1e+06-")
        assert law["penalty_x2"]["mean"] > 0
        assert not {"trunk", "nan", "div"} & set(law["kept"]["rows"])
    assert rec["n_runs"] == len(table) and len(rec["notes"]) == 3
    assert "lr*(N, D) =" in capsys.readouterr().out


def test_one_token_count_fits_only_the_n_exponent():
    t = synthetic_sweep(tokens=(1e9,), n_lr=12, n_batch=6)
    f = hparam_fit.fit(hparam_fit.sweep_from(t))
    assert f.lr.exponents["D"] is None and f.lr.intervals["D"] is None
    assert abs(f.lr.exponents["N"] - TRUE["lr"]["N"]) <= 0.05
    assert "one D" in f.lr.note


@pytest.mark.parametrize("argv, message", [
    (["--lr-col", "eta"], "--lr-col 'eta': no such column"),
    (["--rule", "best"], "--rule 'best'"),
])
def test_bad_flags_are_one_line_exit_2(table, tmp_path, capsys, argv, message):
    table.to_csv(tmp_path / "results.csv", index=False)
    assert hparam_fit.main(["--study", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_too_few_groups_is_one_line_exit_2(tmp_path, capsys):
    synthetic_sweep(sizes=(1e6, 1e7), tokens=(1e9,), n_lr=8, n_batch=4).to_csv(tmp_path / "r.csv", index=False)
    assert hparam_fit.main(["--results", str(tmp_path / "r.csv"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "need at least 3" in err
    assert not (tmp_path / "hparam_fit.json").exists()


def test_a_3000_row_table_fits_in_seconds():
    t = synthetic_sweep()
    assert len(t) == 3000
    t0 = time.perf_counter()
    f = hparam_fit.fit(hparam_fit.sweep_from(t))
    elapsed = time.perf_counter() - t0
    print(f"\n3,000-row fit (1000 resamples, both laws): {elapsed:.2f} s")  # no assertion: machines vary
    assert f.lr.resamples_used > 900


def test_an_optimum_beyond_the_swept_lrs_is_flagged_edge(capsys):
    t = synthetic_sweep(n_lr=12, n_batch=6)
    t = t[(np.log10(t["lr"]) < -2.2)]  # the largest sizes' lr* stays inside, the smallest' falls outside
    f = hparam_fit.fit(hparam_fit.sweep_from(t), hparam_fit.Options(rule="valley"))
    edges = {(g.N, g.D) for g in f.groups if g.edge}
    assert (1e6, 1e10) in edges and (1e8, 1e8) not in edges
    assert "edge of the sweep" in hparam_fit.report(f)


def test_one_budget_sweep_fits_the_n_exponent_and_says_why():
    # An IsoFLOP lr sweep (our lr_sweep_cpu): D = C / 6N, so log D is a function of log N.
    t = synthetic_sweep(tokens=(1e9,), n_lr=12, n_batch=6)
    t["tokens"] = 6e15 / (6 * t["params"])
    f = hparam_fit.fit(hparam_fit.sweep_from(t))
    assert f.lr.exponents["D"] is None and "lockstep" in f.lr.note


def test_no_resamples_writes_point_estimates_only(table, tmp_path):
    table.to_csv(tmp_path / "results.csv", index=False)
    assert hparam_fit.main(["--study", str(tmp_path), "--resamples", "0", "--rule", "valley"]) == 0
    rec = json.loads((tmp_path / "hparam_fit.json").read_text())
    assert rec["lr"]["intervals"]["N"] is None and rec["lr"]["prefactor_interval"] is None
    assert rec["lr"]["kept"]["window"] == 0.05


def sparse_cpu_like_sweep(seed: int, noise: float = 0.03, batches=(0.5, 1.0, 2.0)) -> pd.DataFrame:
    """Our CPU sweep's shape: 5 sizes x 2 budgets, 3 batches x 3 lrs (x0.5, 1, 2 about a rule that
    scales lr by sqrt(B)), the valley's rise at x2 in lr about the runs' noise."""
    t = synthetic_sweep(sizes=(5e6, 1e7, 2e7, 4e7, 8e7), tokens=(1e8, 3e8), n_lr=1, n_batch=1, noise=0)
    rows, rng = [], np.random.default_rng(seed)
    for (n, d), _ in t.groupby(["params", "tokens"]):
        lr_star = math.log10(0.01) - 0.3 * math.log10(n / 1e6) + 0.1 * math.log10(d / 1e8)
        b_star = math.log10(2**17) + 0.4 * math.log10(d / 1e8)
        for y in b_star + np.log10(batches):
            for x in lr_star + 0.5 * (y - b_star) + np.log10([0.5, 1.0, 2.0]) + 0.1:
                loss = 2.0 + 4 * K_LR * (x - lr_star) ** 2 + 4 * K_B * (y - b_star) ** 2 + rng.normal(0, noise)
                rows.append({"params": n, "tokens": d, "lr": 10**x, "batch_tokens": 10**y, "final_eval_loss": loss})
    return pd.DataFrame(rows)


def test_shared_valley_pools_the_curvature_of_a_sparse_noisy_sweep():
    t = sparse_cpu_like_sweep(seed=3)
    opts = hparam_fit.Options(rule="shared_valley", resamples=200)
    f = hparam_fit.fit(hparam_fit.sweep_from(t, opts), opts)
    lo, hi = f.lr.intervals["N"]
    assert lo <= TRUE["lr"]["N"] <= hi and hi - lo < 1.0
    assert f.penalty("lr_rise_x2")["std"] is None  # one valley for every group
    assert "one valley shared by all groups" in hparam_fit.report(f)
    rec = hparam_fit.to_json(f)["lr"]["kept"]
    assert rec["rule"] == "shared_valley" and rec["window"] is None and len(rec["rows"]) == len(t)


def test_shared_valley_stops_at_the_edge_of_the_swept_box():
    # Batches 1.5, 3, 6 x B*: the optimum lies below the sweep, so each group's optimum is on the box's
    # lower face (flagged edge), and lr* is the best lr along that face (the truth: the valley is separable).
    t = sparse_cpu_like_sweep(seed=0, noise=0.0, batches=(1.5, 3.0, 6.0))
    f = hparam_fit.fit(hparam_fit.sweep_from(t), hparam_fit.Options(rule="shared_valley", resamples=0))
    for g in f.groups:
        lr_star = 0.01 * (g.N / 1e6) ** -0.3 * (g.D / 1e8) ** 0.1
        b_star = 2**17 * (g.D / 1e8) ** 0.4
        assert g.edge and g.batch_star == pytest.approx(1.5 * b_star, rel=1e-6)
        assert g.lr_star == pytest.approx(lr_star, rel=1e-6)
