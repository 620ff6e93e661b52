"""`python -m experiments.planning.hparam_fit`: learning-rate and batch-size laws from a sweep across scale.

    --results FILE --out DIR [--n-col --d-col --lr-col --batch-col --loss-col --group-cols ...]
    --study DIR      (DIR/results.csv in, DIR/hparam_fit.json out)

Any table with one row per run works; the columns are auto-detected for our own results.csv
(params, tokens, lr, batch_tokens or global_batch — sequences per step, as the planner records it —,
final_eval_loss). Rows with status diverged/failed, role trunk/validation or no finite loss are left
out and counted; a table with role "hparam_sweep" rows (a study planned with study.mode =
"hparam_sweep", experiments/configs/hparam_sweep_cpu.py) is read for those rows only.

Method (Step Law: Li et al. 2025, "Predictable Scale: Part I", arXiv:2503.04715):
1. Group the runs by (N, D) (or --group-cols) and find each group's optimum (lr*, B*):
   - `near_best` (default): the runs whose loss is within `tolerance` (0.25%, Step Law's) of the
     group's best; lr* and B* are the GEOMETRIC MEAN of the kept runs. Geometric, because the law
     is linear in log lr and log B, and unweighted, because the loss differences inside the
     tolerance are at the level of run-to-run noise: weighting by them would weight by noise.
   - `valley`: a quadratic in (log10 lr, log10 B) fitted to the group's runs within `window` (5%)
     of its best loss (a parabola in the one axis when the other has < 3 distinct values); lr* and
     B* its vertex. The window because a quadratic is the valley's Taylor expansion about its
     floor: runs near divergence, or an order of magnitude too slow, would bend it (with fewer
     runs in the window than the quadratic has terms, all the group's runs are used). A vertex outside
     the swept values or a valley that does not open upward is flagged `edge` and the group's
     best run stands in.
   - `shared_valley`: the same quadratic, but ONE curvature (Hessian) for every group and a floor
     and slope per group, fitted to every run (experiments/planning/hparam_valley.py); lr* and B*
     the group's minimum inside its swept box. For sweeps whose runs differ by about their noise
     (our CPU sweep: a factor 2 in lr costs ~1 sigma), where a per-group quadratic is rarely convex.
   A group whose best run sits at the smallest or largest swept lr (or batch) is flagged `edge`
   under near_best and valley (shared_valley: when its optimum is on the box's face): its optimum
   may lie outside the sweep.
2. log10 lr* = log10 P + a log10 N + b log10 D (and B* = Q N^c D^d) by least squares over the
   groups, one point per group so a flat valley with many near-best runs weighs no more than a
   sharp one. Only the exponents the table identifies are fitted: with one D (or D moving in
   lockstep with N) the D exponent is not fitted and the note says so. Intervals: 95% percentile
   bootstrap over groups (default 1000 resamples, seeded), vectorised, stretched about the fit by
   sqrt(G / (G - p)) (G groups, p coefficients: a bootstrap over few points sees only (G - p) / G of
   a least-squares fit's variance); shared_valley refits its valley in every resample. Coverage by
   simulation of sweeps shaped like hparam_sweep_cpu (bench/hparam_rule_coverage.py 200: 10 groups,
   9 runs each, noise 0.03 nats): 93-96% for every rule and exponent; the lr exponents' spread over
   studies 0.135 (N) and 0.121 (D) under shared_valley against 0.235 and 0.201 under near_best, and
   19 of 200 such sweeps had no convex shared valley (the batch axis is shallow: a factor 2 in batch
   costs ~0.5 sigma).
3. The loss penalty of a factor 2 off in lr (or batch) at the other's optimum: each convex
   valley's rise at +-log10(2) from its vertex, mean and spread over groups.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from analysis.records import InputError
from analysis.tables.tables import pick_column, read_table
from experiments.planning.hparam_valley import SharedValley, bootstrap_optima, fit_shared_valley
from plumbing import atomic
from plumbing.cli import Parser, one_line

RULES = ("near_best", "valley", "shared_valley")
AUTO = {  # flag -> candidate column names, first present wins
    "n": ("params", "N", "n_params", "Model Size"),
    "d": ("tokens", "D", "n_tokens", "Training Tokens"),
    "lr": ("lr", "learning_rate", "peak_lr"),
    "batch": ("batch_tokens", "global_batch", "batch_size", "batch", "bs"),
    "loss": ("final_eval_loss", "loss", "eval_loss", "final_train_loss"),
    "id": ("run_id", "run", "id"),
}
DROPPED_STATUS = ("diverged", "failed")
DROPPED_ROLES = ("trunk", "validation")  # a WSD trunk is never cooled down; validation runs are never fitted
SWEEP_ROLE = "hparam_sweep"  # when a table has such rows, only they are read
LOG2 = math.log10(2.0)


@dataclasses.dataclass(frozen=True)
class Options:
    """What the fit depends on; tests build it without argparse. Column names None: auto-detect."""
    n_col: str | None = None
    d_col: str | None = None
    lr_col: str | None = None
    batch_col: str | None = None
    loss_col: str | None = None
    group_cols: tuple[str, ...] = ()  # () = (N column, D column)
    rule: str = "near_best"
    tolerance: float = 0.0025  # near_best: fraction of the group's best loss
    window: float | None = None  # runs the valleys are fitted to, a fraction of the group's best loss;
    # None: the rule's default (valley 0.05; shared_valley every run)
    resamples: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.rule not in RULES:
            raise InputError(f"--rule {self.rule!r}: expected one of {', '.join(RULES)}")
        if not 0 <= self.tolerance < 1:
            raise InputError(f"--tolerance {self.tolerance}: expected a fraction of the best loss in [0, 1)")
        if self.window is not None and not self.window > 0:
            raise InputError(f"--valley-window {self.window}: expected a positive fraction of the best loss")
        if self.resamples < 0:
            raise InputError(f"--resamples {self.resamples}: expected >= 0")

    @property
    def valley_window(self) -> float | None:
        if self.window is not None:
            return self.window
        return None if self.rule == "shared_valley" else 0.05  # near_best's x2 penalties use the valley too


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The runs the fit reads, one entry per kept row; `row` is the 0-based data row in the file."""
    columns: dict  # role -> column name
    ids: np.ndarray
    row: np.ndarray
    N: np.ndarray
    D: np.ndarray
    lr: np.ndarray
    batch: np.ndarray
    loss: np.ndarray
    group: np.ndarray  # group index per run
    notes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class GroupOptimum:
    N: float
    D: float
    lr_star: float
    batch_star: float
    best_loss: float
    n_runs: int
    kept: tuple[int, ...]  # indices into the Sweep arrays
    lr_swept: bool  # >= 2 distinct lrs: the group speaks to the lr law
    batch_swept: bool
    edge: bool
    lr_rise_x2: float  # valley's loss rise at lr*x2 (nan: no convex valley along lr)
    batch_rise_x2: float


