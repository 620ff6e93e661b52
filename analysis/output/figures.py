"""Paper figures from any results table: Chinchilla Figs. 2, 3, 4 and Kaplan Fig. 1 (PNG + PDF).

`draw(runs, FitOptions, out_dir, ...)` draws them; `python -m analysis.figures` is its CLI.

Ranges follow the data and the target budgets. Fig. 3 marks the Approach-2 projection at every
target budget with its bootstrap interval (as Chinchilla's marks Gopher's 5.76e23); Fig. 4 spans the
runs and the targets within FIG4_REACH_DEX decades of them (farther targets are listed, not drawn
as a mostly-extrapolated surface). A table without a budget column whose FLOPs do not fall into
groups (read-off FLOPs of Chinchilla's Fig. 4) gets its budgets from the peaks of its FLOP density
(analysis.tables.budgets); when that fails too, the note says why.
"""
from __future__ import annotations

import dataclasses
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors, ticker  # noqa: E402

from analysis.laws import allocation, approach1, approach2, approach2_many, approach3, fitters, kaplan  # noqa: E402
from analysis.records import InputError  # noqa: E402
from analysis.tables import budgets, tables  # noqa: E402
from analysis.uncertainty import noise, parametric  # noqa: E402
from plumbing import atomic  # noqa: E402

FIG4_REACH_DEX = 4.0  # Fig. 4 draws the fitted surface this far past the largest run, no farther
PROJECTION_BOOTSTRAP = 200  # resamples for Fig. 3's projection intervals (parabola fits: ~1 s)


# Every figure as PNG (what the report embeds) and PDF. The test suite keeps PNG alone outside the one
# test of both (tests/conftest.py): a PDF costs about as much again as its PNG to render.
FORMATS = ("png", "pdf")


def save(fig, out_dir, name) -> list[str]:
    """One file per FORMATS (PNG first), each written atomically (plumbing.atomic)."""
    paths = []
    for ext in FORMATS:
        final = os.path.join(out_dir, f"{name}.{ext}")
        with atomic.atomic_open(final, "wb", parents=True) as fh:
            fig.savefig(fh, format=ext, dpi=150, bbox_inches="tight")
        paths.append(final)
    plt.close(fig)
    return paths


def default_targets(c_max: float) -> tuple[float, ...]:
    """10x the largest budget, and Chinchilla's (= Gopher's) 5.76e23 FLOPs."""
    return tuple(sorted({float(f"{10 * c_max:.3g}"), allocation.GOPHER_FLOPS}))


def tidy_log_axis(axis) -> None:
    """Log ticks whose labels cannot collide: one label per decade (or per k decades on long axes);
    on an axis shorter than two decades, labels at 1, 2, 5 x 10^k."""
    lo, hi = (np.log10(v) for v in sorted(axis.get_view_interval()))
    span = hi - lo
    if span < 2:
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        # Below two ticks matplotlib falls back to linear tick positions (2.2, 2.4, ...): two digits.
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.2g}".replace("e+0", "e").replace("e+", "e")))
    else:
        step = max(1, int(np.ceil(span / 7)))
        axis.set_major_locator(ticker.LogLocator(base=10 ** step, numticks=12))
        axis.set_major_formatter(ticker.LogFormatterSciNotation(base=10))
    axis.set_minor_formatter(ticker.NullFormatter())


def _tidy(ax) -> None:
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            tidy_log_axis(axis)


# --- Figure 2: training-curve envelope (Approach 1) ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Optima:
    C: np.ndarray
    N: np.ndarray
    D: np.ndarray


