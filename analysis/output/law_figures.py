"""Figures of the registry laws, from the fitted law and its table (any table: they read the
law's inputs, LawData.logs, not our column names). `draw` picks a law's figures for
`analysis.fit --law ... --figures`; experiments.law_study draws them for the two study modes.

    repeated_data     Muennighoff et al. 2023 Fig. 3-style: loss against epochs (D / unique tokens)
                      at fixed compute, one colour per (N, D) (or, without repeats of one (N, D), per
                      compute bin, the curve at its median N, D), the fitted law's curve through each
    effective_data    Muennighoff et al.'s effective counts: D'/U_D against epochs D/U_D and N'/U_N
                      against N/U_N, the resampled fits' band, the table's epochs as ticks
    loss_vs_multiplier Gadre et al. 2024-style: loss against the token multiplier M = D/N at fixed
                      compute C = 6ND, one curve per compute group (any law of N and D), its minimum marked
    annealing_curves  Tissue et al. 2024: measured eval-loss curves and the law's curves, held-out
                      schedules dashed with their interval, the lr of each run below (needs run ids:
                      experiments.law_study draws it, `--figures` does not)
Bands are the central 95% of the law's resampled fits (parameter uncertainty only).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.laws import law_fit  # noqa: E402
from analysis.laws.law_report import LawResult  # noqa: E402


MAX_GROUPS = 8
LOG6 = float(np.log(6.0))


def _predict(result: LawResult, logs: dict, level: float = 0.95):
    """(loss, low, high) of the fitted law at the rows of `logs`: one predict_log call for the fit
    and its resamples (low, high None without resamples)."""
    fit, samples = result.fit, result.samples
    x = fit.x[None] if samples is None or len(samples.x) < 2 else np.concatenate([fit.x[None], samples.x])
    p = np.exp(law_fit.predict_log(fit, law_fit.LawData(logs, None), x))
    if len(x) == 1:
        return p[0], None, None
    q = 100 * (1 - level) / 2
    return p[0], np.nanpercentile(p[1:], q, 0), np.nanpercentile(p[1:], 100 - q, 0)


def _groups(key_RxK: np.ndarray, scale: np.ndarray) -> tuple[list[np.ndarray], bool]:
    """Rows sharing a key (rounded) where some key repeats (the largest MAX_GROUPS groups), else up
    to 6 quantile bins of `scale`; the flag says which."""
    _, inv, counts = np.unique(np.round(key_RxK, 2), axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    if (counts >= 2).any():
        keep = [g for g in np.argsort(-counts, kind="stable")[:MAX_GROUPS] if counts[g] >= 2]
        return [np.flatnonzero(inv == g) for g in sorted(keep, key=lambda g: np.median(scale[inv == g]))], True
    return _bins(scale), False


def _bins(scale: np.ndarray, k: int = 6) -> list[np.ndarray]:
    """Rows in up to k quantile bins of `scale`, smallest first."""
    edges = np.quantile(scale, np.linspace(0, 1, min(k, len(scale)) + 1))
    bins = np.clip(np.searchsorted(edges, scale, side="right") - 1, 0, len(edges) - 2)
    return [np.flatnonzero(bins == b) for b in np.unique(bins)]


def _moved(result: LawResult, data: law_fit.LawData, curve_logs: dict, at_logs: dict):
    """(curve, low, high, moved): the law along `curve_logs` with its band, and each row's measured
    loss moved to the curve it is drawn with (at_logs: the row's position on that curve) by the
    fitted law's ratio, law(at) / law(row), which keeps each point's residual from its curve."""
    k = len(next(iter(curve_logs.values())))
    logs = {key: np.concatenate([curve_logs[key], at_logs[key], data.logs[key]]) for key in curve_logs}
    p, lo, hi = _predict(result, logs)
    r = len(data.log_loss)
    moved = np.exp(data.log_loss) * p[k:k + r] / p[k + r:]
    band = (None, None) if lo is None else (lo[:k], hi[:k])
    return p[:k], *band, moved


def _note_moved(ax, moved, loss) -> None:
    shift = np.nanmax(np.abs(moved / loss - 1))
    if shift > 0.005:
        ax.text(0.01, 0.99, f"points moved to their group's curve by the law's ratio (up to {shift:.1%})",
                transform=ax.transAxes, fontsize=6.5, color="0.35", va="top")


def repeated_data(data: law_fit.LawData, result: LawResult):
    """Loss against epochs at fixed (N, D) for data_constrained (inputs log_n, log_d, log_u)."""
    logs, loss = data.logs, np.exp(data.log_loss)
    epochs = np.exp(logs["log_d"] - np.minimum(logs["log_u"], logs["log_d"]))
    groups, exact = _groups(np.stack([logs["log_n"], logs["log_d"]], 1), logs["log_n"] + logs["log_d"])
    grid = np.geomspace(min(epochs.min(), 1.0) / 1.5, epochs.max() * 1.5, 200)
    gn = np.array([np.median(logs["log_n"][g]) for g in groups])
    gd = np.array([np.median(logs["log_d"][g]) for g in groups])
    row_group = np.zeros(len(loss), int)
    for i, g in enumerate(groups):
        row_group[g] = i
    ln, ld = np.repeat(gn, 200), np.repeat(gd, 200)
    curve, lo, hi, moved = _moved(
        result, data, {"log_n": ln, "log_d": ld, "log_u": ld - np.tile(np.log(grid), len(groups))},
        {"log_n": gn[row_group], "log_d": gd[row_group], "log_u": gd[row_group] - np.log(epochs)})
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    for i, g in enumerate(groups):
        n, d, part = np.exp(gn[i]), np.exp(gd[i]), slice(200 * i, 200 * (i + 1))
        label = f"N={n:.3g}, D={d:.3g}" if exact else f"C~{6 * n * d:.2g} (N={n:.2g}, D={d:.2g})"
        ax.scatter(epochs[g], moved[g], color=cmap(i), s=14, zorder=3, label=label)
        ax.plot(grid, curve[part], color=cmap(i))
        if lo is not None:
            ax.fill_between(grid, lo[part], hi[part], color=cmap(i), alpha=0.15, lw=0)
    in_groups = np.concatenate(groups)
    _note_moved(ax, moved[in_groups], loss[in_groups])
    top = np.nanmax(moved[in_groups])
    ax.set_ylim(top=top + 0.5 * (top - np.nanmin(moved[in_groups])))  # the curves leave the data's range
    ax.set_xscale("log")
    ax.axvline(1.0, color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("epochs = D / unique tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Return on repeated tokens at fixed N, D: measured (points), fitted law (lines)", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def effective_data(data: law_fit.LawData, result: LawResult):
    """D'/U_D against D/U_D and N'/U_N against N/U_N (Muennighoff et al. eqs. 5-6), per unit of the
    unique amount: 1 + R* (1 - exp(-(x - 1)/R*)) beyond one pass, x itself below."""
    values = result.record.params
    draws = result.samples.values if result.samples is not None else {}
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0))
    epochs = np.exp(data.logs["log_d"] - np.minimum(data.logs["log_u"], data.logs["log_d"]))
    x = np.geomspace(0.5, max(100.0, 2 * epochs.max()), 300)
    eff = lambda r: np.where(x <= 1, x, 1 + r * (1 - np.exp(-(x - 1) / r)))
    for ax, name, what in ((axes[0], "R_D_star", "D"), (axes[1], "R_N_star", "N")):
        r = values[name]
        # A decay constant far beyond the plotted repeats has no plateau in view: the runs cannot
        # tell it from "no decay" (the search is in log R, so it runs off), and its line would
        # stretch the axis by decades (a data_constrained_cpu fit: R_N_star 2.7e13).
        unseen = 1 + r > 10 * x.max()
        note = ": no plateau in range" if unseen else ""
        ax.plot(x, x, color="0.6", ls="--", lw=0.8, label="every repeat worth a new one")
        ax.plot(x, eff(r), color="C0", ls="-." if unseen else "-", label=f"fitted, {name} = {r:.3g}{note}")
        samples = np.asarray(draws.get(name, []), float)
        samples = samples[np.isfinite(samples)]
        if len(samples) >= 2:
            band = np.array([eff(s) for s in samples])
            ax.fill_between(x, *np.percentile(band, [2.5, 97.5], 0), color="C0", alpha=0.2, lw=0, label="95% of resampled fits")
        if not unseen:
            ax.axhline(1 + r, color="C0", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{what} / U_{what}" + (" (epochs)" if what == "D" else " (parameters over the compute-optimal)"))
        ax.set_ylabel(f"{what}' / U_{what}")
        ax.legend(fontsize=7, loc="upper left")  # the curves rise to the right
    axes[0].plot(epochs, np.full_like(epochs, 0.55), "|", color="k", ms=8, label="_table's epochs")
    axes[0].set_title("Effective data: repeated tokens decay")
    axes[1].set_title("Effective parameters: excess parameters decay")
    return fig


def loss_vs_multiplier(data: law_fit.LawData, result: LawResult):
    """Loss against M = D/N at fixed C = 6ND: the table's rows grouped by compute (budgets 0.1
    decade apart, or up to 6 bins), the law's curve at each group's median C, its minimum marked."""
    logs, loss = data.logs, np.exp(data.log_loss)
    log_c, log_m = LOG6 + logs["log_n"] + logs["log_d"], logs["log_d"] - logs["log_n"]
    cut = np.flatnonzero(np.diff(np.sort(log_c)) > 0.1 * np.log(10)) + 1
    groups = np.split(np.argsort(log_c), cut) if len(cut) < MAX_GROUPS else _bins(log_c)
    gc = np.array([np.median(log_c[g]) for g in groups])
    row_c = np.zeros(len(loss))
    for i, g in enumerate(groups):
        row_c[g] = gc[i]
    grid = np.geomspace(np.exp(log_m.min()) / 2, np.exp(log_m.max()) * 2, 200)
    lc, lm = np.repeat(gc, 200), np.tile(np.log(grid), len(groups))
    nd = lambda c, m: {"log_n": 0.5 * (c - LOG6 - m), "log_d": 0.5 * (c - LOG6 + m)}
    curve, lo, hi, moved = _moved(result, data, nd(lc, lm), nd(row_c, log_m))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cmap = plt.get_cmap("plasma", max(len(groups), 2) + 1)
    for i, g in enumerate(groups):
        part = slice(200 * i, 200 * (i + 1))
        ax.scatter(np.exp(log_m[g]), moved[g], color=cmap(i), s=14, zorder=3, label=f"C ~ {np.exp(gc[i]):.2g}")
        ax.plot(grid, curve[part], color=cmap(i))
        if lo is not None:
            ax.fill_between(grid, lo[part], hi[part], color=cmap(i), alpha=0.15, lw=0)
        j = int(np.nanargmin(curve[part]))
        ax.plot(grid[j], curve[part][j], marker="v", color=cmap(i), ms=7, mec="k", mew=0.5)
    _note_moved(ax, moved, loss)
    ax.set_xscale("log")
    ax.set_xlabel("token multiplier M = D / N")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"{result.fit.law.name}: loss against M at fixed compute (triangles: the law's best M)", fontsize=10)
    ax.legend(fontsize=7, title="compute 6ND", title_fontsize=7)
    return fig


def draw(result: LawResult, data: law_fit.LawData, out_dir: str) -> list[str]:
    """The law's figures (PNG + PDF) as DIR/LAW_FIGURE.*; the PNG paths."""
    from analysis.output import figures
    name, inputs = result.fit.law.name, result.fit.law.inputs
    todo = []
    if name == "data_constrained":
        todo += [("repeated_data", repeated_data), ("effective_data", effective_data)]
    if set(inputs) == {"n", "d"}:
        todo.append(("loss_vs_multiplier", loss_vs_multiplier))
    return [figures.save(fn(data, result), out_dir, f"{name}_{fig}")[0] for fig, fn in todo]


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
