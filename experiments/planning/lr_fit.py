"""`python -m experiments.planning.lr_fit --study=DIR`: the lr rule an `lr_sweep` study measured.

Reads DIR/results.csv (experiments.collect) and keeps the completed role="lr_sweep" rows. Per size and
beta2, the final eval loss is fitted by a parabola in log10 lr; its vertex is lr* and the vertex value
the loss at lr* (a vertex outside the swept lrs, or a parabola opening downward, is flagged "edge"
and lr* is then the best swept lr). For the beta2 whose lr* losses are lower on average (over the
sizes every beta2 has), lr*(N) is
fitted as a power law across sizes, lr*(N) = lr_at_1e5 * (N / 1e5)^-exponent (N total parameters:
what the ladder's rule takes). The best loss per size also gives the budget's IsoFLOP profile, whose
parabola in log N places N_opt at the sweep's budget and its depth 0.4 decades out: the numbers a
study.prior needs. The parabola residuals measure the run-to-run scatter (study.noise).
Prints everything and writes DIR/lr_fit.json atomically.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

from plumbing import atomic


@dataclasses.dataclass(frozen=True)
class SizeFit:
    params: int
    beta2: float
    lr_star: float
    loss_star: float
    edge: bool
    n_runs: int
    residual_std: float  # nats, scatter of the runs about their parabola


@dataclasses.dataclass(frozen=True)
class LrFit:
    sizes: tuple[SizeFit, ...]
    beta2: float  # the better beta2
    lr_at_1e5: float
    exponent: float
    budget: float
    n_opt: float  # IsoFLOP vertex of the best loss per size (nan when it has no interior minimum)
    depth: float  # mean rise of that profile 0.4 decades either side of n_opt (nats)
    noise: float  # pooled residual std of the per-size parabolas (nats)


@dataclasses.dataclass(frozen=True)
class Valley:
    """A parabola in log10 lr through (lr, loss): its vertex is lr*. With losses of shape (n, R) (R
    resampled valleys over the same lrs) every field is an array of R values, one per valley."""
    lr_star: np.ndarray  # the vertex; the best swept lr where `edge`
    loss_star: np.ndarray  # the parabola at its vertex; the best loss where `edge`
    edge: np.ndarray  # vertex outside the swept lrs or parabola not opening upward (or < 3 lrs)
    residual_std: np.ndarray  # nats, scatter of the runs about their parabola (nan with < 3 lrs)
    coefficients: np.ndarray  # (c2, c1, c0) of loss = c2 x^2 + c1 x + c0, x = log10 lr: shape (3,) or (3, R)


def valley(lr, loss) -> Valley:
    """The parabola's vertex, or the best swept lr where the parabola cannot say (Valley.edge)."""
    x, y = np.log10(np.asarray(lr, float)), np.asarray(loss, float)
    y2 = y.reshape(len(x), -1)
    best = np.argmin(y2, axis=0)
    best_x, best_y = x[best], y2[best, np.arange(y2.shape[1])]
    if len(x) < 3:
        nan = np.full(y2.shape[1], np.nan)
        out = Valley(10**best_x, best_y, np.ones(y2.shape[1], bool), nan, np.full((3, y2.shape[1]), np.nan))
    else:
        c = np.polyfit(x, y2, 2)
        resid = y2 - (c[0] * x[:, None] ** 2 + c[1] * x[:, None] + c[2])
        scatter = np.sqrt(np.sum(resid**2, axis=0) / max(len(x) - 3, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            v = -c[1] / (2 * c[0])
        edge = (c[0] <= 0) | ~(x.min() <= v) | ~(v <= x.max())
        v = np.where(edge, best_x, v)
        out = Valley(10**v, np.where(edge, best_y, c[0] * v**2 + c[1] * v + c[2]), edge, scatter, c)
    if y.ndim == 1:
        return Valley(*(np.asarray(f)[..., 0] for f in dataclasses.astuple(out)))
    return out


def fit_size(lr, loss) -> tuple[float, float, bool, float]:
    """(lr*, loss at lr*, edge, residual std) of one size's runs (`valley`)."""
    v = valley(lr, loss)
    return float(v.lr_star), float(v.loss_star), bool(v.edge), float(v.residual_std)


def fit(rows: list[dict]) -> LrFit:
    groups: dict[tuple[int, float], list[tuple[float, float]]] = {}
    for r in rows:
        groups.setdefault((int(float(r["params"])), float(r["beta2"])), []).append(
            (float(r["lr"]), float(r["final_eval_loss"])))
    sizes = []
    for (n, b2), pts in sorted(groups.items()):
        lr, loss = zip(*sorted(pts))
        sizes.append(SizeFit(n, b2, *fit_size(lr, loss)[:3], len(pts), fit_size(lr, loss)[3]))
    by_b2: dict[float, list[SizeFit]] = {}
    for s in sizes:
        by_b2.setdefault(s.beta2, []).append(s)
    common = set.intersection(*({s.params for s in group} for group in by_b2.values()))
    beta2 = min(by_b2, key=lambda b: np.mean([s.loss_star for s in by_b2[b] if s.params in common]))
    chosen = sorted(by_b2[beta2], key=lambda s: s.params)
    n = np.array([s.params for s in chosen], float)
    lr_star = np.array([s.lr_star for s in chosen])
    if len(chosen) >= 2:
        slope, icpt = np.polyfit(np.log10(n / 1e5), np.log10(lr_star), 1)
    else:
        slope, icpt = 0.0, math.log10(lr_star[0])
    n_opt, depth = _profile(np.log10(n), np.array([s.loss_star for s in chosen]))
    scatter = [s.residual_std for s in sizes if np.isfinite(s.residual_std)]
    budget = float(rows[0]["budget"])
    return LrFit(tuple(sizes), beta2, float(10**icpt), float(-slope), budget, n_opt, depth,
                 float(np.sqrt(np.mean(np.square(scatter)))) if scatter else float("nan"))


def _profile(log_n, loss) -> tuple[float, float]:
    if len(log_n) < 3:
        return float("nan"), float("nan")
    c2, c1, _ = np.polyfit(log_n, loss, 2)
    if c2 <= 0:
        return float("nan"), float("nan")
    return float(10 ** (-c1 / (2 * c2))), float(c2 * 0.4**2)


def report(f: LrFit) -> str:
    lines = [f"{'params':>9} {'beta2':>6} {'lr*':>9} {'loss@lr*':>9} {'runs':>4} {'scatter':>8}"]
    for s in f.sizes:
        lines.append(f"{s.params:>9,} {s.beta2:>6g} {s.lr_star:>9.3g} {s.loss_star:>9.4f} {s.n_runs:>4} "
                     f"{s.residual_std:>8.4f}" + ("  edge: lr* outside the swept lrs" if s.edge else ""))
    lines.append(f"beta2 = {f.beta2:g} (lower loss at lr*); lr*(N) = {f.lr_at_1e5:.3g} * (N / 1e5)^-{f.exponent:.3f}")
    lines.append(f"IsoFLOP profile at C = {f.budget:.3g}: N_opt = {f.n_opt:.3g}, depth at +-0.4 decades = "
                 f"{f.depth:.4f} nats; run scatter about the lr parabolas = {f.noise:.4f} nats")
    return "\n".join(lines)


def load(study: Path) -> list[dict]:
    path = study / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"--study: {path} does not exist; run python -m experiments.collect --study={study}")
    rows = [r for r in csv.DictReader(open(path)) if r.get("role") == "lr_sweep"
            and r.get("status") == "completed" and r.get("final_eval_loss")]
    if not rows:
        raise ValueError(f"--study: {path} has no completed lr_sweep runs")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        f = fit(load(args.study))
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(f))
    clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v
    record = dataclasses.asdict(f)
    record["sizes"] = [{k: clean(v) for k, v in s.items()} for s in record["sizes"]]
    atomic.write_json(args.study / "lr_fit.json", {k: clean(v) for k, v in record.items()})
    print(f"wrote {args.study / 'lr_fit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
