"""One loss valley shared by every (N, D) group of a sweep: the `shared_valley` rule of hparam_fit.

Each run's loss is modelled as

    loss = floor_g + beta_g . u + 1/2 u' H u,     u = (log10 lr, log10 B) - their means over the table,

with a floor and a slope vector per group g and ONE Hessian H for the whole sweep: the valley's
shape (how much a factor 2 in lr or batch costs, and how the best lr moves with batch) is shared
while its position moves with (N, D). Linear in every coefficient, so one least-squares solve fits
it. Each group's optimum is the minimum of its quadratic inside the swept box (its vertex when that
lies inside; else the best point on the box's faces, flagged `edge`).

Why share H: a small sweep's runs differ by little more than their noise (on the CPU sweep a
factor 2 in lr costs ~1 sigma of run-to-run noise), so a quadratic with 6 coefficients per group
from 9 runs is rarely convex, and the per-group `valley` rule falls back to the noisy best run.
Pooling the curvature leaves 3 coefficients per group (floor and two slopes), so every run informs
every group's vertex through H. The vertices' scatter about the fitted law, which the law's interval
reads, then carries both the runs' noise and any misfit of the law.

Intervals: the law's bootstrap resamples whole groups and refits the valley, Hessian included, in each
resample (a group's vertex moves with H, so resampling vertices computed from one H would leave H's
own uncertainty out: on simulated CPU-shaped sweeps that covered 79-86% where 95% was asked). Each
group enters the fit only through its sufficient statistics (`ValleyStats`), so a resample is a
weighted sum and a 3x3 solve, vectorised over resamples.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis.records import InputError

AXES = ("lr", "batch")


@dataclasses.dataclass(frozen=True)
class GroupStats:
    """One group's share of the least-squares problem, with H's m unique entries as the shared unknowns:
    loss = U coef + Q h. M, r: the normal equations for h after projecting out U; coef = a - B h."""
    free: tuple[int, ...]  # the axes this group sweeps (indices into ValleyStats.axes)
    fixed_u: np.ndarray  # (k,) the group's centred value on every axis (used where the axis is not free)
    lo: np.ndarray  # (len(free),) the swept box, centred log10
    hi: np.ndarray
    M: np.ndarray  # (m, m)
    r: np.ndarray  # (m,)
    a: np.ndarray  # (1 + len(free),)
    B: np.ndarray  # (1 + len(free), m)
    ss: float  # the group's loss sum of squares after projecting out U
    n: int


@dataclasses.dataclass(frozen=True)
class ValleyStats:
    axes: tuple[str, ...]  # the axes some group sweeps, of "lr", "batch"
    centre: np.ndarray  # (k,) log10 means the coordinates are centred on
    groups: tuple[GroupStats, ...]
    rows_used: np.ndarray  # indices into the sweep's arrays
    pairs: tuple[tuple[int, int], ...]  # H's unique entries, in h's order


@dataclasses.dataclass(frozen=True)
class ValleySolution:
    """The valley for R weightings of the groups (R = 1: the fit itself; else bootstrap resamples)."""
    hessian: np.ndarray  # (R, k, k)
    optimum: np.ndarray  # (R, G, k) log10 optimum (nan on an axis a group does not sweep)
    edge: np.ndarray  # (R, G) bool: on the swept box's boundary
    ok: np.ndarray  # (R,) bool: H positive definite
    sigma: float  # rms residual of the runs (R = 1 only; nan otherwise)


@dataclasses.dataclass(frozen=True)
class SharedValley:
    stats: ValleyStats
    fit: ValleySolution

    @property
    def axes(self):
        return self.stats.axes

    @property
    def optimum(self):
        return self.fit.optimum[0]

    @property
    def edge(self):
        return self.fit.edge[0]

    def rise_x2(self, axis: str) -> float:
        """Loss rise at a factor 2 off the optimum along one axis, the other held at its optimum."""
        j = self.axes.index(axis)
        return float(0.5 * self.fit.hessian[0, j, j] * np.log10(2.0) ** 2)


def valley_stats(log_lr, log_b, loss, group, window: float | None) -> ValleyStats:
    """Each group's sufficient statistics, from the runs within `window` (a fraction of the group's best
    loss; None: every run)."""
    G = int(group.max()) + 1
    best = np.array([loss[group == g].min() for g in range(G)])
    rows = np.flatnonzero(loss <= best[group] + (np.inf if window is None else window * np.abs(best[group])))
    raw = np.stack([log_lr[rows], log_b[rows]], 1)
    g = group[rows]
    sweeps = np.array([[len(np.unique(raw[g == j, i])) >= 2 for i in range(2)] for j in range(G)])
    keep_axes = [i for i in range(2) if sweeps[:, i].any()]
    if not keep_axes:
        raise InputError("shared_valley: no (N, D) group sweeps more than one lr or batch")
    u = raw[:, keep_axes] - raw[:, keep_axes].mean(0)
    k = len(keep_axes)
    pairs = tuple((i, j) for i in range(k) for j in range(i, k))
    Q = np.stack([0.5 * u[:, i] * u[:, j] * (1 if i == j else 2) for i, j in pairs], 1)
    groups = []
    for j in range(G):
        mine = g == j
        free = tuple(i for i, ax in enumerate(keep_axes) if sweeps[j, ax])
        U = np.column_stack([np.ones(mine.sum())] + [u[mine, i] for i in free])
        pinv = np.linalg.pinv(U)
        resid = lambda v: v - U @ (pinv @ v)
        Qg, Lg = Q[mine], loss[rows][mine]
        groups.append(GroupStats(free, u[mine][0], u[mine][:, list(free)].min(0), u[mine][:, list(free)].max(0),
                                 Qg.T @ resid(Qg), Qg.T @ resid(Lg), pinv @ Lg, pinv @ Qg,
                                 float(Lg @ resid(Lg)), int(mine.sum())))
    n_coef = len(pairs) + sum(1 + len(gs.free) for gs in groups)
    if len(rows) <= n_coef:
        raise InputError(f"shared_valley: {len(rows)} runs for {n_coef} coefficients; sweep more lrs or batches")
    return ValleyStats(tuple(AXES[i] for i in keep_axes), raw[:, keep_axes].mean(0), tuple(groups), rows, pairs)


def _box_minimum(H, b, lo, hi):
    """argmin of b.u + 1/2 u'Hu over lo <= u <= hi, for R problems at once (1 or 2 axes; H positive
    definite): (u (R, f), on_boundary (R,)). A convex quadratic's box minimum is its vertex when that
    is inside, else on a face, where it is the clipped 1-D minimum along the face."""
    f = b.shape[1]
    v = np.linalg.solve(H, -b[..., None])[..., 0]
    inside = np.all((v >= lo - 1e-12) & (v <= hi + 1e-12), axis=1)
    if f == 1:
        return np.clip(v, lo, hi), ~inside
    value = lambda w: np.einsum("ri,ri->r", b, w) + 0.5 * np.einsum("ri,rij,rj->r", w, H, w)
    best, best_val = v.copy(), np.full(len(b), np.inf)
    for i in (0, 1):
        j = 1 - i
        for c in (lo[i], hi[i]):
            w = np.empty_like(v)
            w[:, i] = c
            w[:, j] = np.clip(-(b[:, j] + H[:, j, i] * c) / H[:, j, j], lo[j], hi[j])
            val = value(w)
            better = val < best_val
            best[better], best_val[better] = w[better], val[better]
    return np.where(inside[:, None], v, best), ~inside


def solve_valley(st: ValleyStats, W: np.ndarray) -> ValleySolution:
    """The valley fitted with group weights W (R, G): ones for the fit, bootstrap counts for resamples."""
    k, R, G = len(st.axes), W.shape[0], len(st.groups)
    M = np.einsum("rg,gij->rij", W, np.stack([gs.M for gs in st.groups]))
    r = np.einsum("rg,gi->ri", W, np.stack([gs.r for gs in st.groups]))
    h = np.linalg.lstsq(M[0], r[0], rcond=None)[0][None] if R == 1 else _solve_many(M, r)
    H = np.zeros((R, k, k))
    for c, (i, j) in enumerate(st.pairs):
        H[:, i, j] = H[:, j, i] = h[:, c]
    ok = np.all(np.linalg.eigvalsh(H) > 0, axis=1)
    Hs = np.where(ok[:, None, None], H, np.eye(k))  # a failed resample is dropped; keep its algebra finite
    optimum, edge = np.full((R, G, k), np.nan), np.zeros((R, G), bool)
    for g, gs in enumerate(st.groups):
        if not gs.free:
            continue
        free, fixed = list(gs.free), [i for i in range(k) if i not in gs.free]
        slopes = (gs.a[None] - h @ gs.B.T)[:, 1:]  # (R, f)
        b = slopes + Hs[:, free][:, :, fixed] @ gs.fixed_u[fixed]
        v, on_edge = _box_minimum(Hs[:, free][:, :, free], b, gs.lo, gs.hi)
        optimum[:, g, free] = v + st.centre[free]
        edge[:, g] = on_edge
    sigma = float("nan")
    if R == 1:
        ss = sum(gs.ss - 2 * h[0] @ gs.r + h[0] @ gs.M @ h[0] for gs in st.groups)
        dof = len(st.rows_used) - len(st.pairs) - sum(1 + len(gs.free) for gs in st.groups)
        sigma = float(np.sqrt(max(ss, 0.0) / dof))
    return ValleySolution(H, optimum, edge, ok, sigma)


def _solve_many(M, r):
    ok = np.abs(np.linalg.det(M)) > 1e-12 * np.abs(M).max(axis=(1, 2)) ** M.shape[1]
    out = np.full(r.shape, np.nan)
    out[ok] = np.linalg.solve(M[ok], r[ok][..., None])[..., 0]
    return np.where(np.isfinite(out), out, 0.0)


def fit_shared_valley(log_lr, log_b, loss, group, window: float | None) -> SharedValley:
    """Fit the shared valley; each group's optimum inside its swept box."""
    st = valley_stats(log_lr, log_b, loss, group, window)
    fit = solve_valley(st, np.ones((1, len(st.groups))))
    if not fit.ok[0]:
        raise InputError(f"shared_valley: the sweep's loss does not open upward in log lr and log batch "
                         f"(Hessian eigenvalues {np.linalg.eigvalsh(fit.hessian[0])}); use --rule near_best")
    return SharedValley(st, fit)


def bootstrap_optima(v: SharedValley, resamples: int, seed: int) -> tuple[np.ndarray, ValleySolution]:
    """Group bootstrap: counts W (R, G) of each group in each resample and the valley refitted there."""
    G = len(v.stats.groups)
    pick = np.random.default_rng(seed).integers(0, G, size=(resamples, G))
    W = np.stack([np.bincount(p, minlength=G) for p in pick]).astype(float)
    return W, solve_valley(v.stats, W)