def interpolated_optima(curves: tables.Curves, res: approach1.Approach1Result) -> Optima:
    """N_opt between the grid's sizes: at each envelope FLOP value, the vertex of a parabola in log N
    through the winning size and its two neighbours (their losses interpolated at that C), as
    Chinchilla interpolates between model sizes; D follows from the winner's C/(N D)."""
    sizes = np.unique(curves.N)
    logc = np.log(res.C[res.used])
    loss = np.full((len(sizes), len(logc)), np.inf)
    for r in np.unique(curves.run_id):
        m = curves.run_id == r
        o = np.argsort(curves.flops[m])
        lf, ll = np.log(curves.flops[m][o]), np.log(curves.loss[m][o])
        inside = (logc >= lf[0]) & (logc <= lf[-1])
        k = np.searchsorted(sizes, curves.N[m][0])
        loss[k, inside] = np.minimum(loss[k, inside], np.interp(logc[inside], lf, ll))
    n_out = res.N_opt[res.used].astype(float).copy()
    x = np.log10(sizes)
    for j in range(len(logc)):
        ok = np.flatnonzero(np.isfinite(loss[:, j]))
        if len(ok) < 3:
            continue
        w = ok[np.argmin(loss[ok, j])]
        pos = int(np.searchsorted(ok, w))
        if pos == 0 or pos == len(ok) - 1:
            continue
        trio = ok[pos - 1: pos + 2]
        c2, c1, _ = np.polyfit(x[trio], loss[trio, j], 2)
        if c2 > 0:
            n_out[j] = 10 ** np.clip(-c1 / (2 * c2), x[trio[0]], x[trio[-1]])
    d_out = res.D_opt[res.used] * res.N_opt[res.used] / n_out  # same C = k N D as the winner
    return Optima(res.C[res.used], n_out, d_out)


def outside(mid: float, iv) -> bool:
    """True when an interval (lo, hi) is known and the estimate lies outside it: percentile
    intervals of resampled estimates need not contain the full fit's value (a skewed or biased
    resampling distribution). A finding to state, never an error (issue 17)."""
    return iv is not None and iv[0] is not None and bool(np.all(np.isfinite(iv))) and not iv[0] <= mid <= iv[1]


def projection_flags(n_law, d_law, targets, projections, level: float = 0.95) -> list[str]:
    """One note per Approach-2 projection (N* or D* at a target) outside its own interval."""
    out = []
    for t in targets:
        for key, law in (("N", n_law), ("D", d_law)):
            mid, iv = float(law(t)), (projections or {}).get((key, t))
            if outside(mid, iv):
                out.append(f"figure 3: {key}* at {t:.3g} FLOPs = {mid:.3g} lies outside its own {level:.0%} "
                           f"interval [{iv[0]:.3g}, {iv[1]:.3g}] over the resamples: the resampled projections "
                           f"are skewed against the full fit (a finding, drawn as a bar and a star)")
    return out


def _projection(ax, t, mid, iv, unit) -> None:
    """The estimate as a star and its interval as a capped bar from low to high, drawn apart so an
    estimate outside its interval is shown (and labelled), where errorbar's yerr would be negative."""
    known = iv is not None and bool(np.all(np.isfinite(iv)))
    flag = outside(mid, iv)
    if known:
        ax.plot([t, t], list(iv), "-", color="C3", marker="_", ms=9, mew=1.5, zorder=4)
    label = f"{unit}* at {t:.3g}: {mid:.3g}" + (f" [{iv[0]:.3g}, {iv[1]:.3g}]" if known else "")
    ax.plot([t], [mid], "*", ms=11, color="C3", zorder=5, label=label + (" † outside its interval" if flag else ""))


def _law_panels(ax_n, ax_d, c, n_opt, d_opt, n_law, d_law, targets=(), projections=None):
    hi = max([c.max(), *targets])
    cc = np.logspace(np.log10(c.min()) - 0.2, np.log10(hi) + 0.2, 100)
    ax_n.scatter(c, n_opt, s=12, color="k", zorder=3, label="optima")
    ax_n.plot(cc, n_law(cc), "C1", label=f"N_opt ∝ C^{n_law.exponent:.3f}")
    ax_d.scatter(c, d_opt, s=12, color="k", zorder=3, label="optima")
    ax_d.plot(cc, d_law(cc), "C2", label=f"D_opt ∝ C^{d_law.exponent:.3f}")
    for t in targets:
        for ax, law, key, unit in ((ax_n, n_law, "N", "N"), (ax_d, d_law, "D", "D")):
            _projection(ax, t, float(law(t)), (projections or {}).get((key, t)), unit)
    for ax, lab in ((ax_n, "Parameters N_opt"), (ax_d, "Tokens D_opt")):
        ax.set(xscale="log", yscale="log", xlabel="FLOPs C", ylabel=lab)
        _tidy(ax)
        ax.legend(fontsize=7)


