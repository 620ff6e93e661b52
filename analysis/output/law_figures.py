"""Figures of the registry laws fitted to a study's own runs (experiments.law_study draws them):

    repeated_data    Muennighoff et al. 2023 Fig. 3-style: final loss against epochs (D / unique
                     tokens) at fixed compute, one colour per (N, D), the fitted law's curve through each
    annealing_curves Tissue et al. 2024: measured eval-loss curves and the law's curves, held-out
                     schedules dashed with their interval, the lr of each run below
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.laws import law_fit  # noqa: E402
from analysis.laws.law_report import LawResult  # noqa: E402


def repeated_data(rows: pd.DataFrame, result: LawResult):
    """`rows`: params, tokens, unique_tokens, final_eval_loss of each fitted run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups = rows.groupby(["params", "tokens"], sort=True)
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    for i, ((n, d), g) in enumerate(groups):
        epochs = g["tokens"] / g["unique_tokens"]
        ax.scatter(epochs, g["final_eval_loss"], color=cmap(i), zorder=3, label=f"N={n:,.0f}, D={d:.3g}")
        grid = np.geomspace(min(epochs.min(), 1.0) / 1.5, epochs.max() * 1.5, 200)
        logs = {"log_n": np.full(200, np.log(n)), "log_d": np.full(200, np.log(d)), "log_u": np.log(d / grid)}
        ax.plot(grid, np.exp(law_fit.predict_log(result.fit, law_fit.LawData(logs, None))[0]), color=cmap(i))
    ax.set_xscale("log")
    ax.axvline(1.0, color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("epochs = D / unique tokens")
    ax.set_ylabel("final eval loss (nats/token)")
    ax.set_title("Return on repeated tokens: measured (points), fitted law (lines)")
    ax.legend(fontsize=7)
    return fig


def annealing_curves(measured: pd.DataFrame, predicted: pd.DataFrame, held_out: set[str]):
    """`measured`: run_id, step, eval_loss, lr; `predicted`: run_id, step, predicted_loss, _low, _high."""
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True, height_ratios=(3, 1))
    for i, (run, g) in enumerate(measured.groupby("run_id", sort=False)):
        colour = f"C{i}"
        m = g.dropna(subset=["eval_loss"])
        ax.scatter(m["step"], m["eval_loss"], s=10, color=colour, zorder=3)
        p = predicted[predicted["run_id"] == run].sort_values("step")
        dashed = run in held_out
        ax.plot(p["step"], p["predicted_loss"], color=colour, ls="--" if dashed else "-",
                label=f"{run} ({'held out' if dashed else 'fitted'})")
        if dashed and np.isfinite(p["predicted_low"]).any():
            ax.fill_between(p["step"], p["predicted_low"], p["predicted_high"], color=colour, alpha=0.2, lw=0)
        ax_lr.plot(g["step"], g["lr"], color=colour)
    ax.set_ylabel("eval loss (nats/token)")
    ax.set_title("Annealing law: measured (points), fitted and predicted (lines)")
    ax.legend(fontsize=7)
    last = measured.dropna(subset=["eval_loss"])
    tail = last[last["step"] >= last["step"].max() * 0.1]["eval_loss"]
    if len(tail):
        ax.set_ylim(tail.min() - 0.05 * (tail.max() - tail.min() + 0.01), tail.max() + 0.1 * (tail.max() - tail.min() + 0.01))
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("lr")
    return fig
