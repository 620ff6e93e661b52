"""`python -m experiments.planning.lr_transfer`: does the best learning rate move with width (muP against SP)?

    --study DIR      DIR/results.csv (experiments.collect) with each run's width and parametrization from
                     DIR/plan.json (else its run.json); writes DIR/lr_transfer.json and DIR/lr_transfer.png
    --results FILE --out DIR [--width-col --param-col --lr-col --loss-col]      anyone's table

Any table with one row per run works (a mup_transfer_cpu study, experiments/configs/mup_transfer_cpu.py,
is the one it was built for). Rows with status diverged/failed or no finite loss are left out and
counted; a table with role "lr_sweep" rows is read for those rows only; runs repeating an lr (seeds)
are averaged.

Method (Yang et al. 2022, "Tensor Programs V", Fig. 1):
1. Per (parametrization, width): the final loss against log10 lr near its floor, a parabola
   (experiments.planning.lr_fit.valley) through the best run and its `neighbours` (2) swept lrs on
   either side: far from the optimum the loss is not parabolic in log lr (slow on one side, near
   divergence on the other) and would bend the vertex. The vertex is lr*; a vertex outside those
   runs, a parabola that does not open upward, or a best run at the smallest or largest swept lr is
   flagged `edge` (lr* then is the best swept lr, and the optimum may lie outside the sweep).
2. Interval: a parametric bootstrap (1000 resamples, seeded): the parabola's values plus Gaussian
   noise of one run's scatter, refitted by the same rule (an edge resample's best run stands in).
   The scatter is --noise, else the runs' residual about their parabolas pooled over every group
   (its degrees of freedom in the JSON): an upper bound on the run-to-run noise, since it also holds
   the valley's departure from a parabola, so the intervals err wide.
3. Per parametrization, across widths: the range of log10 lr* (max - min) and the least-squares slope
   d log10 lr* / d log10 width (muP: 0; SP under Adam: toward -1), each with the 95% interval of the
   same bootstrap (the range's is biased up by the noise: ptp of noisy values exceeds the true one).
   The target (issue 20): muP's lr* within +-0.15 decades across widths, i.e. max - min <= 0.30.

Measured by simulation (tests/test_lr_transfer.py's `table`: 4 widths x the preset's 7 lrs, a valley
0.25 x^2 + 0.1 max(x, 0)^3 in x = log10(lr / lr*), SP's lr* ~ width^-0.8, muP's flat; 200 tables per
noise level, seeds 100-299, 200 resamples each; error = binomial standard error). At a run noise of
0.005 / 0.01 / 0.02 nats: the slope's interval covers the true slope in 94.5 / 89.5 / 93.2% (+-1.1 to
1.5%) of the 400 (table, parametrization) cases; the per-width lr* interval covers the true lr* in only
52 / 78 / 89% (+-1%) of 1600: a parabola through an asymmetric valley puts its vertex off the true
minimum, a bias the noise-only interval leaves out; that bias is the same at every width when the
valley keeps its shape in log lr (muP's claim), so it cancels from the range and the slope. muP's
range with no true movement (the noise alone): median 0.023 / 0.050 / 0.105 decades, 95th percentile
0.043 / 0.092 / 0.234, under the 0.30 target up to 0.02 nats of noise.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from analysis.records import InputError
from analysis.tables.tables import read_table
from experiments.planning.lr_fit import valley
from experiments.planning.lr_transfer_table import AUTO, runs_from, study_table
from plumbing import atomic
from plumbing.cli import Parser, one_line

LABELS = {"sp": "SP", "mup": "μP"}
ORDER = ("sp", "mup")


@dataclasses.dataclass(frozen=True)
class Options:
    """What the analysis depends on (the table's columns are runs_from's); tests build it without argparse."""
    neighbours: int = 2  # swept lrs either side of the best run that the parabola takes
    noise: float = 0.0  # std of one run's final loss (nats); 0: pooled from the parabolas' residuals
    resamples: int = 1000
    seed: int = 0
    target: float = 0.15  # decades either side: max - min of log10 lr* <= 2 x target

    def __post_init__(self):
        if self.neighbours < 1:
            raise InputError(f"--neighbours {self.neighbours}: expected >= 1 (a parabola needs 3 runs)")
        if self.noise < 0 or self.resamples < 0 or self.target <= 0:
            raise InputError(f"--noise {self.noise}, --resamples {self.resamples}, --target {self.target}: "
                             "expected noise >= 0, resamples >= 0, target > 0")


@dataclasses.dataclass(frozen=True)
class WidthFit:
    """One (parametrization, width): its runs, the parabola through the floor of their valley, lr*."""
    parametrization: str
    width: float
    lrs: tuple[float, ...]  # every swept lr with a loss, ascending
    losses: tuple[float, ...]  # mean final loss at each
    used: tuple[int, ...]  # indices of the runs the parabola takes
    lr_star: float
    interval: tuple[float, float] | None  # 95% bootstrap; None without a noise level
    loss_star: float
    edge: bool
    coefficients: tuple[float, float, float]  # loss = c2 x^2 + c1 x + c0, x = log10 lr (nan: < 3 runs)
    residual_std: float


@dataclasses.dataclass(frozen=True)
class Spread:
    """How far lr* moves across the widths of one parametrization."""
    parametrization: str
    widths: tuple[float, ...]
    range_dex: float  # max - min of log10 lr*
    range_interval: tuple[float, float] | None
    slope: float  # d log10 lr* / d log10 width (nan with one width)
    slope_interval: tuple[float, float] | None
    edges: tuple[float, ...]  # widths whose lr* is a swept bound, not a bracketed optimum


@dataclasses.dataclass(frozen=True)
class Transfer:
    fits: tuple[WidthFit, ...]
    spreads: tuple[Spread, ...]
    noise: float
    noise_source: str
    options: Options
    columns: dict
    notes: tuple[str, ...]


# ---- one width's valley ----------------------------------------------------------------------

def width_fit(param: str, width: float, lr: np.ndarray, loss: np.ndarray, neighbours: int) -> WidthFit:
    """lr* of one (parametrization, width): the parabola through its best run and `neighbours` either side."""
    best = int(np.argmin(loss))
    used = np.arange(max(0, best - neighbours), min(len(lr), best + neighbours + 1))
    v = valley(lr[used], loss[used])
    edge = bool(v.edge) or best in (0, len(lr) - 1)
    lr_star = float(lr[best]) if edge else float(v.lr_star)
    loss_star = float(loss[best]) if edge else float(v.loss_star)
    return WidthFit(param, float(width), tuple(map(float, lr)), tuple(map(float, loss)), tuple(map(int, used)),
                    lr_star, None, loss_star, edge, tuple(map(float, v.coefficients)), float(v.residual_std))


def pooled_noise(fits: Sequence[WidthFit]) -> tuple[float, int]:
    """The runs' scatter about their parabolas pooled over groups, and its degrees of freedom."""
    dof = [len(f.used) - 3 for f in fits]
    ss = sum(f.residual_std**2 * d for f, d in zip(fits, dof) if d > 0)
    total = sum(d for d in dof if d > 0)
    return (math.sqrt(ss / total) if total else math.nan), total


