"""study.mode="hparam_sweep" (lr x batch across sizes and budgets), hparam_fit reading such a study's
results.csv, and study.hparams: the planner taking each run's lr and batch from a fitted law."""
import hashlib
import json
import math
import pathlib

import numpy as np
import pandas as pd
import pytest

from experiments import ladder
from experiments.configs import hparam_sweep_cpu, isoflop_ci
from experiments.planning import hparam_fit
from experiments.planning.build import make_plan
from experiments.planning.errors import StudyError
from experiments.planning.study import Study
from experiments.planning.table import format_table
from scaling import flops, validate

REPO = pathlib.Path(__file__).parents[1]
BIG_EPOCH = 10**12
LAW = {"lr": {"prefactor": 0.5, "exponents": {"N": -0.5, "D": 0.05}, "intervals": {"N": [-0.6, -0.4], "D": None}},
       "batch": {"prefactor": 0.02, "exponents": {"N": 0.0, "D": 0.5}, "intervals": {"N": None, "D": [0.4, 0.6]}},
       "columns": {"batch": "global_batch"}}


@pytest.fixture(scope="module")
def sweep_plan():
    config = hparam_sweep_cpu.get_config()
    return make_plan(config, str(REPO / "experiments/configs/hparam_sweep_cpu.py"), epoch=BIG_EPOCH)


def test_hparam_sweep_is_budgets_by_sizes_by_batch_by_lr(sweep_plan):
    sw = hparam_sweep_cpu.get_config().study.hparam_sweep
    runs = sweep_plan.runs
    assert {r.role for r in runs} == {"hparam_sweep"} and {r.budget for r in runs} == set(sw.budgets)
    assert len(sw.budgets) >= 2 and len({r.params for r in runs}) >= 5
    groups = {}
    for r in runs:
        groups.setdefault((r.params, r.budget), []).append(r)
    dropped = {(d.N, d.C) for d in sweep_plan.dropped}
    for (n, c), rs in groups.items():
        assert len({r.tokens for r in rs}) == 1  # one D per (C, N): one hparam_fit group
        full = (n, c) not in dropped
        assert len(rs) == len(sw.lr_multipliers) * (len(sw.batches) if full else len(sw.batches) - 1)
        for b in {r.global_batch for r in rs}:
            lrs = sorted(r.lr for r in rs if r.global_batch == b)
            assert np.allclose(np.array(lrs) / lrs[0], sorted(sw.lr_multipliers) / np.min(sw.lr_multipliers))
    assert len(runs) >= 5 * 2 * 9 - 3 * len(dropped)
    assert sum(r.flops / r.budget - 1 < 0.01 for r in runs) == len(runs)
    assert "hparam sweep: 5 sizes x 2 budgets" in format_table(sweep_plan)


def _fake_results(plan, path):
    """results.csv of the sweep plan, losses from a known valley: lr* = 3e-3 (N/1e4)^-0.4, B* = 8."""
    rows = []
    for r in plan.runs:
        x = math.log10(r.lr / (3e-3 * (r.params / 1e4) ** -0.4))
        loss = 2.0 + 50 / r.params**0.3 + 0.1 * x**2 + 0.03 * math.log2(r.global_batch / 8) ** 2
        rows.append({"run_id": r.run_id, "params": r.params, "tokens": r.tokens, "lr": r.lr,
                     "global_batch": r.global_batch, "final_eval_loss": loss, "role": r.role, "status": "completed"})
    rows.append({**rows[0], "run_id": "iso", "role": "isoflop", "final_eval_loss": 1.0})  # not a sweep run
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    return len(plan.runs)


