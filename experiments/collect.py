"""`python -m experiments.collect --study=DIR`: the study's results as two CSV tables (written atomically).

results.csv -- one row per planned run, in plan order; runs that diverged, failed or never ran are kept
with their status and empty losses, never dropped:
    run_id, budget (planned C), flop_convention, flops_<conv> for every convention the trainer counts
    (flops_per_token[conv] * tokens: the compute the run actually spent), params, non_embedding_params,
    tokens, tokens_per_param, steps, final_train_loss, final_eval_loss, status, wall_time_s, step_time_s,
    tokens_per_s, global_batch, seq_len, lr, schedule, branch_from, branch_step, attempts,
    role (isoflop | trunk | lr_sweep | hparam_sweep | validation | data_constrained | annealing |
    annealing_heldout: only isoflop rows are IsoFLOP points), seed, beta2,
    final_eval_loss_se (the eval's own standard error), true_loss (the source's E*, where known),
    unique_tokens (distinct training tokens: data.unique_tokens' subset, else the whole split), epochs (tokens / unique_tokens)
points.csv -- one row per IsoFLOP point (budget, params) over its seeds, completed isoflop runs only:
    budget, params, tokens, n_seeds, mean_eval_loss, std_eval_loss (empty with one seed)
curves.csv -- long format for Approach 1 (Hoffmann et al. 2022, Sec. 3.1: the envelope of all training
curves) and the annealing law (its S1, S2 from the lr): run_id, params, step, tokens, flops, train_loss,
eval_loss, lr (the learning rate of that step's update), one row per logged step.
provenance.json -- how the results were made, for the report (analysis.output.report_study.StudyInfo): the plan,
each started run's devices, versions and times, why each run has no result, the study's wall time.
The columns are declared once, in analysis.schema.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Mapping, NamedTuple

from analysis import schema
from analysis.output.report_study import PROVENANCE_FILE, RUN_KEYS, StudyInfo
from analysis.uncertainty import noise
from experiments import locks
from experiments import study_dir as st
from experiments.status import DEFAULT_MAX_RETRIES
from scaling.flops import CONVENTIONS
from scaling import run_record
from scaling.run_record import RunRecord

CURVE_COLUMNS, POINT_COLUMNS = schema.CURVE_COLUMNS, schema.POINT_COLUMNS


def _conventions(records: list[RunRecord | None]) -> list[str]:
    # Every convention the trainer counts, so a run that never started still has every column.
    seen = dict.fromkeys(CONVENTIONS)
    for rec in records:
        seen.update(dict.fromkeys((rec.flops_per_token if rec else None) or {}))
    return list(seen)


def result_row(spec, rec: RunRecord | Mapping | None, state: str, attempts: int, conventions: list[str]) -> dict:
    """One results.csv row (analysis.schema.result_columns): the run's record (or run.json's keys)
    where it has one, else what its spec planned. `state` is the run's study_dir state."""
    if isinstance(rec, Mapping):
        rec = RunRecord.from_json({"status": "running", **rec})
    rec = rec or RunRecord(status="running")  # a run that never started: the plan's numbers
    params = rec.params or {}
    total = params.get("total", spec.params)
    tokens = rec.tokens if rec.tokens is not None else spec.tokens
    per_token = rec.flops_per_token or {}
    flops = {f"{schema.FLOPS_PREFIX}{c}": per_token[c] * tokens if c in per_token and tokens is not None else None
             for c in conventions}
    values = dict(
        run_id=spec.run_id, budget=spec.budget, flop_convention=spec.flop_convention, **flops,
        params=total, non_embedding_params=params.get("non_embedding", spec.non_embedding_params),
        tokens=tokens, tokens_per_param=tokens / total if tokens and total else None,
        steps=rec.steps if rec.steps is not None else spec.steps, final_train_loss=rec.final_train_loss,
        final_eval_loss=rec.final_eval_loss, status=state, wall_time_s=rec.wall_time_s,
        step_time_s=rec.step_time_s, tokens_per_s=rec.tokens_per_s, global_batch=spec.global_batch,
        seq_len=spec.seq_len, lr=spec.lr, schedule=spec.schedule, branch_from=spec.branch_from,
        branch_step=spec.branch_step, attempts=attempts,
        # Plans written before these RunSpec fields existed read as their defaults.
        role=getattr(spec, "role", "isoflop"), seed=rec.extra.get("seed", getattr(spec, "seed", 0)),
        beta2=getattr(spec, "beta2", 0.95), final_eval_loss_se=rec.final_eval_loss_se, true_loss=rec.true_loss,
        **_unique(rec, spec, tokens))
    return {k: values[k] for k in schema.result_columns(conventions)}


def _unique(rec: RunRecord, spec, tokens) -> dict:
    """unique_tokens and epochs: the run's record, else (not started) the limit its spec planned."""
    unique = rec.unique_tokens or getattr(spec, "overrides", {}).get("data.unique_tokens") or None
    epochs = rec.epochs if rec.epochs is not None else (tokens / unique if unique and tokens else None)
    return {"unique_tokens": unique, "epochs": epochs}


