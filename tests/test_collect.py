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
    assert list(curves[0]) == ["run_id", "params", "step", "tokens", "flops", "train_loss", "eval_loss"]
    by_run = {r: [c for c in curves if c["run_id"] == r] for r in rows}
    assert [int(c["step"]) for c in by_run["ok"]] == list(range(1, 13))
    assert [int(c["step"]) for c in by_run["nan"]] == list(range(1, 7))  # the diverged curve is kept too
    assert {c["params"] for c in by_run["ok"]} == {"2000"}
    assert by_run["ok"][4]["eval_loss"] != "" and by_run["ok"][3]["eval_loss"] == ""
    assert not list(study.glob(".*.tmp"))


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