@dataclasses.dataclass(frozen=True)
class Law:
    """hparam* = prefactor * N^exponents["N"] * D^exponents["D"] (an exponent not identified is None)."""
    name: str
    prefactor: float
    prefactor_interval: tuple[float, float] | None  # None: no resamples
    exponents: dict
    intervals: dict
    n_groups: int
    residual_dex: float  # rms residual of the groups' log10 optima about the law
    resamples_used: int
    note: str


# ---- the table -------------------------------------------------------------------------------

def _pick(df, name, role, flag):
    return pick_column(df, name, AUTO[role], flag, required=role != "id")


def sweep_from(df: pd.DataFrame, opts: Options = Options()) -> Sweep:
    cols = {role: _pick(df, getattr(opts, f"{role}_col", None), role, f"--{role}-col")
            for role in ("n", "d", "lr", "batch", "loss", "id")}
    group_cols = opts.group_cols or (cols["n"], cols["d"])
    for g in group_cols:
        _pick(df, g, "n", "--group-cols")
    notes = []
    keep = np.ones(len(df), bool)
    if "status" in df.columns:
        bad = df["status"].astype(str).str.lower().isin(DROPPED_STATUS).to_numpy()
        if bad.any():
            notes.append(f"left out {int(bad.sum())} runs with status diverged/failed")
        keep &= ~bad
    if "role" in df.columns:
        role = df["role"].astype(str).str.strip()
        other = role.isin(DROPPED_ROLES).to_numpy() & keep
        if role.eq(SWEEP_ROLE).any():  # a study planned with study.mode="hparam_sweep": its sweep runs only
            given = df["role"].notna() & role.ne("")  # a row without a role is not another role's
            other = (given & role.ne(SWEEP_ROLE)).to_numpy() & keep
        if other.any():
            what = f"not {SWEEP_ROLE}" if role.eq(SWEEP_ROLE).any() else "trunk or validation"
            notes.append(f"left out {int(other.sum())} runs whose role is {what}")
        keep &= ~other
    num = {r: pd.to_numeric(df[cols[r]], errors="coerce").to_numpy(float) for r in ("n", "d", "lr", "batch", "loss")}
    no_loss = keep & ~np.isfinite(num["loss"])
    if no_loss.any():
        notes.append(f"left out {int(no_loss.sum())} runs with no finite {cols['loss']}")
    keep &= np.isfinite(num["loss"])
    for r in ("n", "d", "lr", "batch"):
        bad = keep & ~(num[r] > 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"column {cols[r]!r}: value {df[cols[r]].iloc[i]!r} in row {i} is not a positive "
                             f"number ({int(bad.sum())} such rows); fix or drop those rows")
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise InputError("no run with a finite loss in the table")
    group = df.iloc[rows].groupby(list(group_cols), sort=True, dropna=False).ngroup().to_numpy()
    ids = df[cols["id"]].astype(str).to_numpy()[rows] if cols["id"] else rows.astype(str)
    values = (num[r][rows] for r in ("n", "d", "lr", "batch", "loss"))
    return Sweep({**cols, "group": list(group_cols)}, ids, rows, *values, group, tuple(notes))