def draw2(curves: tables.Curves, res: approach1.Approach1Result, targets=()):
    """Chinchilla Fig. 2: training curves and their envelope; N_opt(C), D_opt(C) from the envelope."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    sizes = np.unique(curves.N)
    cmap = plt.get_cmap("viridis")
    norm = colors.LogNorm(sizes.min(), sizes.max()) if len(sizes) > 1 else None
    for r in np.unique(curves.run_id):
        m = curves.run_id == r
        o = np.argsort(curves.flops[m])
        col = cmap(norm(curves.N[m][0])) if norm else "C0"
        axes[0].plot(curves.flops[m][o], curves.loss[m][o], color=col, lw=0.8)
    axes[0].scatter(res.C[res.used], res.loss[res.used], s=3, color="r", zorder=3,
                    label="envelope (minimum over runs)")
    if norm:
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0], label="Parameters N", pad=0.01)
    axes[0].set(xscale="log", yscale="log", xlabel="FLOPs", ylabel="Training loss", title="Training curve envelope")
    _tidy(axes[0])
    axes[0].legend(fontsize=8)
    opt = interpolated_optima(curves, res)
    every = np.unique(np.linspace(0, len(opt.C) - 1, min(len(opt.C), 60)).astype(int))  # 1,500 FLOP values: thin them
    axes[1].scatter(res.C[res.used][every], res.N_opt[res.used][every], s=4, color="0.7",
                    label="envelope winner (a grid size)")
    _law_panels(axes[1], axes[2], opt.C[every], opt.N[every], opt.D[every], res.n_law, res.d_law, targets)
    axes[1].set_title("N_opt interpolated between sizes", fontsize=9)
    return fig


def figure2(curves: tables.Curves, res: approach1.Approach1Result, out_dir, targets=()) -> list[str]:
    return save(draw2(curves, res, targets), out_dir, "chinchilla_fig2")


# --- Figure 3: IsoFLOP profiles (Approach 2) -----------------------------------------------------------

def projection_intervals(runs: tables.Runs, targets, interp: str, include_edges: bool, level: float = 0.95,
                         n_boot: int = PROJECTION_BOOTSTRAP, seed: int = 0) -> dict:
    """{("N"|"D", C_target): (lo, hi)}: percentile intervals of the Approach-2 power laws at each target
    over the fit's own resampling (analysis.uncertainty.parametric: losses drawn from the measured noise where the
    table has it, else runs resampled within budgets), so they agree with fits.json's interval on a."""
    def values(fit):
        return {f"{k}@{t!r}": float(law(t)) for t in targets for k, law in (("N", fit.n_law), ("D", fit.d_law))}

    def at_targets(r):
        return values(approach2.fit_approach2(r, interp, include_edges))

    def rows(r, losses):  # the same, every draw in one call (each weighted by its own noise, as "auto")
        fits = approach2_many.fit_rows(r, losses, noise.sigma_rows(r, losses), include_edges)
        return [f if isinstance(f, Exception) else parametric.attempt(lambda _: values(f), r) for f in fits]
    pct = parametric.generic(runs, at_targets, n_boot, seed, rows=rows if interp == "parabola" else None).intervals(level)
    return {(k.split("@")[0], float(k.split("@")[1])): v for k, v in pct.items()}


