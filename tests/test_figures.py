"""Every figure drawn from a small table: axes carry data, legends carry the fitted values, ranges
follow the data and the targets, budgets are detected on a table without a budget column."""
import numpy as np
import pandas as pd
import pytest

from analysis import figures as figures_cli
from analysis.laws import allocation, approach1, approach2, kaplan
from analysis.output import figures
from analysis.tables import budgets, tables
from analysis.uncertainty.synthetic import curves_table, isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)
BUDGETS = (1e17, 1e18, 1e19, 1e20)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("figs")
    isoflop_table(d / "results.csv", LAW, budgets=BUDGETS, noise=0.002, seed=1)
    curves_table(d / "curves.csv", LAW, np.logspace(7.5, 9, 4), max_flops=1e20, points=40)
    return tables.load_runs(d / "results.csv"), tables.load_curves(d / "curves.csv")


def _legend_text(ax) -> str:
    leg = ax.get_legend()
    return " | ".join(t.get_text() for t in leg.get_texts()) if leg else ""


def _drawn(ax) -> int:
    return len(ax.lines) + sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets"))


def _labels_overlap(fig, ax) -> bool:
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_figure2_envelope_interpolates_between_sizes(data):
    runs, curves = data
    res = approach1.fit_approach1(curves)
    fig = figures.draw2(curves, res, targets=(1e21,))
    envelope, n_panel, d_panel = fig.axes[:3]
    assert all(_drawn(ax) > 0 for ax in (envelope, n_panel, d_panel))
    assert f"C^{res.n_law.exponent:.3f}" in _legend_text(n_panel)
    assert f"C^{res.d_law.exponent:.3f}" in _legend_text(d_panel)
    assert "1e+21" in _legend_text(n_panel)  # the projection is marked
    # Four sizes: the envelope's winners form a staircase of at most 4 values; interpolated, no step.
    opt = figures.interpolated_optima(curves, res)
    assert len(np.unique(res.N_opt[res.used])) <= 4 < len(np.unique(np.round(np.log10(opt.N), 4)))
    assert np.all(np.diff(np.log10(opt.N)) >= -1e-9)  # N_opt grows with C
    for ax in (envelope, n_panel, d_panel):
        assert not _labels_overlap(fig, ax)


def test_figure3_marks_each_target_with_its_interval(data):
    runs, _ = data
    res = approach2.fit_approach2(runs)
    targets = (1e21, 5.76e23)
    proj = figures.projection_intervals(runs, targets, "parabola", False, n_boot=40)
    fig = figures.draw3(runs, res, targets, proj)
    profiles, n_panel, d_panel = fig.axes
    assert _drawn(profiles) >= len(runs)
    text = _legend_text(n_panel)
    assert f"C^{res.n_law.exponent:.3f}" in text
    for t in targets:
        lo, hi = proj[("N", t)]
        assert lo < float(res.n_law(t)) < hi
        assert f"{t:.3g}" in text and f"[{lo:.3g}, {hi:.3g}]" in text
    assert n_panel.get_xlim()[1] > 5.76e23


def test_figure3_draws_an_estimate_outside_its_interval_and_flags_it(data):
    # Issue 17: a percentile interval of resampled projections need not contain the full fit's
    # value; errorbar's yerr then went negative and Fig. 3 raised ValueError. Now: bar, star, flag.
    runs, _ = data
    res = approach2.fit_approach2(runs)
    t = 1e21
    mid_n, mid_d = float(res.n_law(t)), float(res.d_law(t))
    proj = {("N", t): (2 * mid_n, 3 * mid_n), ("D", t): (0.5 * mid_d, 2 * mid_d)}
    fig = figures.draw3(runs, res, (t,), proj)
    text = _legend_text(fig.axes[1])
    assert "outside its interval" in text and f"[{2 * mid_n:.3g}, {3 * mid_n:.3g}]" in text
    assert "outside" not in _legend_text(fig.axes[2])
    flags = figures.projection_flags(res.n_law, res.d_law, (t,), proj)
    assert len(flags) == 1 and flags[0].startswith("figure 3: N* at 1e+21") and "outside its own 95%" in flags[0]


