"""Paper figures from any results table: Chinchilla Figs. 2, 3, 4 and Kaplan Fig. 1 (PNG + PDF).

python -m analysis.figures --results FILE [--curves FILE] --out DIR [--which 2,3,4,kaplan]
"""
from __future__ import annotations

import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis import allocation, approach1, approach2, approach3, kaplan, tables  # noqa: E402
from analysis.cli_common import Parser, add_grid_flags, add_table_flags, columns_from, grid_from, run_main  # noqa: E402
from analysis.records import InputError  # noqa: E402


def save(fig, out_dir, name) -> list[str]:
    """PNG and PDF, each written to a temp file in out_dir and renamed into place."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        final = os.path.join(out_dir, f"{name}.{ext}")
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tmp-", suffix=f".{ext}")
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=ext, dpi=150, bbox_inches="tight")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        paths.append(final)
    plt.close(fig)
    return paths


def _law_panels(ax_n, ax_d, c, n_opt, d_opt, n_law, d_law, project_to=None):
    hi = max(c.max(), project_to or 0)
    cc = np.logspace(np.log10(c.min()), np.log10(hi), 50)
    ax_n.scatter(c, n_opt, s=12, color="k")
    ax_n.plot(cc, n_law(cc), "C1", label=f"N_opt ∝ C^{n_law.exponent:.3f}")
    ax_d.scatter(c, d_opt, s=12, color="k")
    ax_d.plot(cc, d_law(cc), "C2", label=f"D_opt ∝ C^{d_law.exponent:.3f}")
    for ax, lab in ((ax_n, "Parameters N_opt"), (ax_d, "Tokens D_opt")):
        ax.set(xscale="log", yscale="log", xlabel="FLOPs C", ylabel=lab)
        ax.legend(fontsize=8)


def figure2(curves: tables.Curves, res: approach1.Approach1Result, out_dir) -> list[str]:
    """Chinchilla Fig. 2: training curves and their envelope; N_opt(C), D_opt(C) from the envelope."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    sizes = np.unique(curves.N)
    cmap = plt.get_cmap("viridis")
    for r in np.unique(curves.run_id):
        m = curves.run_id == r
        k = np.searchsorted(sizes, curves.N[m][0]) / max(len(sizes) - 1, 1)
        o = np.argsort(curves.flops[m])
        axes[0].plot(curves.flops[m][o], curves.loss[m][o], color=cmap(k), lw=0.8)
    axes[0].scatter(res.C[res.used], res.loss[res.used], s=3, color="r", label="envelope (minimum over runs)")
    axes[0].set(xscale="log", xlabel="FLOPs", ylabel="Training loss", title="Training curve envelope")
    axes[0].legend(fontsize=8)
    _law_panels(axes[1], axes[2], res.C[res.used], res.N_opt[res.used], res.D_opt[res.used], res.n_law, res.d_law)
    return save(fig, out_dir, "chinchilla_fig2")


def figure3(runs: tables.Runs, res: approach2.Approach2Result, out_dir, project_to=1e24) -> list[str]:
    """Chinchilla Fig. 3: IsoFLOP profiles with fitted parabolas; N_opt(C), D_opt(C) with projections."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    cmap = plt.get_cmap("plasma")
    for i, o in enumerate(res.optima):
        m = runs.budget == o.C
        col = cmap(i / max(len(res.optima) - 1, 1))
        axes[0].scatter(runs.N[m], runs.loss[m], s=10, color=col, label=f"{o.C:.0e}")
        if o.coeffs:
            x = np.linspace(np.log10(runs.N[m].min()), np.log10(runs.N[m].max()), 100)
            axes[0].plot(10**x, np.polyval(o.coeffs, x), color=col, lw=1)
        axes[0].scatter([o.N_opt], [o.loss_opt], marker="x" if o.at_edge else "o", color=col, s=30)
    axes[0].set(xscale="log", xlabel="Parameters N", ylabel="Final loss", title="IsoFLOP profiles")
    axes[0].legend(fontsize=6, title="FLOPs", title_fontsize=7)
    used = np.array([o.C in res.used_budgets for o in res.optima])
    c = np.array([o.C for o in res.optima])
    _law_panels(axes[1], axes[2], c[used], np.array([o.N_opt for o in res.optima])[used],
                np.array([o.D_opt for o in res.optima])[used], res.n_law, res.d_law, project_to)
    return save(fig, out_dir, "chinchilla_fig3")


def figure4(runs: tables.Runs, law: allocation.LawParams, out_dir, slices=None) -> list[str]:
    """Chinchilla Fig. 4: contours of the fitted L(N, D=C/6N) over (C, N), the efficient frontier
    N*(C) of eq. 4, and IsoFLOP slices through the fitted surface."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    c_lo, c_hi = np.log10(runs.C.min()) - 0.5, max(np.log10(runs.C.max()) + 1, 24)
    n_lo, n_hi = np.log10(runs.N.min()) - 0.5, np.log10(runs.N.max()) + 1.5
    cc, nn = np.meshgrid(np.logspace(c_lo, c_hi, 200), np.logspace(n_lo, n_hi, 200))
    ll = law.loss(nn, cc / (6 * nn))
    cs = axes[0].contourf(cc, nn, np.log(ll), levels=30, cmap="viridis")
    fig.colorbar(cs, ax=axes[0], label="log of predicted loss")
    axes[0].scatter(runs.C, runs.N, s=6, c="w", edgecolor="k", lw=0.3, label="runs")
    a, b, g = allocation.exponents(law)
    front = allocation.optimal_allocation(law, cc[0])
    axes[0].plot(cc[0], front.N_opt, "r", label=f"efficient frontier N* = {g:.3g} (C/6)^{a:.3f}")
    axes[0].set(xscale="log", yscale="log", xlabel="FLOPs C", ylabel="Parameters N",
                title=f"L = {law.E:.3f} + {law.A:.4g}/N^{law.alpha:.4f} + {law.B:.4g}/D^{law.beta:.4f}")
    axes[0].set_ylim(10**n_lo, 10**n_hi)
    axes[0].legend(fontsize=7, loc="upper left")
    for c in slices or np.logspace(c_lo + 0.5, c_hi, 5):
        n = np.logspace(n_lo, n_hi, 200)
        axes[1].plot(n, law.loss(n, c / (6 * n)), label=f"C = {c:.1e}")
    axes[1].set(xscale="log", yscale="log", xlabel="Parameters N", ylabel="Predicted loss", title="IsoFLOP slices")
    axes[1].legend(fontsize=7)
    return save(fig, out_dir, "chinchilla_fig4")


