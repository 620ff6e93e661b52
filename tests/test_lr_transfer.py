"""The lr-transfer sweep (study.lr_sweep with widths, tokens and parametrizations: mup_transfer_cpu) and
its analysis (experiments.planning.lr_transfer) on synthetic tables: planning and fitting only, no training."""
import json
import math
import pathlib

import ml_collections
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import pytest

from experiments.configs import lr_sweep_cpu, mup_transfer_cpu
from experiments.plan import write_plan
from experiments.planning import lr_transfer, lr_transfer_figure
from experiments.planning.build import make_plan
from experiments.planning.errors import StudyError
from experiments.planning.lr_transfer_table import runs_from, study_table
from experiments.planning.specs import run_config
from experiments.planning.study import Sweep

REPO = pathlib.Path(__file__).parents[1]
BIG_EPOCH = 10**12
LRS = tuple(1e-3 * 2**k for k in range(7))
WIDTHS = (16, 32, 64, 128)


def table(slopes=(("sp", -0.8), ("mup", 0.0)), noise=0.004, seed=1) -> pd.DataFrame:
    """Losses with lr*(width) = 0.02 (width / 16)^slope, parabolic near the floor in log lr and steeper
    above it (as toward divergence), plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for p, slope in slopes:
        for w in WIDTHS:
            star = 0.02 * (w / 16) ** slope
            for lr in LRS:
                x = math.log10(lr / star)
                loss = 2.6 - 0.2 * math.log10(w / 16) + 0.25 * x**2 + 0.1 * max(x, 0) ** 3 + rng.normal(0, noise)
                rows.append({"run_id": f"w{w}-lr{lr:.3g}-b0.95-{p}", "d_model": w, "parametrization": p, "lr": lr,
                             "final_eval_loss": loss, "status": "completed", "role": "lr_sweep"})
    return pd.DataFrame(rows)


def analyse(df, **kw):
    runs, cols, notes = runs_from(df)
    return lr_transfer.analyse(runs, lr_transfer.Options(resamples=200, **kw), cols, notes)


# ---- the plan ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plan():
    config = mup_transfer_cpu.get_config()
    return config, make_plan(config, str(REPO / "experiments/configs/mup_transfer_cpu.py"), epoch=BIG_EPOCH)


def test_the_preset_plans_widths_by_lrs_by_parametrization_at_fixed_tokens(plan):
    config, p = plan
    sw = config.study.lr_sweep
    assert len(p.runs) == len(sw.widths) * len(sw.lrs) * len(sw.parametrizations) == 56
    assert {r.tokens for r in p.runs} == {sw.tokens} and len({r.steps for r in p.runs}) == 1
    assert len({r.warmup_steps for r in p.runs}) == 1 and len({r.global_batch for r in p.runs}) == 1
    assert {r.role for r in p.runs} == {"lr_sweep"} and len({r.run_id for r in p.runs}) == len(p.runs)
    seen = set()
    for r in p.runs:
        cfg = run_config(config, r)
        m = cfg.model
        assert (m.n_layer, m.n_heads) == (sw.n_layer, 1) and r.lr == cfg.train.lr
        assert r.run_id == f"w{m.d_model}-lr{r.lr:.3g}-b0.95-{m.parametrization}"
        seen.add((m.d_model, r.lr, m.parametrization))
    assert seen == {(w, lr, q) for w in sw.widths for lr in sw.lrs for q in sw.parametrizations}
    assert min(sw.widths) == config.model.mup_base_width  # muP = SP at the smallest width
    assert len(sw.widths) >= 4 and all(b / a == pytest.approx(2) for a, b in zip(sw.lrs, sw.lrs[1:]))
    assert sum(p.seconds.values()) <= 40 * 60  # the sizing the docstring states (assumed 6.5e9 FLOP/s)


def test_lr_sweep_without_the_new_fields_plans_as_before():
    config = lr_sweep_cpu.get_config()
    p = make_plan(config, "experiments/configs/lr_sweep_cpu.py", epoch=BIG_EPOCH)
    assert p.runs[0].run_id == "C6e+11-N1.32e+04-lr0.0015-b0.95"
    assert all("model.parametrization" not in r.overrides for r in p.runs)


@pytest.mark.parametrize("section, match", [
    ({"budget": 1e11, "widths": (16,), "sizes": (1e4,)}, "exactly one of sizes"),
    ({"budget": 1e11, "tokens": 1000, "sizes": (1e4,)}, "exactly one of budget"),
    ({"tokens": 1000, "sizes": (1e4,), "n_layer": 2}, "goes with widths"),
    ({"tokens": 1000, "widths": (16,), "parametrizations": ("sp", "xp")}, "parametrizations"),
])
def test_a_bad_lr_sweep_section_is_one_line(section, match):
    with pytest.raises(StudyError, match=match):
        Sweep.from_config(ml_collections.ConfigDict({"lrs": (1e-3,), "beta2s": (0.95,), **section}))


# ---- the analysis ------------------------------------------------------------------------------

def test_the_valleys_recover_each_widths_optimum():
    t = analyse(table(noise=0.0), noise=0.004)
    for f in t.fits:
        slope = -0.8 if f.parametrization == "sp" else 0.0
        assert math.log10(f.lr_star / (0.02 * (f.width / 16) ** slope)) == pytest.approx(0, abs=0.05)
        assert not f.edge and len(f.used) == 5 and f.interval[0] < f.lr_star < f.interval[1]


def test_the_spread_and_slope_say_which_parametrization_transfers():
    t = analyse(table())
    sp, mup = t.spreads
    assert (sp.parametrization, mup.parametrization) == ("sp", "mup")
    assert mup.range_dex < 0.1 and mup.slope_interval[0] < 0 < mup.slope_interval[1]
    assert sp.range_dex == pytest.approx(0.8 * math.log10(8), abs=0.1)
    assert sp.slope_interval[0] < -0.8 < sp.slope_interval[1] or abs(sp.slope + 0.8) < 0.05
    assert t.noise == pytest.approx(0.004, rel=0.6) and "degrees of freedom" in t.noise_source
    v = lr_transfer.verdict(t)
    assert v.startswith("μP: lr* moves 0.") and "across widths 16–128 (target ±0.15: met); SP: 0." in v


def test_an_optimum_beyond_the_swept_lrs_is_an_edge():
    df = table(slopes=(("sp", -2.0),), noise=0.0)  # width 128's lr* = 3e-4, below the smallest lr
    t = analyse(df, noise=0.004)
    f = next(f for f in t.fits if f.width == 128)
    assert f.edge and f.lr_star == LRS[0]
    assert 128.0 in t.spreads[0].edges and "edge for SP width 64, 128: widen" in lr_transfer.verdict(t)
    assert "(target ±0.15: not judged: an lr* at the sweep's edge)" in lr_transfer.verdict(t)


def test_the_json_and_the_figure_are_written(tmp_path):
    df = table()
    df.loc[0, ["status", "final_eval_loss"]] = ["diverged", float("nan")]
    df.to_csv(tmp_path / "results.csv", index=False)
    assert lr_transfer.main(["--results", str(tmp_path / "results.csv"), "--out", str(tmp_path / "out"),
                             "--resamples", "100"]) == 0
    out = json.loads((tmp_path / "out" / "lr_transfer.json").read_text())
    assert set(out["parametrizations"]) == {"sp", "mup"} and len(out["groups"]) == 8
    assert out["verdict"].startswith("μP: lr* moves") and "1 runs with status diverged" in out["notes"][0]
    for key in ("range_dex", "range_interval", "slope", "slope_interval"):
        assert out["parametrizations"]["mup"][key] is not None
    assert (tmp_path / "out" / "lr_transfer.png").stat().st_size > 10_000


def test_a_table_of_one_parametrization_gets_one_panel():
    t = analyse(table(slopes=(("sp", -0.5),)).drop(columns="parametrization"))
    assert [s.parametrization for s in t.spreads] == ["all"] and "all: lr* moves" in lr_transfer.verdict(t)
    fig = lr_transfer_figure.draw(t)
    assert len(fig.axes) == 1
    plt.close(fig)


def test_bad_input_is_one_line(tmp_path, capsys):
    table().drop(columns="d_model").to_csv(tmp_path / "r.csv", index=False)
    assert lr_transfer.main(["--results", str(tmp_path / "r.csv"), "--out", str(tmp_path)]) == 2
    assert "--width-col" in capsys.readouterr().err
    assert lr_transfer.main(["--results", str(tmp_path / "r.csv")]) == 2


def test_a_study_gets_width_and_parametrization_from_its_plan(plan, tmp_path):
    _, p = plan
    write_plan(tmp_path, p)
    by_id = table().set_index("run_id")
    rows = [{"run_id": r.run_id, "lr": r.lr, "final_eval_loss": by_id.loc[r.run_id, "final_eval_loss"],
             "status": "completed", "role": "lr_sweep"} for r in p.runs]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    df = study_table(tmp_path)
    assert list(df["d_model"]) == [int(r.run_id.split("-")[0][1:]) for r in p.runs]
    assert list(df["parametrization"]) == [r.run_id.rsplit("-", 1)[1] for r in p.runs]