def test_figure4_ranges_follow_the_data_and_near_targets(data):
    runs, _ = data
    fig = figures.draw4(runs, LAW, targets=(1e21, 5.76e30))
    surface, slices, colorbar = fig.axes
    lo, hi = surface.get_xlim()
    assert lo < runs.C.min() and 1e21 < hi < 1e22  # 5.76e30 is 10 decades out: listed, not drawn
    assert "5.76e+30" in slices.get_title()
    a, _, g = allocation.exponents(LAW)
    assert f"(C/6)^{a:.3f}" in _legend_text(surface)  # a 6ND table
    assert f"{LAW.alpha:.4f}" in surface.get_title()
    assert _drawn(slices) > 0 and len(slices.lines) == len(BUDGETS) + 1
    assert colorbar.get_ylabel().startswith("predicted loss")
    fig.canvas.draw()  # the colorbar's label and the slices' axis label do not collide
    assert not colorbar.yaxis.label.get_window_extent().overlaps(slices.yaxis.label.get_window_extent())


def test_kaplan_figure_legends_carry_the_exponents(data):
    runs, _ = data
    k = kaplan.fit_kaplan(runs)
    fig = figures.draw_kaplan(runs, k)
    for ax, law in zip(fig.axes, (k.L_C, k.L_D, k.L_N)):
        assert _drawn(ax) > 0 and f"^{law.exponent:.3f}" in _legend_text(ax)
        assert not _labels_overlap(fig, ax)


def test_budgets_detected_from_flop_density_when_there_is_no_budget_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = isoflop_table(tmp_path / "r.csv", LAW, budgets=BUDGETS, per_budget=9)
    # Read-off FLOPs: every run's C off its budget by up to 10%, a stray run between each two
    # budgets (as on Chinchilla's Fig. 4), and no budget column.
    df["flops_6n"] *= np.exp(rng.uniform(-0.1, 0.1, len(df)))
    stray = isoflop_table(tmp_path / "s.csv", LAW, budgets=np.sqrt(np.multiply(BUDGETS[1:], BUDGETS[:-1])), per_budget=1)
    df = pd.concat([df, stray])
    df.drop(columns=["budget", "tokens"]).to_csv(tmp_path / "r.csv", index=False)
    assert budgets.budgets_too_sparse(df["flops_6n"].to_numpy())
    found = budgets.detect_budgets(df["flops_6n"].to_numpy())
    assert len(found) == len(BUDGETS) and np.allclose(np.log10(found), np.log10(BUDGETS), atol=0.05)
    out = tmp_path / "figs"
    assert figures_cli.main(["--results", str(tmp_path / "r.csv"), "--out", str(out), "--which", "3"]) == 0
    assert "4 IsoFLOP budgets detected" in capsys.readouterr().err
    assert (out / "chinchilla_fig3.png").exists()


def test_one_cluster_says_why_fig3_is_skipped(tmp_path, capsys):
    df = pd.DataFrame({"params": [1e8, 2e8, 4e8, 8e8], "flops_6n": [1e18, 1.3e19, 1e20, 2e21],
                       "final_eval_loss": [3.0, 2.8, 2.6, 2.4]})
    df.to_csv(tmp_path / "r.csv", index=False)
    assert figures_cli.main(["--results", str(tmp_path / "r.csv"), "--out", str(tmp_path / "f"), "--which", "3,kaplan"]) == 2
    err = capsys.readouterr().err
    assert "--budgets" in err


def test_figure4_slices_use_the_tables_own_flops_per_token(tmp_path):
    """A table counted with 9 FLOPs per parameter per token (Chinchilla's count for small models) is
    drawn at D = C/9N: the noise-free runs lie on their budget's slice (at C/6N they would not)."""
    df = isoflop_table(tmp_path / "r.csv", LAW, budgets=BUDGETS)
    df["budget"] = df["budget"] * 1.5  # the same (N, D) counted at C = 9ND
    for col in [c for c in df.columns if c.startswith("flops")]:
        df[col] = df[col] * 1.5
    df.to_csv(tmp_path / "r9.csv", index=False)
    runs = tables.load_runs(tmp_path / "r9.csv")
    _, slices, colorbar = figures.draw4(runs, LAW).axes
    assert "C/9N" in colorbar.get_ylabel()
    for line, c in zip(slices.lines, runs.budgets()):
        m = runs.budget == c
        drawn = np.interp(np.log(runs.N[m]), np.log(line.get_xdata()), line.get_ydata())
        np.testing.assert_allclose(drawn, runs.loss[m], rtol=1e-3)