def test_hparam_fit_reads_a_sweep_studys_results(sweep_plan, tmp_path, capsys):
    n = _fake_results(sweep_plan, tmp_path)
    assert hparam_fit.main(["--study", str(tmp_path), "--rule", "valley", "--resamples", "50"]) == 0
    out = json.loads((tmp_path / "hparam_fit.json").read_text())
    assert out["n_runs"] == n and any("not hparam_sweep" in note for note in out["notes"])
    assert out["columns"]["batch"] == "global_batch" and len(out["groups"]) == 10
    assert out["lr"]["exponents"]["N"] == pytest.approx(-0.4, abs=0.1)
    assert out["batch"]["prefactor"] > 0


def _law_file(tmp_path, law=LAW):
    path = tmp_path / "hparam_fit.json"
    path.write_text(json.dumps(law))
    return path


def test_study_hparams_sets_each_runs_lr_and_batch_and_is_recorded(tmp_path):
    path = _law_file(tmp_path)
    config = isoflop_ci.get_config()
    config.study.hparams = str(path)
    p = make_plan(config, str(REPO / "experiments/configs/isoflop_ci.py"), epoch=BIG_EPOCH)
    recipe, base = ladder.RECIPES[config.study.recipe], validate.model_config(config)
    for r in p.runs:
        model = recipe.width_shape(r.overrides["model.d_model"], base)
        d = r.budget / flops.flops_per_token(model)[r.flop_convention]
        want = 0.02 * d**0.5
        b = max(recipe.min_batch, round(want / recipe.min_batch) * recipe.min_batch)
        while round(r.budget / (flops.flops_per_token(model)[r.flop_convention] * b * model.seq_len)) \
                < config.study.min_steps and b > recipe.min_batch:
            b = max(recipe.min_batch, b // 2 // recipe.min_batch * recipe.min_batch)
        assert r.global_batch == b and r.overrides["train.global_batch"] == b
        assert r.lr == pytest.approx(0.5 * r.params**-0.5 * d**0.05 * math.sqrt(b / want), rel=1e-9)
    assert len({r.global_batch for r in p.runs}) > 1  # the law moved the batch with D
    rec = p.section["hparams_law"]
    assert rec["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and rec["path"] == str(path.resolve())
    assert rec["lr"]["intervals"]["N"] == [-0.6, -0.4] and rec["batch_unit"] == "sequences"
    assert "hparams: lr, batch per run from" in format_table(p)
    path.unlink()  # plan.json carries the law: reading it back needs no file
    assert Study.from_section(p.section).hparam_law.lr.prefactor == 0.5


@pytest.mark.parametrize("content, message", [
    (None, "cannot be read as JSON"),
    ("{not json", "cannot be read as JSON"),
    (json.dumps({"batch": LAW["batch"]}), "is not a hparam_fit.json law"),
    (json.dumps({"lr": {"prefactor": -1, "exponents": {"N": 0}}}), "is not a hparam_fit.json law"),
])
def test_a_bad_hparams_file_is_a_one_line_error(tmp_path, content, message):
    path = tmp_path / "law.json"
    if content is not None:
        path.write_text(content)
    config = isoflop_ci.get_config()
    config.study.hparams = str(path)
    with pytest.raises(StudyError, match=message) as e:
        Study.from_config(config.study)
    assert str(e.value).startswith("study.hparams=") and "\n" not in str(e.value)


def test_hparam_sweep_section_errors_are_one_line():
    config = hparam_sweep_cpu.get_config()
    config.study.hparam_sweep.lrs = (1e-3,)  # with lr_multipliers: ambiguous
    with pytest.raises(StudyError, match="exactly one of lr_multipliers"):
        Study.from_config(config.study)


def test_the_hparams_default_leaves_the_plan_hash_alone(sweep_plan):
    from experiments.study_dir import plan_hash
    section = {k: v for k, v in sweep_plan.section.items() if k != "hparams"}
    assert plan_hash({**section, "hparams": ""}, sweep_plan.runs) == plan_hash(section, sweep_plan.runs)
    assert plan_hash({**section, "hparams": "x.json"}, sweep_plan.runs) != plan_hash(section, sweep_plan.runs)
