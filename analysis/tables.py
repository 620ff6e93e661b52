"""Load a results table or loss curves from CSV, validate, and map columns to typed records.

Works on any CSV: our grids' `results.csv` (params, tokens, flops_6n, budget, final_eval_loss,
status, ...), Epoch's extraction of Chinchilla Fig. 4 ("Model Size", "Training FLOP", "loss"), or
anyone's table with columns named on the command line. Bad input raises InputError, one line.
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pandas as pd

from analysis.records import InputError

# Auto-detection order when a column is not named (first present wins).
N_CANDIDATES = ("params", "Model Size", "N", "n_params")
D_CANDIDATES = ("tokens", "Training Tokens", "D")
C_CANDIDATES = ("flops_6n", "Training FLOP", "C", "flops")
LOSS_CANDIDATES = ("final_eval_loss", "loss", "final_train_loss", "eval_loss")
DROPPED_STATUS = ("diverged", "failed")
# C = k * N * D: k = 6 (Kaplan et al. 2020 eq. 2.1, Hoffmann et al. 2022 Sec. 3).
CONVENTIONS = {"6nd": 6.0}


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which CSV column holds each quantity; None means auto-detect (see *_CANDIDATES)."""

    n: str | None = None
    d: str | None = None
    c: str | None = None
    loss: str | None = None
    budget: str | None = None
    n_nonembed: str | None = None
    status: str | None = "status"
    run: str | None = None
    flops_convention: str = "6nd"
    budget_gap_dex: float = 0.1  # budgets from C: runs within this log10 gap share a budget
    budgets: tuple[float, ...] = ()  # nominal budgets: each run snaps to the nearest one ...
    snap_dex: float = 0.06  # ... if within this many decades, else it has no budget (NaN)


@dataclasses.dataclass(frozen=True)
class Runs:
    """One row per usable run. `budget` is the IsoFLOP group each run belongs to."""

    run_id: np.ndarray
    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    loss: np.ndarray
    budget: np.ndarray
    N_nonembed: np.ndarray | None
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.loss)

    def subset(self, mask) -> "Runs":
        m = np.asarray(mask)
        pick = lambda a: None if a is None else a[m]
        return Runs(self.run_id[m], self.N[m], self.D[m], self.C[m], self.loss[m], self.budget[m],
                    pick(self.N_nonembed), self.notes)

    def budgets(self) -> np.ndarray:
        return np.unique(self.budget[np.isfinite(self.budget)])


@dataclasses.dataclass(frozen=True)
class Curves:
    """Loss curves in long format: one row per (run, logged step)."""

    run_id: np.ndarray
    N: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray
    loss: np.ndarray


def _read(path) -> pd.DataFrame:
    if not os.path.exists(path):
        raise InputError(f"--results: file {path} does not exist")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the table is empty (no header, no rows)") from None
    if len(df) == 0:
        raise InputError(f"{path}: the table has no rows")
    return df


def _pick(df, name, candidates, flag, required=True):
    if name is not None:
        if name not in df.columns:
            raise InputError(f"{flag} {name!r}: no such column (columns: {', '.join(map(str, df.columns))})")
        return name
    for c in candidates:
        if c in df.columns:
            return c
    if required:
        raise InputError(f"missing column: none of {', '.join(candidates)} found; name it with {flag}")
    return None


def _positive(values, col, ids):
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v) | (v <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"column {col!r}: value {values[i]!r} in run {ids[i]} is NaN, infinite or "
                         f"not positive ({int(bad.sum())} such rows); fix or drop those rows")
    return v


def group_budgets(c, gap_dex: float) -> np.ndarray:
    """IsoFLOP groups from per-run compute: sort log10 C and cut wherever the gap exceeds gap_dex
    (read-off FLOPs of one budget scatter by a few percent). Each group is labelled by its median C."""
    logc = np.log10(c)
    order = np.argsort(logc)
    cuts = np.flatnonzero(np.diff(logc[order]) > gap_dex) + 1
    labels = np.empty_like(c)
    for grp in np.split(order, cuts):
        labels[grp] = float(np.median(c[grp]))
    return labels


def snap_budgets(c, nominal, tol_dex: float) -> np.ndarray:
    """Nearest nominal budget within tol_dex decades, else NaN (the run joins no IsoFLOP group).
    Chinchilla's Fig. 4 extraction has no budget column and its FLOPs scatter continuously."""
    nominal = np.asarray(sorted(nominal), float)
    dist = np.abs(np.log10(c)[:, None] - np.log10(nominal)[None, :])
    j = np.argmin(dist, 1)
    return np.where(dist[np.arange(len(c)), j] <= tol_dex, nominal[j], np.nan)


