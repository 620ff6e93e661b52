"""The study modes that measure laws beyond Chinchilla's form (issue 19), planning only: the
data_constrained and annealing presets' runs, their roles and overrides, the errors, and results.csv
rows the registry laws read directly."""
import dataclasses

import pandas as pd
import pytest

from analysis.laws.law_table import LawColumns, law_table
from experiments import collect
from experiments.configs import annealing_cpu, data_constrained_cpu
from experiments.planning.build import make_plan
from experiments.planning.errors import StudyError
from experiments.planning.specs import run_config
from scaling import validate
from scaling.run_record import RunRecord

EPOCH = 10**8


def _plan(module, epoch=EPOCH, **section):
    config = module.get_config()
    mode = config.study.mode
    config.study[mode].update(section)
    return config, make_plan(config, f"experiments/configs/{module.__name__.split('.')[-1]}.py", epoch=epoch)


def test_data_constrained_is_budgets_by_sizes_by_unique_limits():
    config, p = _plan(data_constrained_cpu)
    dc = config.study.data_constrained
    points = {(r.budget, r.params) for r in p.runs}
    assert len(points) == len(config.study.budgets) * len(dc.sizes)
    assert len(p.runs) == len(points) * len(dc.unique_tokens) == len({r.run_id for r in p.runs})
    assert {r.role for r in p.runs} == {"data_constrained"}
    for point in points:  # the limit is all that varies within a (C, N)
        mine = [r for r in p.runs if (r.budget, r.params) == point]
        assert len({(r.steps, r.global_batch, r.lr, r.warmup_steps, r.schedule) for r in mine}) == 1
        assert sorted(r.overrides["data.unique_tokens"] for r in mine) == sorted(dc.unique_tokens)
    for r in p.runs:
        validate.check(run_config(config, r), device_count=1)
    assert any(r.run_id.endswith("-Uall") for r in p.runs)


def test_annealing_is_one_run_per_schedule_with_the_held_out_one_marked():
    config, p = _plan(annealing_cpu)
    assert [run_config(config, r).train.schedule for r in p.runs] == ["constant", "cosine", "wsd"]
    assert [r.role for r in p.runs] == ["annealing", "annealing", "annealing_heldout"]
    assert len({(r.steps, r.lr, r.warmup_steps, r.params) for r in p.runs}) == 1
    assert [r.schedule for r in p.runs] == ["constant", "cosine", "wsd"]


@pytest.mark.parametrize("module,section,match", [
    (data_constrained_cpu, {"unique_tokens": (0, 2 * 10**8)}, r"unique_tokens: \[200000000\] exceed"),
    (data_constrained_cpu, {"unique_tokens": (5, 5)}, "must be distinct integers >= 0"),
    (annealing_cpu, {"schedules": ("constant", "linear")}, "must be distinct names of"),
    (annealing_cpu, {"held_out": ("constant", "cosine", "wsd")}, "leaving at least one to fit"),
])
def test_bad_sections_are_one_line(module, section, match):
    with pytest.raises(StudyError, match=match):
        _plan(module, **section)


def test_a_mode_without_its_section_is_one_line():
    config = annealing_cpu.get_config()
    del config.study["annealing"]
    with pytest.raises(StudyError, match="study.annealing: mode 'annealing' needs a study.annealing section"):
        make_plan(config, "x.py", epoch=EPOCH)


def test_results_rows_carry_unique_tokens_and_epochs_the_law_reads():
    config, p = _plan(data_constrained_cpu)
    conventions = ["chinchilla"]
    rows = []
    for i, spec in enumerate(p.runs):
        u = spec.overrides["data.unique_tokens"] or EPOCH
        rec = RunRecord(status="completed", config={}, params={"total": spec.params, "non_embedding": 1},
                        flops_per_token={"chinchilla": spec.flops / spec.tokens}, steps=spec.steps,
                        tokens=spec.tokens, unique_tokens=u, epochs=spec.tokens / u, final_eval_loss=3.0 + i / 100)
        rows.append(collect.result_row(spec, rec, "completed", 1, conventions))
    planned = collect.result_row(dataclasses.replace(p.runs[1]), None, "pending", 0, conventions)
    assert planned["unique_tokens"] == p.runs[1].overrides["data.unique_tokens"]
    assert planned["epochs"] == pytest.approx(p.runs[1].tokens / planned["unique_tokens"])
    table = law_table(pd.DataFrame(rows), LawColumns(), ("n", "d", "u"))
    assert table.columns == {"n": "params", "d": "tokens", "u": "unique_tokens", "loss": "final_eval_loss"}
    assert len(table.frame) == len(p.runs)