# ---- one group's optimum ----------------------------------------------------------------------

def _valley(x, y, loss, fit_x: bool, fit_y: bool):
    """Quadratic in the swept axes (>= 3 distinct values each): (vertex x, vertex y, ok, cxx, cyy).
    cxx, cyy: the curvatures, so the rise at +-delta from the vertex along x is cxx * delta^2."""
    cols = [np.ones_like(x)]
    if fit_x:
        cols += [x, x * x]
    if fit_y:
        cols += [y, y * y]
    if fit_x and fit_y:
        cols.append(x * y)
    A = np.stack(cols, 1)
    if len(loss) <= A.shape[1]:
        return math.nan, math.nan, False, math.nan, math.nan
    c = np.linalg.lstsq(A, loss, rcond=None)[0]
    if fit_x and fit_y:
        H = np.array([[2 * c[2], c[5]], [c[5], 2 * c[4]]])
        if np.linalg.det(H) <= 0 or H[0, 0] <= 0:
            return math.nan, math.nan, False, c[2], c[4]
        vx, vy = np.linalg.solve(H, -np.array([c[1], c[3]]))
        return vx, vy, True, c[2], c[4]
    if fit_x:
        return (-c[1] / (2 * c[2]) if c[2] > 0 else math.nan), math.nan, c[2] > 0, c[2], math.nan
    return math.nan, -c[1] / (2 * c[2]) if c[2] > 0 else math.nan, c[2] > 0, math.nan, c[2]