def load_runs(path, cols: Columns = Columns()) -> Runs:
    df = _read(path)
    notes = []
    if cols.status and cols.status in df.columns:
        bad = df[cols.status].astype(str).str.lower().isin(DROPPED_STATUS)
        if bad.any():
            notes.append(f"left out {int(bad.sum())} runs with status diverged/failed")
            df = df[~bad].reset_index(drop=True)
        if len(df) == 0:
            raise InputError(f"{path}: no runs left after leaving out diverged/failed ones")
    run_col = _pick(df, cols.run, ("run_id", "run"), "--run-col", required=False)
    ids = df[run_col].astype(str).to_numpy() if run_col else np.array([f"row{i + 1}" for i in range(len(df))])
    n_col = _pick(df, cols.n, N_CANDIDATES, "--n-col")
    loss_col = _pick(df, cols.loss, LOSS_CANDIDATES, "--loss-col")
    n = _positive(df[n_col].to_numpy(), n_col, ids)
    loss = _positive(df[loss_col].to_numpy(), loss_col, ids)
    ne_col = _pick(df, cols.n_nonembed, ("non_embedding_params",), "--n-nonembed-col", required=False)
    n_ne = _positive(df[ne_col].to_numpy(), ne_col, ids) if ne_col else None
    if cols.flops_convention not in CONVENTIONS:
        raise InputError(f"--flops-convention {cols.flops_convention!r}: choose one of {', '.join(CONVENTIONS)}")
    k = CONVENTIONS[cols.flops_convention]
    d_col = _pick(df, cols.d, D_CANDIDATES, "--d-col", required=False)
    c_col = _pick(df, cols.c, C_CANDIDATES, "--c-col", required=False)
    if d_col is None and c_col is None:
        raise InputError("missing column: need tokens (--d-col) or compute (--c-col) to know D")
    c = _positive(df[c_col].to_numpy(), c_col, ids) if c_col else None
    d = _positive(df[d_col].to_numpy(), d_col, ids) if d_col else c / (k * n)
    c = c if c is not None else k * n * d
    b_col = _pick(df, cols.budget, ("budget",), "--budget-col", required=False)
    if cols.budgets:
        budget = snap_budgets(c, cols.budgets, cols.snap_dex)
    elif b_col:
        budget = _positive(df[b_col].to_numpy(), b_col, ids)
    else:
        budget = group_budgets(c, cols.budget_gap_dex)
    return Runs(ids, n, d, c, loss, budget, n_ne, tuple(notes))


def load_curves(path, loss_col: str | None = None, flops_convention: str = "6nd") -> Curves:
    """Long-format curves (run_id, params, tokens, [flops], loss). Rows whose loss is missing (e.g.
    eval loss logged every k steps) are skipped; steps before any token was seen are skipped."""
    df = _read(path)
    run_col = _pick(df, None, ("run_id", "run"), "--curve-run-col")
    n_col = _pick(df, None, N_CANDIDATES, "--curve-n-col")
    t_col = _pick(df, None, ("tokens",), "--curve-tokens-col")
    if loss_col is None:
        loss_col = next((c for c in ("eval_loss", "train_loss", "loss") if c in df.columns
                         and pd.to_numeric(df[c], errors="coerce").notna().any()), None)
        if loss_col is None:
            raise InputError("curves: missing column: none of eval_loss, train_loss, loss has values; name it with --curve-loss-col")
    elif loss_col not in df.columns:
        raise InputError(f"--curve-loss-col {loss_col!r}: no such column")
    df = df[pd.to_numeric(df[loss_col], errors="coerce").notna() & (pd.to_numeric(df[t_col], errors="coerce") > 0)]
    if len(df) == 0:
        raise InputError(f"curves: no rows with a {loss_col} value and tokens > 0")
    ids = df[run_col].astype(str).to_numpy()
    n = _positive(df[n_col].to_numpy(), n_col, ids)
    tokens = _positive(df[t_col].to_numpy(), t_col, ids)
    loss = _positive(df[loss_col].to_numpy(), loss_col, ids)
    flops = (_positive(df["flops"].to_numpy(), "flops", ids) if "flops" in df.columns
             else CONVENTIONS[flops_convention] * n * tokens)
    return Curves(ids, n, tokens, flops, loss)


def drop_highest_loss(runs: Runs, k: int) -> Runs:
    """Besiroglu et al. 2024 drop the 5 highest-loss points of the Fig. 4 extraction (outliers)."""
    if k <= 0:
        return runs
    if k >= len(runs):
        raise InputError(f"--drop-highest {k}: the table has only {len(runs)} runs")
    keep = np.argsort(runs.loss, kind="stable")[: len(runs) - k]
    return runs.subset(np.sort(keep))


def finite_or_none(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
