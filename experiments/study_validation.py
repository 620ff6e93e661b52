"""The study's validation phase: freeze the grid fit's prediction, then add its runs to the plan.

    DIR/prediction.json   written once, from the grid's first fit, BEFORE any validation run trains:
                          the fit's hash, the approach and the rule that chose it, per validation
                          budget N*, D*, D*/N* and loss with intervals, per run the predicted loss with
                          its 95% prediction interval, and the runs' specs. A rerun reuses the file (so
                          nothing can move the goalposts); delete it to predict again from the current fit.

The runs (role "validation", experiments.planning.validation) are appended to DIR/plan.json and
trained by the same launcher as the grid (idempotent, kill-safe); collect writes them to results.csv
with their role, and the analysis leaves them out of every fit (analysis.tables: only role isoflop).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from experiments import plan as plan_cli
from experiments import study_dir as st
from experiments.planning import estimate, memory_fit, specs, validation
from experiments.planning.study import Study
from experiments.spec import RunSpec
from plumbing import atomic

PREDICTION = "prediction.json"


def wanted(config) -> bool:
    """Whether this study config asks for a validation (and its mode can have one)."""
    s = config.study
    return str(s.mode) in ("independent", "wsd_branches") and Study.from_config(s).validation.enabled


def read_frozen(study: Path) -> dict | None:
    try:
        return json.loads((study / PREDICTION).read_text())
    except (OSError, ValueError):
        return None


def load_config(config_file: str, overrides: list[str]):
    """The study config with the command line's --config.<field> overrides, as experiments.plan sees it."""
    argv = ["experiments.plan", f"--config={config_file}", *overrides]
    fv = plan_cli._flags(argv)
    fv(argv)
    return fv.config


def freeze(study: Path, config_file: str, overrides: list[str]) -> dict:
    """DIR/prediction.json from DIR/fits/fits.json, unless it exists (then it is returned as it is)."""
    frozen = read_frozen(study)
    if frozen is not None:
        return frozen
    from analysis.laws import predict
    from scaling import validate

    config = load_config(config_file, overrides)
    s = Study.from_config(config.study)
    v = s.validation
    body = json.loads((study / "fits" / "fits.json").read_text())
    predictor = predict.Predictor.from_fits(body, v.approach)
    largest = max(predictor.allocation(C).N.mid for C in v.targets(s.budgets))
    rungs = validation.ladder_for(s.recipe, validate.model_config(config), s, largest, v.spread if v.sizes > 1 else 0)
    vp = validation.plan_validation(predictor, rungs, s, v, os.path.abspath(config_file),
                                    plan_cli.command_line_overrides(config, config_file),
                                    estimate.epoch_tokens(config, s))
    runs, too_big, _, _ = memory_fit.fit_runs(config, s, vp.runs)
    specs.check_runs(config, runs)
    kept = {r.run_id for r in runs}
    record = {
        "fits": "fits/fits.json", "fits_hash": predict.fits_hash(body), "approach": v.approach, "rule": v.rule,
        "level": predictor.level, "resamples": len(predictor.draws), "noise_sd": predictor.noise_sd,
        "noise": predictor.noise_source,
        "eval_offset": "cancels: the eval set is shared by the grid and the validation runs; each resample's "
                      "drawn offset (fits.json extra.draws.eval_offset, where present) is subtracted from its "
                      "prediction",
        "written": time.strftime("%Y-%m-%d %H:%M:%S"), "validation": config.study.validation.to_dict(),
        "budgets": [a.to_json() for a in vp.budgets],
        "runs": [p.to_json() for p in vp.predictions if p.run_id in kept],
        "dropped": [{"C": d.C, "N": d.N, "reason": d.reason} for d in (*vp.dropped, *too_big)],
        "specs": [r.to_dict() for r in runs]}
    atomic.write_json(study / PREDICTION, _finite(record))
    return read_frozen(study)


def _finite(v):
    """NaN (an interval nobody can give: no resamples, no noise) as null: JSON has no NaN."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return None if isinstance(v, float) and v != v else v


def add_to_plan(study: Path, record: dict) -> int:
    """Append the frozen validation runs plan.json lacks (a re-planned grid drops them); returns how many."""
    plan = st.load_plan(study)
    have = plan.by_id()
    new = [RunSpec.from_dict(d) for d in record["specs"] if d["run_id"] not in have]
    if new:
        runs = (*plan.runs, *new)
        section = {**plan.section, "hash": st.plan_hash(plan.section, runs)}
        whole = st.Plan(plan.study, runs, section["hash"], plan.dropped, section=section)
        atomic.write_json(study / "plan.json", whole.to_json())
    return len(new)


def table_lines(record: dict) -> list[str]:
    """The validation runs as the plan table's extra lines (logs/validate.log and the terminal's log)."""
    out = [f"validation ({record['approach']}; fit {record['fits_hash']}): "
           f"{len(record['runs'])} runs, prediction frozen in {PREDICTION}"]
    for r in record["runs"]:
        mid, lo, hi = (float("nan") if x is None else x for x in r["predicted"])
        out.append(f"  {r['run_id']}: C={r['C']:.3g} N={r['N']:,} D={r['D']:,} ({r['offset_dex']:+.2f} dex from N*) "
                   f"predicted loss {mid:.4f} [{lo:.4f}, {hi:.4f}]")
    return out