def group_optimum(idx: np.ndarray, s: Sweep, opts: Options) -> GroupOptimum:
    x, y, loss = np.log10(s.lr[idx]), np.log10(s.batch[idx]), s.loss[idx]
    ux, uy = np.unique(x), np.unique(y)
    best = int(np.argmin(loss))
    near = loss <= loss[best] + opts.valley_window * abs(loss[best])
    fx, fy = len(ux) >= 3, len(uy) >= 3
    if near.sum() <= 1 + 2 * fx + 2 * fy + (fx and fy):
        near[:] = True
    vx, vy, ok, cxx, cyy = _valley(x[near], y[near], loss[near], fx, fy)
    at_edge = lambda u, v: len(u) >= 2 and (v <= u[0] or v >= u[-1])
    edge = at_edge(ux, x[best]) or at_edge(uy, y[best])
    if opts.rule == "near_best":
        kept = np.flatnonzero(loss <= loss[best] + opts.tolerance * abs(loss[best]))
        lx, ly = x[kept].mean(), y[kept].mean()
    else:
        kept = np.flatnonzero(near)
        inside = ok and (len(ux) < 3 or ux[0] <= vx <= ux[-1]) and (len(uy) < 3 or uy[0] <= vy <= uy[-1])
        edge = edge or not inside
        lx = vx if inside and len(ux) >= 3 else x[best]
        ly = vy if inside and len(uy) >= 3 else y[best]
    rise = lambda c: float(c * LOG2**2) if ok and c > 0 else math.nan
    return GroupOptimum(float(s.N[idx][0]), float(s.D[idx][0]), float(10**lx), float(10**ly), float(loss[best]),
                        len(idx), tuple(int(i) for i in idx[kept]), len(ux) >= 2, len(uy) >= 2, bool(edge),
                        rise(cxx), rise(cyy))


def shared_optima(s: Sweep, v: SharedValley) -> list[GroupOptimum]:
    """The shared_valley rule's optima (experiments.planning.hparam_valley): one Hessian, a vertex per group."""
    used = np.zeros(len(s.loss), bool)
    used[v.stats.rows_used] = True
    out = []
    for g in range(int(s.group.max()) + 1):
        idx = np.flatnonzero(s.group == g)
        best = idx[np.argmin(s.loss[idx])]
        star = {}
        for axis, values in (("lr", s.lr), ("batch", s.batch)):
            at = v.optimum[g, v.axes.index(axis)] if axis in v.axes else np.nan
            star[axis] = float(10**at) if np.isfinite(at) else float(values[best])
        swept = lambda values: len(np.unique(values[idx])) >= 2
        rise = lambda axis: v.rise_x2(axis) if axis in v.axes else math.nan
        out.append(GroupOptimum(float(s.N[idx][0]), float(s.D[idx][0]), star["lr"], star["batch"],
                                float(s.loss[best]), len(idx), tuple(int(i) for i in idx[used[idx]]),
                                swept(s.lr), swept(s.batch), bool(v.edge[g]), rise("lr"), rise("batch")))
    return out


def check_groups(s: Sweep) -> None:
    """Each group is one (N, D): a group mixing several is a --group-cols mistake."""
    for g in range(int(s.group.max()) + 1):
        idx = np.flatnonzero(s.group == g)
        for col, v in (("N", s.N[idx]), ("D", s.D[idx])):
            if np.ptp(v) > 1e-9 * v.max():
                raise InputError(f"--group-cols: group {g} mixes several {col} values ({v.min():g}..{v.max():g}); "
                                 f"group by the {col} column too")


def optima(s: Sweep, opts: Options) -> list[GroupOptimum]:
    """near_best's and valley's optima, group by group."""
    check_groups(s)
    return [group_optimum(np.flatnonzero(s.group == g), s, opts) for g in range(int(s.group.max()) + 1)]


# ---- the law ---------------------------------------------------------------------------------

def _identified(log_n, log_d) -> tuple[tuple[str, ...], str]:
    """Which exponents the groups identify: both when log N and log D are not collinear."""
    vn, vd = np.ptp(log_n) > 1e-9, np.ptp(log_d) > 1e-9
    if vn and vd:
        Z = np.stack([log_n - log_n.mean(), log_d - log_d.mean()], 1)
        s = np.linalg.svd(Z, compute_uv=False)
        if s[1] > 1e-6 * s[0]:
            return ("N", "D"), ""
        return ("N",), ("D moves in lockstep with N in this table: only the N exponent is fitted and it "
                        "carries D's effect too")
    if vn:
        return ("N",), "one D in the table: only the N exponent is fitted (D's is not identified)"
    if vd:
        return ("D",), "one N in the table: only the D exponent is fitted (N's is not identified)"
    return (), "one (N, D) in the table"


def _lstsq_batched(X, y):
    """Least squares for a stack of designs X (R, G, p), y (R, G) -> coefficients (R, p), rank ok (R,)."""
    coef = np.linalg.pinv(X) @ y[..., None]
    sv = np.linalg.svd(X, compute_uv=False)
    return coef[..., 0], sv[:, -1] > 1e-8 * sv[:, 0]