@dataclasses.dataclass(frozen=True)
class ValidationPoints:
    """Runs that test the fit's prediction beyond the grid (role "validation"): drawn, never fitted."""
    C: np.ndarray
    N: np.ndarray
    loss: np.ndarray

    @classmethod
    def from_table(cls, df) -> "ValidationPoints | None":
        if "role" not in df.columns:
            return None
        m = (df["role"].astype(str).str.strip() == "validation") & np.isfinite(pd.to_numeric(df.get("final_eval_loss"), errors="coerce"))
        if not m.any():
            return None
        return cls(*(pd.to_numeric(df.loc[m, k]).to_numpy(float) for k in ("budget", "params", "final_eval_loss")))


VALIDATION_STYLE = dict(marker="D", s=28, facecolor="none", edgecolor="k", lw=1.0, zorder=5,
                        label="validation runs (not fitted)")


def draw3(runs: tables.Runs, res: approach2.Approach2Result, targets=(), projections=None, validation=None):
    """Chinchilla Fig. 3: IsoFLOP profiles with fitted parabolas; N_opt(C), D_opt(C) with the
    projection at each target budget; validation runs as open diamonds."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    cmap = plt.get_cmap("plasma")
    for i, o in enumerate(res.optima):
        m = runs.budget == o.C
        col = cmap(0.85 * i / max(len(res.optima) - 1, 1))
        axes[0].scatter(runs.N[m], runs.loss[m], s=10, color=col, label=f"{o.C:.2g}")
        if o.coeffs:
            x = np.linspace(np.log10(runs.N[m].min()), np.log10(runs.N[m].max()), 100)
            axes[0].plot(10**x, np.polyval(o.coeffs, x), color=col, lw=1)
        axes[0].scatter([o.N_opt], [o.loss_opt], marker="x" if o.at_edge else "o", color=col, s=30,
                        edgecolor="k" if not o.at_edge else None, zorder=3)
    if validation is not None:
        axes[0].scatter(validation.N, validation.loss, **VALIDATION_STYLE)
    axes[0].set(xscale="log", xlabel="Parameters N", ylabel="Final loss", title="IsoFLOP profiles (x: optimum at the edge)")
    _tidy(axes[0])
    axes[0].legend(fontsize=6, title="FLOPs", title_fontsize=7, ncol=2 if len(res.optima) > 6 else 1)
    used = np.array([o.C in res.used_budgets for o in res.optima])
    c = np.array([o.C for o in res.optima])
    _law_panels(axes[1], axes[2], c[used], np.array([o.N_opt for o in res.optima])[used],
                np.array([o.D_opt for o in res.optima])[used], res.n_law, res.d_law, targets, projections)
    return fig


def figure3(runs: tables.Runs, res: approach2.Approach2Result, out_dir, targets=(), projections=None,
            validation=None) -> list[str]:
    return save(draw3(runs, res, targets, projections, validation), out_dir, "chinchilla_fig3")


# --- Figure 4: parametric fit (Approach 3) -------------------------------------------------------------

def fig4_ranges(runs: tables.Runs, law: allocation.LawParams, targets) -> tuple[tuple, tuple, list, list]:
    """(log10 C range, log10 N range, targets drawn, targets only listed)."""
    c_max = np.log10(runs.C.max())
    drawn = [t for t in targets if np.log10(t) <= c_max + FIG4_REACH_DEX]
    far = [t for t in targets if t not in drawn]
    c_lo, c_hi = np.log10(runs.C.min()) - 0.3, max([c_max, *np.log10(drawn)]) + 0.3
    k = allocation.flops_per_param_token(runs.C, runs.N, runs.D)
    front = allocation.optimal_allocation(law, 10 ** np.array([c_lo, c_hi]), k).N_opt
    n_lo = min(np.log10(runs.N.min()), np.log10(front.min())) - 0.3
    n_hi = max(np.log10(runs.N.max()), np.log10(front.max())) + 0.3
    return (c_lo, c_hi), (n_lo, n_hi), drawn, far


def _slice_budgets(runs: tables.Runs, drawn_targets, most: int = 5) -> list[float]:
    b = runs.budgets()
    if len(b) > most:
        b = b[np.unique(np.round(np.linspace(0, len(b) - 1, most)).astype(int))]
    return [float(x) for x in b] + list(drawn_targets)


def draw4(runs: tables.Runs, law: allocation.LawParams, targets=(), validation=None):
    """Chinchilla Fig. 4: contours of the fitted L(N, D = C/kN) over (C, N), the efficient frontier
    N*(C) of eq. 4, and IsoFLOP slices through the fitted surface at the data's budgets (with their
    runs) and at the target budgets. k is the table's own FLOPs per parameter per token (6 for 6ND
    data): with D = C/6N a table counted in Chinchilla's FLOPs would draw its slices at the wrong D."""
    (c_lo, c_hi), (n_lo, n_hi), drawn, far = fig4_ranges(runs, law, targets)
    k = allocation.flops_per_param_token(runs.C, runs.N, runs.D)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    cc, nn = np.meshgrid(np.logspace(c_lo, c_hi, 200), np.logspace(n_lo, n_hi, 200))
    ll = law.loss(nn, cc / (k * nn))
    top = float(np.percentile(ll, 90))
    levels = np.geomspace(float(ll.min()), max(top, float(ll.min()) * 1.01), 25)
    cs = axes[0].contourf(cc, nn, np.clip(ll, None, top), levels=levels, cmap="viridis", norm=colors.LogNorm())
    cb = fig.colorbar(cs, ax=axes[0], pad=0.01)
    cb.set_label(f"predicted loss L(N, D = C/{k:.3g}N)")
    cb.locator = ticker.MaxNLocator(6)
    cb.formatter = ticker.FormatStrFormatter("%.2f")
    cb.update_ticks()
    axes[0].scatter(runs.C, runs.N, s=8, c="w", edgecolor="k", lw=0.3, label="runs", zorder=3)
    if validation is not None:
        axes[0].scatter(validation.C, validation.N, **{**VALIDATION_STYLE, "edgecolor": "w"})
    a, b, g = allocation.exponents(law)
    front = allocation.optimal_allocation(law, cc[0], k)
    axes[0].plot(cc[0], front.N_opt, "r", label=f"efficient frontier N* = {g:.3g} (C/{k:.3g})^{a:.3f}")
    for t in drawn:
        n_t = allocation.optimal_allocation(law, t, k).N_opt[0]
        axes[0].plot([t], [n_t], "*", ms=12, color="C3", mec="k", zorder=4)
        axes[0].annotate(f"{t:.3g}: N*={n_t:.3g}", (t, n_t), xytext=(-6, 6), textcoords="offset points",
                         ha="right", fontsize=7, color="w")
    axes[0].set(xscale="log", yscale="log", xlabel="FLOPs C", ylabel="Parameters N",
                xlim=(10**c_lo, 10**c_hi), ylim=(10**n_lo, 10**n_hi))
    axes[0].set_title(f"L = {law.E:.3f} + {law.A:.4g}/N^{law.alpha:.4f} + {law.B:.4g}/D^{law.beta:.4f}", fontsize=9)
    _tidy(axes[0])
    axes[0].legend(fontsize=7, loc="upper left")
    cmap = plt.get_cmap("plasma")
    slices = _slice_budgets(runs, drawn)
    for i, c in enumerate(slices):
        col = cmap(0.85 * i / max(len(slices) - 1, 1))
        m = runs.budget == c
        if m.any():
            axes[1].scatter(runs.N[m], runs.loss[m], s=10, color=col, zorder=3)
            lo, hi = np.log10(runs.N[m].min()) - 0.3, np.log10(runs.N[m].max()) + 0.3
        else:
            n_t = np.log10(allocation.optimal_allocation(law, c, k).N_opt[0])
            lo, hi = n_t - 1.0, n_t + 1.0
        n = np.logspace(lo, hi, 200)
        kind = "" if m.any() else " (target)"
        axes[1].plot(n, law.loss(n, c / (k * n)), color=col, ls="-" if m.any() else "--", label=f"C = {c:.2g}{kind}")
    far_note = f"; beyond the plot: {', '.join(f'{t:.3g}' for t in far)} (see report)" if far else ""
    axes[1].set(xscale="log", xlabel="Parameters N", ylabel="Loss")
    axes[1].set_title("IsoFLOP slices of the fit (points: runs)" + far_note, fontsize=9)
    _tidy(axes[1])
    axes[1].legend(fontsize=7)
    return fig