def point_rows(results: list[dict]) -> tuple[list[dict], noise.SeedNoise]:
    """IsoFLOP points over their seeds, and the pooled seed noise (analysis.uncertainty.noise)."""
    done = [r for r in results if r["role"] == "isoflop" and r["status"] == st.COMPLETED
            and r["final_eval_loss"] is not None]
    pts = noise.points(*([r[k] for r in done] for k in ("budget", "params", "tokens", "final_eval_loss")))
    rows = [{"budget": p.budget, "params": int(p.N), "tokens": p.D, "n_seeds": p.n_seeds, "mean_eval_loss": p.mean,
             "std_eval_loss": p.std if p.n_seeds > 1 else None} for p in pts]
    return rows, noise.seed_noise(pts, [r["final_eval_loss_se"] for r in done
                                        if r["final_eval_loss_se"] is not None])


def curve_rows(rdir: Path, run_id: str, params: int) -> list[dict]:
    """One row per logged step. Records of one step are merged in file order: the trainer logs eval on
    a line of its own, and where a resumed run logged a step again its later record wins (it is the
    one on the trajectory that reached the final state)."""
    path = rdir / "metrics.jsonl"
    if not path.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        try:
            m = json.loads(line)
        except ValueError:  # a line being appended by a live trainer
            continue
        if "step" in m:
            by_step.setdefault(int(m["step"]), {}).update({k: v for k, v in m.items() if v is not None})
    return [{"run_id": run_id, "params": params, "step": s, "tokens": m.get("tokens"), "flops": m.get("flops"),
             "train_loss": m.get("train_loss"), "eval_loss": m.get("eval_loss"), "lr": m.get("lr")}
            for s, m in sorted(by_step.items())]


def to_csv(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def provenance(study: Path, plan: st.Plan, launched: st.Launched, records: dict[str, RunRecord | None],
               states: dict[str, st.RunState]) -> StudyInfo:
    """What the report says about how the results were made (analysis.output.report_study), so the
    analysis reads a file of the study instead of its run directories."""
    kept = {rid: {k: v for k, v in rec.to_json().items() if k in RUN_KEYS}
            for rid, rec in records.items() if rec is not None}
    reasons = {rid: why for rid, s in states.items() if (why := st.why_not_completed(study, s))}
    # Wall time of a finished study ends at its last run, not when the report is (re)built.
    ends = [(st.run_dir(study, rid) / run_record.FILE).stat().st_mtime for rid, rec in records.items()
            if rec is not None and rec.status in ("completed", "diverged", "failed")]
    convention = plan.study.flop_convention or (plan.runs[0].flop_convention if plan.runs else "6n")
    return StudyInfo(plan.study.name or study.resolve().name, convention,
                     [r.to_dict() for r in plan.runs], [dict(d) for d in plan.dropped], kept, reasons,
                     launched.first_launch(), max(ends) if ends and len(ends) == len(plan.runs) else None)


class Collected(NamedTuple):
    results: Path
    curves: Path
    points: Path
    seed_noise: noise.SeedNoise


def collect_tables(study: Path, max_retries: int | None = None) -> Collected:
    plan = st.load_plan(study)
    launched = st.read_launched(study) or st.Launched()
    retries = next(r for r in (max_retries, launched.max_retries, DEFAULT_MAX_RETRIES) if r is not None)
    records = {r.run_id: st.read_run(st.run_dir(study, r.run_id)) for r in plan.runs}
    conventions = _conventions(list(records.values()))
    results, curves, states = [], [], {}
    for spec in plan.runs:
        rdir = st.run_dir(study, spec.run_id)
        states[spec.run_id] = state = st.run_state(study, spec, plan, retries)
        row = result_row(spec, records[spec.run_id], state.state, len(st.read_attempts(rdir)), conventions)
        results.append(row)
        curves += curve_rows(rdir, spec.run_id, row["params"])
    columns = schema.result_columns(conventions) if results else ["run_id"]
    locks.write_atomic(study / "results.csv", to_csv(results, columns))
    locks.write_atomic(study / "curves.csv", to_csv(curves, CURVE_COLUMNS))
    pts, seed_noise = point_rows(results)
    locks.write_atomic(study / "points.csv", to_csv(pts, POINT_COLUMNS))
    locks.write_json_atomic(study / PROVENANCE_FILE, provenance(study, plan, launched, records, states).to_json())
    return Collected(study / "results.csv", study / "curves.csv", study / "points.csv", seed_noise)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="experiments.collect", description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        results, curves, points, seed_noise = collect_tables(args.study)
    except st.StudyError as e:
        print(f"collect: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"collect: --study: cannot write {e.filename} ({e.strerror}); choose a writable study dir", file=sys.stderr)
        return 2
    n = sum(1 for _ in open(results)) - 1
    print(f"collect: {n} runs -> {results}, {sum(1 for _ in open(curves)) - 1} curve points -> {curves}")
    print(f"collect: {sum(1 for _ in open(points)) - 1} IsoFLOP points -> {points}; {seed_noise.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
