"""The lr-transfer figure (Yang et al. 2022, Fig. 1): one panel per parametrization (SP | muP), the
final loss against the peak lr at each width (colour by width), each valley's parabola over the runs
it took and its lr* marked with its bootstrap interval; the verdict as the title. PNG and PDF."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.output.figures import save, tidy_log_axis  # noqa: E402
from experiments.planning.lr_transfer import Transfer, label, verdict  # noqa: E402

NAME = "lr_transfer"


def draw(t: Transfer):
    params = [s.parametrization for s in t.spreads]
    fig, axes = plt.subplots(1, len(params), figsize=(5.2 * len(params), 4.2), sharey=True, squeeze=False)
    widths = sorted({f.width for f in t.fits})
    cmap = plt.get_cmap("viridis")
    colour = {w: cmap(i / max(len(widths) - 1, 1) * 0.9) for i, w in enumerate(widths)}
    for ax, p in zip(axes[0], params):
        for f in (f for f in t.fits if f.parametrization == p):
            c = colour[f.width]
            ax.plot(f.lrs, f.losses, "o", color=c, ms=4, label=f"width {f.width:g}")
            used = np.array(f.lrs)[list(f.used)]
            if not f.edge and all(math.isfinite(v) for v in f.coefficients):
                x = np.linspace(np.log10(used.min()), np.log10(used.max()), 60)
                ax.plot(10**x, np.polyval(f.coefficients, x), "-", color=c, lw=1.2)
            ax.plot([f.lr_star], [f.loss_star], "*" if not f.edge else "x", color=c, ms=11, mec="k", mew=0.6)
            if f.interval:
                ax.hlines(f.loss_star, *f.interval, color=c, lw=2.5, alpha=0.5)
        s = next(s for s in t.spreads if s.parametrization == p)
        ax.set_title(f"{label(p)}: log10 lr* moves {s.range_dex:.2f} decades, slope {s.slope:+.2f}", fontsize=10)
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.grid(True, which="major", alpha=0.3)
        tidy_log_axis(ax.xaxis)
    axes[0][0].set_ylabel("final eval loss (nats/token)")
    axes[0][-1].legend(fontsize=8, loc="upper right")
    lo = min(min(f.losses) for f in t.fits)
    hi = max(f.loss_star for f in t.fits)
    axes[0][0].set_ylim(lo - 0.05 * max(hi - lo, 0.1), hi + 1.5 * max(hi - lo, 0.1))  # the valleys, not the divergence
    fig.suptitle(verdict(t), fontsize=9)
    fig.tight_layout()
    return fig


def figure(t: Transfer, out_dir) -> list[str]:
    """DIR/lr_transfer.png and .pdf, each written atomically."""
    return save(draw(t), str(Path(out_dir)), NAME)