def _weighted_lstsq(X, W, Y):
    """Least squares of each row of Y (R, G) on X (G, p) with group weights W (R, G) (bootstrap counts;
    a nan in Y drops that group from that resample) -> coefficients (R, p), rank ok (R,)."""
    Wv = np.where(np.isfinite(Y), W, 0.0)
    XtWX = np.einsum("gp,rg,gq->rpq", X, Wv, X)
    XtWy = np.einsum("gp,rg,rg->rp", X, Wv, np.where(np.isfinite(Y), Y, 0.0))
    ev = np.linalg.eigvalsh(XtWX)
    ok = ev[:, 0] > 1e-8 * ev[:, -1]
    coef = np.zeros(XtWy.shape)
    coef[ok] = np.linalg.solve(XtWX[ok], XtWy[ok][..., None])[..., 0]
    return coef, ok


class Draws(NamedTuple):
    """A bootstrap that refits the optima in each resample (shared_valley): R resamples over G groups."""
    weights: np.ndarray  # (R, G) how many times each group was drawn
    star: np.ndarray  # (R, G) each resample's own optimum of each group (nan: not swept)


def fit_law(name: str, N, D, star, resamples: int, seed: int, draws: Draws | None = None) -> Law:
    """draws: None for a bootstrap over the groups' optima, else the resamples' own optima."""
    log_n, log_d, y = np.log10(N), np.log10(D), np.log10(star)
    which, note = _identified(log_n, log_d)
    if len(y) < len(which) + 2:
        raise InputError(f"{name}: {len(y)} (N, D) groups with a swept {name}; need at least {len(which) + 2} "
                         f"to fit {len(which) + 1} parameters with a residual to bootstrap")
    # Centred regressors: the intercept is then the value at the table's centre, well conditioned.
    centre = {"N": log_n.mean(), "D": log_d.mean()}
    cols = {"N": log_n - centre["N"], "D": log_d - centre["D"]}
    X = np.stack([np.ones_like(y)] + [cols[k] for k in which], 1)
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    resid = float(np.sqrt(np.mean((y - X @ coef) ** 2)))
    if draws is None:
        pick = np.random.default_rng(seed).integers(0, len(y), size=(resamples, len(y)))
        boot, ok = _lstsq_batched(X[pick], y[pick])
    else:
        boot, ok = _weighted_lstsq(X, draws.weights, np.log10(draws.star))
    # Resamples that drew too few distinct N (or D) identify nothing. The rest are stretched about the
    # fit by sqrt(G / (G - p)): a bootstrap over G points sees (G - p) / G of a least-squares fit's
    # variance, which matters at our sweeps' 10 groups (measured: bench/hparam_rule_coverage.py).
    boot = coef + math.sqrt(len(y) / max(len(y) - X.shape[1], 1)) * (boot[ok] - coef)
    to_prefactor = lambda c: c[..., 0] - sum(c[..., i + 1] * centre[k] for i, k in enumerate(which))
    ci = lambda v: tuple(float(q) for q in np.percentile(v, [2.5, 97.5])) if len(v) else None
    exps = {k: (float(coef[which.index(k) + 1]) if k in which else None) for k in ("N", "D")}
    ints = {k: (ci(boot[:, which.index(k) + 1]) if k in which else None) for k in ("N", "D")}
    pre = ci(to_prefactor(boot))
    return Law(name, float(10 ** to_prefactor(coef)), pre and (10 ** pre[0], 10 ** pre[1]), exps, ints, len(y),
               resid, int(ok.sum()), note)


# ---- the whole fit ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HparamFit:
    sweep: Sweep
    groups: tuple[GroupOptimum, ...]
    lr: Law
    batch: Law | None
    options: Options
    seconds: float

    def penalty(self, attr: str) -> dict:
        rise = np.array([getattr(g, attr) for g in self.groups])
        rel = rise / np.array([g.best_loss for g in self.groups])
        ok = np.isfinite(rise)
        if not ok.any():
            return {"mean": None, "std": None, "relative_mean": None, "n_groups": 0}
        shared = np.ptp(rise[ok]) <= 1e-12 * abs(rise[ok]).max()  # shared_valley: one curvature, no spread
        return {"mean": float(rise[ok].mean()), "std": float(rise[ok].std(ddof=1)) if ok.sum() > 1 and not shared else None,
                "relative_mean": float(rel[ok].mean()), "n_groups": int(ok.sum())}


