"""collect: results.csv keeps every planned run with its status; curves.csv in long format."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

from test_launch import REPO, env, launch, make_study, run_json, spec


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def collect(study):
    return subprocess.run([sys.executable, "-m", "experiments.collect", f"--study={study}"], cwd=REPO, env=env(),
                          capture_output=True, text=True)


def test_results_keep_every_run_with_its_status(tmp_path):
    study = make_study(tmp_path / "s", [
        spec("ok", steps=12, params=2000), spec("nan", steps=12, diverge_at=6), spec("broken", steps=5, fail_times=9),
        spec("orphan", steps=5, branch_from="broken", branch_step=5)])
    launch(study, "--max-retries=0")
    (study / "results.csv").write_text("stale\n")
    out = collect(study)
    assert out.returncode == 0, out.stderr
    rows = {r["run_id"]: r for r in read_csv(study / "results.csv")}
    assert list(rows) == ["ok", "nan", "broken", "orphan"]  # plan order, nothing dropped
    assert {k: r["status"] for k, r in rows.items()} == {"ok": "completed", "nan": "diverged", "broken": "failed",
                                                         "orphan": "blocked"}
    ok, rj = rows["ok"], run_json(study, "ok")
    for conv, per_token in rj["flops_per_token"].items():
        assert float(ok[f"flops_{conv}"]) == per_token * rj["tokens"]
    assert float(ok["tokens_per_param"]) == rj["tokens"] / 2000
    assert int(ok["non_embedding_params"]) == 1900 and float(ok["final_eval_loss"]) == rj["final_eval_loss"]
    assert float(ok["budget"]) == 6000.0 * 12 * 256 and ok["attempts"] == "1"
    assert rows["nan"]["final_eval_loss"] == "" and rows["broken"]["final_train_loss"] == ""
    assert rows["orphan"]["attempts"] == "0" and rows["orphan"]["flops_6n"] == ""
    curves = read_csv(study / "curves.csv")
    assert list(curves[0]) == ["run_id", "params", "step", "tokens", "flops", "train_loss", "eval_loss", "lr"]
    by_run = {r: [c for c in curves if c["run_id"] == r] for r in rows}
    assert [int(c["step"]) for c in by_run["ok"]] == list(range(1, 13))
    assert [int(c["step"]) for c in by_run["nan"]] == list(range(1, 7))  # the diverged curve is kept too
    assert {c["params"] for c in by_run["ok"]} == {"2000"}
    assert by_run["ok"][4]["eval_loss"] != "" and by_run["ok"][3]["eval_loss"] == ""
    assert not list(study.glob(".*.tmp"))
    assert [r["role"] for r in rows.values()] == ["isoflop"] * 4 and ok["seed"] == "0"
    points = read_csv(study / "points.csv")
    assert [(p["params"], p["n_seeds"]) for p in points] == [("2000", "1")]  # completed isoflop runs only
    assert "seed noise: not measured" in out.stdout


def test_curves_merge_eval_lines_and_keep_the_last_record_of_a_repeated_step(tmp_path):
    from experiments.collect import curve_rows
    run = tmp_path / "r"
    run.mkdir()
    lines = [{"step": s, "tokens": 10 * s, "flops": 1.0 * s, "train_loss": 5.0 - s / 10} for s in (1, 2, 3)]
    lines += [{"step": 3, "tokens": 30, "flops": 3.0, "train_loss": 4.2},  # step 3 again, after a resume
              {"step": 3, "tokens": 30, "eval_loss": 4.3}]  # the trainer's eval line
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 4, "tok')
    rows = curve_rows(run, "r", 100)
    assert [(r["step"], r["flops"], r["train_loss"], r["eval_loss"]) for r in rows] == [
        (1, 1.0, 4.9, None), (2, 2.0, 4.8, None), (3, 3.0, 4.2, 4.3)]


def test_collect_without_plan_is_one_line_exit_2(tmp_path):
    out = collect(tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "plan.json" in out.stderr
    assert not (tmp_path / "results.csv").exists()


def test_new_columns_default_for_old_plans_and_points_pool_seeds():
    from types import SimpleNamespace
    from experiments.collect import point_rows, result_row
    base = dict(run_id="a", budget=1e12, flop_convention="6n", params=1000, non_embedding_params=900,
                tokens=5000, steps=10, global_batch=2, seq_len=128, lr=1e-3, schedule="cosine",
                branch_from=None, branch_step=None)
    old = result_row(SimpleNamespace(**base), {"final_eval_loss": 3.0}, "completed", 1, ["6n"])
    assert (old["role"], old["seed"], old["beta2"], old["final_eval_loss_se"], old["true_loss"]) == \
        ("isoflop", 0, 0.95, None, None)
    new = result_row(SimpleNamespace(**base, role="trunk", seed=2, beta2=0.99),
                     {"final_eval_loss": 3.0, "final_eval_loss_se": 0.001, "true_loss": 2.5, "seed": 2},
                     "completed", 1, ["6n"])
    assert (new["role"], new["seed"], new["beta2"], new["final_eval_loss_se"], new["true_loss"]) == \
        ("trunk", 2, 0.99, 0.001, 2.5)
    rows = [dict(old, run_id=f"s{i}", seed=i, final_eval_loss=v, final_eval_loss_se=0.002)
            for i, v in enumerate((3.0, 3.2, 3.1))]
    rows += [dict(old, run_id="big", params=2000, final_eval_loss=2.9), new,  # a trunk is no point
             dict(old, run_id="live", status="running", final_eval_loss=None)]
    pts, sn = point_rows(rows)
    assert [(p["params"], p["n_seeds"]) for p in pts] == [(1000, 3), (2000, 1)]
    assert abs(pts[0]["mean_eval_loss"] - 3.1) < 1e-12 and abs(pts[0]["std_eval_loss"] - 0.1) < 1e-12
    assert pts[1]["std_eval_loss"] is None
    assert sn.dof == 2 and abs(sn.std - 0.1) < 1e-12 and "2 degrees of freedom" in sn.line()