def _annealing_study(tmp_path):
    """A collected annealing_cpu study whose eval curves follow the annealing law exactly."""
    import numpy as np

    from analysis.laws import schedule
    from scaling import optim

    config, p = _plan(annealing_cpu)
    results, curves = [], []
    for r in p.runs:
        steps = np.arange(100, r.steps + 1, 100).tolist() + [r.steps]
        fn = optim.schedule(run_config(config, r).train)
        lr = np.array([float(fn(s - 1)) for s in steps])
        s1, s2 = schedule.areas(steps, lr)
        loss = 1.5 + 0.8 * s1 ** -0.5 - 0.1 * s2
        curves += [dict(run_id=r.run_id, params=r.params, step=s, eval_loss=v, lr=x) for s, v, x in zip(steps, loss, lr)]
        results.append(dict(run_id=r.run_id, role=r.role, status="completed"))
    pd.DataFrame(results).to_csv(tmp_path / "results.csv", index=False)
    pd.DataFrame(curves).to_csv(tmp_path / "curves.csv", index=False)
    return p


def test_annealing_study_fits_the_law_and_reports_the_held_out_run(tmp_path):
    from experiments import law_study

    p = _annealing_study(tmp_path)
    from analysis.laws.law_report import LawOptions

    starts = ((0.5, -0.8, 0.4, -1.0), (0.9, 0.0, 0.7, -1.5))  # two starts near the law: a fast fit
    md, html = law_study.analyse(tmp_path, "annealing", LawOptions(bootstrap=0, starts=starts, validation=False))
    pred = pd.read_csv(tmp_path / "laws" / "predictions.csv")
    assert set(pred["run_id"]) == {r.run_id for r in p.runs if r.role == "annealing_heldout"}
    last = pred.iloc[-1]
    assert abs(last["predicted_loss"] / last["eval_loss"] - 1) < 0.005
    text = md.read_text()
    assert "held-out schedules" in text and "-wsd" in text and "L0" in text
    assert (tmp_path / "laws" / "fits.json").exists() and html.exists()
    assert (tmp_path / "figures" / "annealing_curves.png").exists() and "annealing_curves.png" in text


def test_data_constrained_study_recovers_the_law_from_results_csv(tmp_path):
    import numpy as np

    from analysis.laws.forms import data_constrained as dc
    from analysis.laws.law_report import LawOptions
    from experiments import law_study

    truth = dict(E=1.5, A=50.0, B=300.0, alpha=0.35, R_D_star=15.0, R_N_star=5.0)
    config, p = _plan(data_constrained_cpu)
    rows = []
    for r in p.runs:
        u = r.overrides["data.unique_tokens"] or EPOCH
        log_loss = dc._log_loss(np, *np.log([truth["E"], truth["A"], truth["B"]]), truth["alpha"], truth["alpha"],
                                np.log(truth["R_D_star"]), np.log(truth["R_N_star"]), np.log(r.params),
                                np.log(r.tokens), np.log(u))
        rows.append(dict(run_id=r.run_id, role=r.role, status="completed", params=r.params, tokens=r.tokens,
                         unique_tokens=u, final_eval_loss=float(np.exp(log_loss))))
    rows.append(dict(rows[0], run_id="failed", status="failed", final_eval_loss=np.nan))
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    start = np.array([np.log(1.5), np.log(50), np.log(300), 0.35, np.log(15), np.log(5)])
    law_study.analyse(tmp_path, "data_constrained", LawOptions(bootstrap=0, starts=(start + 0.1, start - 0.1),
                                                                validation=False), draw=False)  # the annealing test draws its figure
    import json
    got = json.loads((tmp_path / "laws" / "fits.json").read_text())["data_constrained"]
    assert got["n_runs"] == len(p.runs)  # the failed run left out
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=1e-3), k