def fit(s: Sweep, opts: Options = Options()) -> HparamFit:
    t0 = time.perf_counter()
    draws = lambda axis, mask: None
    if opts.rule != "shared_valley":
        groups = optima(s, opts)
    else:
        check_groups(s)
        valley = fit_shared_valley(np.log10(s.lr), np.log10(s.batch), s.loss, s.group, opts.valley_window)
        groups = shared_optima(s, valley)
        if opts.resamples:
            W, boot = bootstrap_optima(valley, opts.resamples, opts.seed)
            draws = lambda axis, mask: Draws(W[boot.ok][:, mask],
                                             10 ** boot.optimum[boot.ok][:, mask, valley.axes.index(axis)])
    arrays = lambda gs, attr: (np.array([g.N for g in gs]), np.array([g.D for g in gs]),
                               np.array([getattr(g, attr) for g in gs]))
    lr_mask = np.array([g.lr_swept for g in groups])
    lr_groups = [g for g in groups if g.lr_swept]
    if not lr_groups:
        raise InputError(f"--lr-col {s.columns['lr']!r}: no (N, D) group sweeps more than one lr")
    lr = fit_law("lr", *arrays(lr_groups, "lr_star"), opts.resamples, opts.seed, draws("lr", lr_mask))
    b_mask = np.array([g.batch_swept for g in groups])
    b_groups = [g for g in groups if g.batch_swept]
    batch = (fit_law("batch", *arrays(b_groups, "batch_star"), opts.resamples, opts.seed + 1, draws("batch", b_mask))
             if b_groups else None)
    return HparamFit(s, tuple(groups), lr, batch, opts, time.perf_counter() - t0)


CENTRES = {"near_best": "geometric mean of the kept runs", "valley": "quadratic vertex",
           "shared_valley": "minimum inside the swept box of a quadratic valley whose curvature all groups share"}


def to_json(f: HparamFit) -> dict:
    s, o = f.sweep, f.options
    kept = sorted({i for g in f.groups for i in g.kept})
    selection = {"rule": o.rule, "tolerance": o.tolerance if o.rule == "near_best" else None,
                 "window": o.valley_window if o.rule != "near_best" else None,
                 "centre": CENTRES[o.rule],
                 "rows": [s.ids[i] for i in kept]}

    def law(l: Law | None, attr: str, swept: str):
        if l is None:
            return None
        return {"prefactor": l.prefactor, "prefactor_interval": l.prefactor_interval and list(l.prefactor_interval),
                "exponents": l.exponents, "intervals": {k: (list(v) if v else None) for k, v in l.intervals.items()},
                "n_groups": l.n_groups, "residual_dex": l.residual_dex, "resamples_used": l.resamples_used,
                "note": l.note, "kept": {**selection, "rows": [s.ids[i] for g in f.groups if getattr(g, swept)
                                                               for i in g.kept]},
                "penalty_x2": f.penalty(attr)}

    return {
        "columns": s.columns, "n_runs": len(s.loss), "notes": list(s.notes),
        "form": "hparam* = prefactor * N^exponents.N * D^exponents.D, in the units of the columns",
        "interval": (f"95% percentile bootstrap over (N, D) groups, {o.resamples} resamples, seed {o.seed}, "
                     "stretched about the fit by sqrt(G / (G - p)) for G groups and p coefficients"
                     + ("; each resample refits the shared valley" if o.rule == "shared_valley" else "")),
        "lr": law(f.lr, "lr_rise_x2", "lr_swept"),
        "batch": law(f.batch, "batch_rise_x2", "batch_swept") if f.batch else None,
        "groups": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in dataclasses.asdict(g).items() if k != "kept"} | {"n_kept": len(g.kept)}
                   for g in f.groups],
        "seconds": f.seconds,
    }