def kaplan_figure1(runs: tables.Runs, k: kaplan.KaplanResult, out_dir) -> list[str]:
    """Kaplan Fig. 1: loss against compute, dataset size and parameters, with the power-law fits."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
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
        ax.legend(fontsize=7)
    return save(fig, out_dir, "kaplan_fig1")


DEFAULT_FIGURES = "3,4,kaplan"


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.figures", description="Chinchilla Figs. 2-4 and Kaplan Fig. 1 as PNG + PDF.")
    add_table_flags(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--which", default=DEFAULT_FIGURES,
                   help=f"comma-separated subset of 2,3,4,kaplan (2 needs --curves); default {DEFAULT_FIGURES}, "
                        "plus 2 with --curves")
    p.add_argument("--curves", help="loss curves CSV for Figure 2 (Approach 1)")
    p.add_argument("--curve-loss-col", help="curve loss column (default: eval_loss if it has values, else train_loss)")
    p.add_argument("--interp", choices=("parabola", "akima"), default="parabola", help="Figure 3 profile model")
    p.add_argument("--include-edges", action="store_true", help="Figures 2-3: fit through edge optima too")
    p.add_argument("--delta", type=float, default=1e-3, help="Figure 4: Huber delta of the Approach 3 fit")
    add_grid_flags(p)
    return p


def main_body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    which = {w.strip() for w in args.which.split(",") if w.strip()}
    # By default, draw what the table supports; a figure asked for by name must be drawn.
    explicit = args.which != DEFAULT_FIGURES
    if args.curves and "2" not in which and not explicit:
        which.add("2")
    unknown = which - {"2", "3", "4", "kaplan"}
    if unknown:
        raise InputError(f"--which: unknown figure(s) {', '.join(sorted(unknown))}; choose from 2,3,4,kaplan")
    if "2" in which and not args.curves:
        raise InputError("--which 2 needs --curves FILE (loss curves in long format)")
    runs = tables.drop_highest_loss(tables.load_runs(args.results, columns_from(args)), args.drop_highest)
    draw = {
        "2": lambda: figure2(curves := tables.load_curves(args.curves, args.curve_loss_col, args.flops_convention),
                             approach1.fit_approach1(curves, drop_edges=not args.include_edges), args.out),
        "3": lambda: figure3(runs, approach2.fit_approach2(runs, args.interp, args.include_edges), args.out),
        "4": lambda: figure4(runs, approach3.fit_huber(runs.N, runs.D, runs.loss, delta=args.delta,
                                                       grid=grid_from(args)).params, args.out),
        "kaplan": lambda: kaplan_figure1(runs, kaplan.fit_kaplan(runs), args.out),
    }
    written = []
    for name in ("2", "3", "4", "kaplan"):
        if name not in which:
            continue
        try:
            written += draw[name]()
        except InputError as e:
            if explicit:
                raise
            print(f"note: figure {name} skipped: {e}", file=sys.stderr)
    if not written:
        raise InputError("no figure could be drawn from this table (see the notes above)")
    for w in written:
        print(w)
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