def figure4(runs: tables.Runs, law: allocation.LawParams, out_dir, targets=(), validation=None) -> list[str]:
    return save(draw4(runs, law, targets, validation), out_dir, "chinchilla_fig4")


# --- Kaplan Fig. 1 --------------------------------------------------------------------------------------

def draw_kaplan(runs: tables.Runs, k: kaplan.KaplanResult):
    """Kaplan Fig. 1: loss against compute, dataset size and parameters, with the power-law fits."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    n = runs.N_nonembed if k.nonembedding else runs.N
    for ax, x, law, name, sym in ((axes[0], runs.C, k.L_C, "Compute C (FLOPs)", "C"),
                                  (axes[1], runs.D, k.L_D, "Dataset size D (tokens)", "D"),
                                  (axes[2], n, k.L_N, "Parameters N" + (" (non-embedding)" if k.nonembedding else ""), "N")):
        ax.scatter(x, runs.loss, s=6, color="0.6", label="runs")
        env = kaplan.envelope(x, runs.loss)
        ax.scatter(x[env], runs.loss[env], s=10, color="k", label="envelope")
        xx = np.logspace(np.log10(x.min()), np.log10(x.max()), 50)
        ax.plot(xx, law(xx), "C3", label=f"L = ({sym}_c/{sym})^{law.exponent:.3f}, {sym}_c = {law.scale:.2e}")
        ax.set(xscale="log", yscale="log", xlabel=name, ylabel="Loss")
        _tidy(ax)
        ax.legend(fontsize=7)
    return fig


def kaplan_figure1(runs: tables.Runs, k: kaplan.KaplanResult, out_dir) -> list[str]:
    return save(draw_kaplan(runs, k), out_dir, "kaplan_fig1")


# --- the library entry point -------------------------------------------------------------------------

FIGURE_NAMES = ("2", "3", "4", "kaplan")


@dataclasses.dataclass(frozen=True)
class Drawn:
    paths: tuple[str, ...]  # PNG and PDF of every figure drawn
    notes: tuple[str, ...]  # figures skipped, with the reason; findings drawn (an estimate outside its interval)


def draw(runs: tables.Runs, options: fitters.FitOptions, out_dir: str, which: frozenset[str] | None = None,
         targets: tuple[float, ...] | None = None, fits: fitters.FitResult | None = None,
         projections: dict | None = None, validation: ValidationPoints | None = None) -> Drawn:
    """The figures of `which` (None: 3, 4, kaplan, and 2 with options.curves, each skipped with its
    reason when the table cannot support it; named, each must be drawn) into out_dir. Figures 2-4 fit
    as the fit does (options' curves, smoothing, profile model, edges, delta, start grid). With `fits`,
    Figure 3 draws its Approach 2 fit and Figure 4 its approach3 law instead of fitting again;
    `projections` (projection_intervals' result) saves Figure 3 its resampling; `validation`: runs
    beyond the grid that Figures 3 and 4 mark as open diamonds (never fitted)."""
    explicit = which is not None
    which = figures_asked(which, options, targets)
    targets = tuple(targets) if targets is not None else default_targets(float(runs.C.max()))
    o = options

    def fig2():
        curves = fitters.usable_curves(o.curves, o.curve_loss_col, o.flops_convention, runs, o.smooth_dex)
        return figure2(curves, approach1.fit_approach1(curves, drop_edges=not o.include_edges), out_dir, targets)

    def fig3():
        res = fits and fits.approach2_under(o.interp, o.include_edges)
        res = res or approach2.fit_approach2(runs, o.interp, o.include_edges)
        proj = projections if projections is not None else projection_intervals(runs, targets, o.interp, o.include_edges)
        flags.extend(projection_flags(res.n_law, res.d_law, targets, proj))
        return figure3(runs, res, out_dir, targets, proj, validation)

    draw_one = {"2": fig2, "3": fig3, "4": lambda: figure4(runs, _approach3_law(o, runs, fits), out_dir, targets, validation),
                "kaplan": lambda: kaplan_figure1(runs, kaplan.fit_kaplan(runs), out_dir)}
    written, notes, flags = [], [], []
    for name in FIGURE_NAMES:
        if name not in which:
            continue
        try:
            written += draw_one[name]()
        except InputError as e:
            if explicit:
                raise
            notes.append(f"figure {name} skipped: {e}")
    if not written:
        raise InputError("no figure could be drawn from this table (see the notes above)")
    return Drawn(tuple(written), tuple(notes + flags))


def figures_asked(which: frozenset[str] | None, options: fitters.FitOptions, targets) -> set[str]:
    """The figures to draw (see draw), or InputError for a request that cannot be met."""
    which = set(which) if which is not None else {"3", "4", "kaplan", *(("2",) if options.curves else ())}
    unknown = which - set(FIGURE_NAMES)
    if unknown:
        raise InputError(f"--which: unknown figure(s) {', '.join(sorted(unknown))}; choose from 2,3,4,kaplan")
    if "2" in which and not options.curves:
        raise InputError("--which 2 needs --curves FILE (loss curves in long format)")
    if targets is not None and any(t <= 0 for t in targets):
        raise InputError("--targets: budgets must be positive FLOP counts, e.g. 1e13,5.76e23")
    return which


def _approach3_law(options: fitters.FitOptions, runs, fits: fitters.FitResult | None) -> allocation.LawParams:
    if fits is not None:
        f = fits.fits.get("approach3")
        keys = ("E", "A", "B", "alpha", "beta")
        if f is None or not all(np.isfinite(f.params.get(k, np.nan)) for k in keys):
            raise InputError(f"--fits {fits.source}: no approach3 fit with E, A, B, alpha, beta")
        return allocation.LawParams(*(float(f.params[k]) for k in keys))
    return approach3.fit_huber(runs.N, runs.D, runs.loss, delta=options.delta, grid=options.grid).params


def detected_budgets(df, cols: tables.Columns) -> tuple[tuple[float, ...], str | None]:
    """(budgets, note): budgets from the FLOP density when the table has no budget column, no
    --budgets, and FLOPs that do not fall into groups; the note says so, or why none were found."""
    if cols.budget or cols.budgets or "budget" in [str(h).strip() for h in df.columns]:
        return (), None
    runs = tables.runs_from(df, cols)
    if not budgets.budgets_too_sparse(runs.C, cols.budget_gap_dex):
        return (), None
    found = budgets.detect_budgets(runs.C)
    if len(found) < 2:
        return (), (f"the table has no budget column and its FLOPs form {len(found)} cluster(s) of >= 3 runs: "
                    "Approach 2 needs IsoFLOP budgets; pass --budgets C1,C2,... or --budget-col")
    return found, (f"no budget column; {len(found)} IsoFLOP budgets detected from the FLOP density: "
                   f"{', '.join(f'{b:.2g}' for b in found)} (--budgets to set them)")


def table_columns(df, cols: tables.Columns) -> tuple[tables.Columns, tuple[float, ...], str | None]:
    """(columns, budgets detected, note): the budgets detected from the FLOP density where the table has none."""
    detected, note = detected_budgets(df, cols)
    return (dataclasses.replace(cols, budgets=detected) if detected else cols), detected, note