def resampled_log_lr(f: WidthFit, noise: float, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """log10 lr* of `resamples` valleys: the parabola's values (the runs' own losses where it does not
    open upward) plus Gaussian noise, each refitted by width_fit's rule."""
    lr, loss = np.array(f.lrs)[list(f.used)], np.array(f.losses)[list(f.used)]
    c2, c1, c0 = f.coefficients
    x = np.log10(lr)
    centre = c2 * x**2 + c1 * x + c0 if c2 > 0 else loss
    v = valley(lr, centre[:, None] + noise * rng.standard_normal((len(lr), resamples)))
    return np.log10(v.lr_star)


# ---- across widths ---------------------------------------------------------------------------

def _ci(values: np.ndarray) -> tuple[float, float]:
    return tuple(float(q) for q in np.percentile(values, [2.5, 97.5]))


def spread(param: str, fits: Sequence[WidthFit], boot: np.ndarray | None) -> Spread:
    """Range and slope of log10 lr* over the widths (`boot`: resampled log10 lr*, (resamples, widths))."""
    w = np.log10([f.width for f in fits])
    y = np.log10([f.lr_star for f in fits])
    slope = lambda Y: ((w - w.mean()) * (Y - Y.mean(-1, keepdims=True))).sum(-1) / ((w - w.mean()) ** 2).sum()
    several = len(fits) >= 2
    return Spread(param, tuple(f.width for f in fits), float(np.ptp(y)),
                  _ci(np.ptp(boot, axis=1)) if boot is not None else None,
                  float(slope(y)) if several else math.nan,
                  _ci(slope(boot)) if boot is not None and several else None,
                  tuple(f.width for f in fits if f.edge))


def analyse(runs: pd.DataFrame, opts: Options = Options(), columns: dict | None = None,
            notes: Sequence[str] = ()) -> Transfer:
    """Every (parametrization, width)'s lr* with its interval, and each parametrization's spread."""
    notes = list(notes)
    mean = runs.groupby(["param", "width", "lr"], sort=True)["loss"].mean().reset_index()
    if len(mean) < len(runs):
        notes.append(f"averaged {len(runs) - len(mean)} runs repeating a (parametrization, width, lr)")
    params = sorted(mean["param"].unique(), key=lambda p: (ORDER.index(p) if p in ORDER else len(ORDER), p))
    fits = [width_fit(p, w, g["lr"].to_numpy(), g["loss"].to_numpy(), opts.neighbours)
            for p in params for w, g in mean[mean["param"] == p].groupby("width", sort=True)]
    noise, dof = (opts.noise, 0) if opts.noise else pooled_noise(fits)
    source = (f"--noise {opts.noise:g}" if opts.noise else
              f"pooled residual of the parabolas, {dof} degrees of freedom" if dof else
              "none: no parabola has runs beyond its 3 coefficients; give --noise")
    rng = np.random.default_rng(opts.seed)
    boots = ([resampled_log_lr(f, noise, rng, opts.resamples) for f in fits]
             if math.isfinite(noise) and opts.resamples else None)
    if boots:
        fits = [dataclasses.replace(f, interval=tuple(10**q for q in _ci(b))) for f, b in zip(fits, boots)]
    spreads = []
    for p in params:
        idx = [i for i, f in enumerate(fits) if f.parametrization == p]
        spreads.append(spread(p, [fits[i] for i in idx], np.stack([boots[i] for i in idx], 1) if boots else None))
    return Transfer(tuple(fits), tuple(spreads), float(noise), source, opts, dict(columns or {}), tuple(notes))


# ---- what it says ----------------------------------------------------------------------------

def label(param: str) -> str:
    return LABELS.get(param, param)


def verdict(t: Transfer) -> str:
    """One line: how far lr* moves across the widths, muP's (else the first parametrization's) against
    the target, then the others', e.g. "μP: lr* moves 0.08 decades across widths 16–128 (target ±0.15:
    met); SP: 0.71 decades"."""
    first = next((s for s in t.spreads if s.parametrization == "mup"), t.spreads[0])
    met = ("not judged with one width" if len(first.widths) < 2
           else "not judged: an lr* at the sweep's edge" if first.edges
           else "met" if first.range_dex <= 2 * t.options.target else "not met")
    parts = [f"{label(first.parametrization)}: lr* moves {first.range_dex:.2f} decades across widths "
             f"{min(first.widths):g}–{max(first.widths):g} (target ±{t.options.target:g}: {met})"]
    parts += [f"{label(s.parametrization)}: {s.range_dex:.2f} decades" for s in t.spreads if s is not first]
    edges = [f"{label(s.parametrization)} width {', '.join(f'{w:g}' for w in s.edges)}" for s in t.spreads if s.edges]
    if edges:
        parts.append(f"lr* at the sweep's edge for {'; '.join(edges)}: widen the lrs there")
    return "; ".join(parts)


def report(t: Transfer) -> str:
    lines = [f"{'param':>5} {'width':>6} {'lr*':>9} {'95% interval':>21} {'loss@lr*':>9} {'runs':>4} {'fit':>3}"]
    for f in t.fits:
        iv = f"[{f.interval[0]:.3g}, {f.interval[1]:.3g}]" if f.interval else "-"
        lines.append(f"{label(f.parametrization):>5} {f.width:>6g} {f.lr_star:>9.3g} {iv:>21} {f.loss_star:>9.4f} "
                     f"{len(f.lrs):>4} {len(f.used):>3}" + ("  edge: lr* is a swept bound" if f.edge else ""))
    for s in t.spreads:
        ci = lambda iv: f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else ""
        lines.append(f"{label(s.parametrization)}: log10 lr* range {s.range_dex:.3f}{ci(s.range_interval)} decades, "
                     f"slope d log10 lr*/d log10 width {s.slope:+.3f}{ci(s.slope_interval)}")
    lines.append(f"noise per run {t.noise:.4f} nats ({t.noise_source}); intervals: 95% parametric bootstrap, "
                 f"{t.options.resamples} resamples, seed {t.options.seed}")
    lines += [f"note: {n}" for n in t.notes]
    lines.append(verdict(t))
    return "\n".join(lines)


def _finite(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def to_json(t: Transfer) -> dict:
    o = t.options
    return {
        "columns": t.columns, "notes": list(t.notes), "verdict": verdict(t),
        "target": {"decades": o.target, "criterion": f"max - min of log10 lr* <= {2 * o.target:g} (muP)"},
        "method": {"valley": f"parabola in log10 lr through the best run and {o.neighbours} swept lrs either side "
                             "(experiments.planning.lr_fit.valley)",
                   "interval": f"95% parametric bootstrap, {o.resamples} resamples, seed {o.seed}",
                   "noise": _finite(t.noise), "noise_source": t.noise_source},
        "parametrizations": {s.parametrization: {k: _finite(v) for k, v in dataclasses.asdict(s).items()}
                             for s in t.spreads},
        "groups": [{k: _finite(v) for k, v in dataclasses.asdict(f).items()} for f in t.fits],
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = Parser(prog="python -m experiments.planning.lr_transfer", error_prefix="lr_transfer", raises=InputError,
                description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, help="DIR/results.csv and DIR/plan.json in, DIR/lr_transfer.* out")
    ap.add_argument("--results", type=Path, help="CSV, one row per run")
    ap.add_argument("--out", type=Path, help="directory for lr_transfer.json and lr_transfer.png")
    for role, what in (("width", "width (d_model)"), ("param", "parametrization"), ("lr", "learning rate"),
                       ("loss", "final loss")):
        ap.add_argument(f"--{role}-col", help=f"{what} (default: first of {', '.join(AUTO[role])})")
    ap.add_argument("--neighbours", type=int, default=2, help="swept lrs either side of the best run in the parabola")
    ap.add_argument("--noise", type=float, default=0.0, help="std of one run's loss (0: the pooled residual)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.15, help="decades either side muP's lr* should stay within")
    try:
        a = ap.parse_args(argv)
        if a.study is None and (a.results is None or a.out is None):
            raise InputError("give --study DIR, or --results FILE --out DIR")
        out = a.out or a.study
        df = read_table(a.results) if a.results else study_table(a.study)
        opts = Options(a.neighbours, a.noise, a.resamples, a.seed, a.target)
        runs, cols, notes = runs_from(df, {"width": a.width_col, "param": a.param_col, "lr": a.lr_col,
                                           "loss": a.loss_col})
        t = analyse(runs, opts, cols, notes)
    except InputError as e:
        print(f"lr_transfer: {one_line(e)}", file=sys.stderr)
        return 2
    from experiments.planning import lr_transfer_figure  # here: it imports this module's records
    print(report(t))
    atomic.write_json(out / "lr_transfer.json", to_json(t), parents=True)
    paths = lr_transfer_figure.figure(t, out)
    print(f"wrote {out / 'lr_transfer.json'}, {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