def report(f: HparamFit) -> str:
    o = f.options
    if o.rule == "near_best":
        within = f"the runs within {100 * o.tolerance:g}% of each group's best"
    elif o.valley_window is None:
        within = "fitted to every run"
    else:
        within = f"fitted to the runs within {100 * o.valley_window:g}% of each group's best"
    lines = [f"{len(f.sweep.loss)} runs in {len(f.groups)} (N, D) groups; rule {o.rule} ({within})"]
    lines += [f"note: {n}" for n in f.sweep.notes]
    edges = sum(g.edge for g in f.groups)
    if edges:
        lines.append(f"warning: {edges} group(s) have their optimum at the edge of the sweep; widen it there")
    for law, attr in ((f.lr, "lr_rise_x2"), (f.batch, "batch_rise_x2")):
        if law is None:
            lines.append("batch: no group sweeps more than one batch size; no batch law")
            continue
        ci = lambda k: f" [{law.intervals[k][0]:+.3f}, {law.intervals[k][1]:+.3f}]" if law.intervals[k] else ""
        terms = " * ".join(f"{k}^{v:+.3f}{ci(k)}" for k, v in law.exponents.items() if v is not None)
        lines.append(f"{law.name}*(N, D) = {law.prefactor:.4g} * {terms}   "
                     f"({law.n_groups} groups, scatter {law.residual_dex:.3f} dex)")
        if law.note:
            lines.append(f"  note: {law.note}")
        p = f.penalty(attr)
        if p["mean"] is not None:
            spread = f" +- {p['std']:.2g}" if p["std"] is not None else ""
            lines.append(f"  off by x2 in {law.name}: +{p['mean']:.4g}{spread} loss "
                         f"({100 * p['relative_mean']:.2f}% of the best; "
                         + ("one valley shared by all groups)" if o.rule == "shared_valley" else f"{p['n_groups']} convex valleys)"))
    lines.append(f"fitted in {f.seconds:.2f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = Parser(prog="python -m experiments.planning.hparam_fit", error_prefix="hparam_fit", raises=InputError,
                description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, help="shortcut: --results DIR/results.csv --out DIR")
    ap.add_argument("--results", type=Path, help="CSV, one row per run")
    ap.add_argument("--out", type=Path, help="directory for hparam_fit.json")
    for role, what in (("n", "parameters N"), ("d", "tokens D"), ("lr", "learning rate"),
                       ("batch", "batch size"), ("loss", "final loss")):
        ap.add_argument(f"--{role}-col", help=f"{what} (default: first of {', '.join(AUTO[role])})")
    ap.add_argument("--group-cols", default="", help="comma-separated columns a group shares (default: N and D)")
    ap.add_argument("--rule", default="near_best", help="near_best (Step Law), valley (a quadratic per group) or "
                    "shared_valley (one curvature for all groups, a vertex each: for noisy sweeps)")
    ap.add_argument("--tolerance", type=float, default=0.0025, help="near_best: fraction of the group's best loss")
    ap.add_argument("--valley-window", type=float, default=None,
                    help="valley fits (and the x2 penalties): runs within this fraction of the group's best loss "
                    "(default: 0.05 for valley and near_best's penalties, every run for shared_valley)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    try:
        a = ap.parse_args(argv)
        if a.study is not None:
            results, out = a.results or a.study / "results.csv", a.out or a.study
        elif a.results is None or a.out is None:
            raise InputError("give --results FILE --out DIR, or --study DIR")
        else:
            results, out = a.results, a.out
        opts = Options(a.n_col, a.d_col, a.lr_col, a.batch_col, a.loss_col,
                       tuple(c for c in a.group_cols.split(",") if c.strip()), a.rule, a.tolerance,
                       a.valley_window, a.resamples, a.seed)
        f = fit(sweep_from(read_table(results), opts), opts)
    except InputError as e:
        print(f"hparam_fit: {one_line(e)}", file=sys.stderr)
        return 2
    print(report(f))
    atomic.write_json(out / "hparam_fit.json", to_json(f), parents=True)
    print(f"wrote {out / 'hparam_fit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
