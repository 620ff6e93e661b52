"""Load a results table or loss curves from CSV, validate, and map columns to typed records.

Works on any CSV: our grids' `results.csv` (params, tokens, flops_6n, budget, final_eval_loss,
status, ...), Epoch's extraction of Chinchilla Fig. 4 ("Model Size", "Training FLOP", "loss"), or
anyone's table with columns named on the command line. Bad input raises InputError, one line.

Our results.csv also says, per run, its `role` (only "isoflop" rows are IsoFLOP points: WSD trunks
and lr-sweep runs are left out with a note), its `seed`, the final eval loss's standard error
`final_eval_loss_se`, and compute under every FLOP convention (`flops_<conv>`). C is taken in the
convention the budgets were planned in (`flop_convention`), so every fit of one table counts FLOPs
one way. Rows of a study still running (no final loss yet, status not completed) are skipped with
a note, not an error.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Mapping

import numpy as np
import pandas as pd

from analysis.records import InputError

# Auto-detection order when a column is not named (first present wins).
N_CANDIDATES = ("params", "Model Size", "N", "n_params")
D_CANDIDATES = ("tokens", "Training Tokens", "D")
C_CANDIDATES = ("flops_6n", "Training FLOP", "C", "flops")
LOSS_CANDIDATES = ("final_eval_loss", "loss", "final_train_loss", "eval_loss")
DROPPED_STATUS = ("diverged", "failed")
FINISHED_STATUS = ("completed", "ok", "done")
ISOFLOP_ROLE = "isoflop"
# C = k * N * D: k = 6 (Kaplan et al. 2020 eq. 2.1, Hoffmann et al. 2022 Sec. 3).
CONVENTIONS = {"6nd": 6.0}
# Conventions our trainer counts (scaling.flops.CONVENTIONS), as results.csv columns flops_<conv>.
TABLE_CONVENTIONS = ("6n", "6n_nonembed", "chinchilla", "chinchilla_causal")


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
    # Added for our own studies; absent columns leave them None (NaN entries: unknown per run).
    seed: np.ndarray | None = None
    loss_se: np.ndarray | None = None  # standard error of `loss` from the eval itself (nats)
    true_loss: np.ndarray | None = None  # E* of the data source where it is known
    flops: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # C per convention
    convention: str = "6nd"  # the convention of C (and of the budgets)

    def __len__(self) -> int:
        return len(self.loss)

    def subset(self, mask) -> "Runs":
        m = np.asarray(mask)
        pick = lambda a: None if a is None else a[m]
        return dataclasses.replace(
            self, run_id=self.run_id[m], N=self.N[m], D=self.D[m], C=self.C[m], loss=self.loss[m],
            budget=self.budget[m], N_nonembed=pick(self.N_nonembed), seed=pick(self.seed),
            loss_se=pick(self.loss_se), true_loss=pick(self.true_loss),
            flops={k: v[m] for k, v in self.flops.items()})

    def with_loss(self, loss) -> "Runs":
        """The same runs with other losses (a parametric-bootstrap draw)."""
        return dataclasses.replace(self, loss=np.asarray(loss, float))

    def flops_per_token(self, convention: str | None = None) -> np.ndarray:
        """Training FLOPs per token of each run under `convention` (default: the table's own)."""
        conv = convention or self.convention
        if conv == self.convention:
            return self.C / self.D
        if conv not in self.flops:
            raise InputError(f"FLOP convention {conv!r}: the table has no flops_{conv} column")
        return self.flops[conv] / self.D

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


def read_table(path) -> pd.DataFrame:
    """The results table as read, once: `runs_from` takes the runs out of it."""
    if not os.path.exists(path):
        raise InputError(f"--results: file {path} does not exist")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the table is empty (no header, no rows)") from None
    if len(df) == 0:
        raise InputError(f"{path}: the table has no rows")
    return df


def pick_column(df, name, candidates, flag, required=True):
    """The column a flag names (one-line error if absent), else the first of `candidates` present;
    None when none is and not `required`. Every table reader of the project picks columns so."""
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


def _leave_out(df, cols: Columns, loss_col: str | None, notes: list) -> pd.DataFrame:
    """Rows that are no IsoFLOP result: diverged/failed runs, runs of another role (WSD trunks are
    never cooled down; lr-sweep runs calibrate the recipe), runs with no final loss yet."""
    status = df[cols.status].astype(str).str.lower() if cols.status and cols.status in df.columns else None
    if status is not None:
        bad = status.isin(DROPPED_STATUS)
        if bad.any():
            notes.append(f"left out {int(bad.sum())} runs with status diverged/failed")
        df, status = df[~bad], status[~bad]
    if "role" in df.columns:
        role = df["role"].fillna(ISOFLOP_ROLE).astype(str).str.strip().replace("", ISOFLOP_ROLE)
        other = role != ISOFLOP_ROLE
        if other.any():
            kinds = ", ".join(f"{k} {v}" for k, v in role[other].value_counts().items())
            notes.append(f"left out {int(other.sum())} runs whose role is not isoflop ({kinds}): "
                         f"no approach fits them as IsoFLOP points")
        df, status = df[~other], None if status is None else status[~other]
    if status is not None and loss_col in df.columns:
        waiting = pd.to_numeric(df[loss_col], errors="coerce").isna() & ~status.isin(FINISHED_STATUS)
        if waiting.any():
            states = ", ".join(f"{k} {v}" for k, v in status[waiting].value_counts().items())
            notes.append(f"skipped {int(waiting.sum())} runs with no final loss yet ({states}); "
                         f"rerun the fit when the study has finished")
        df = df[~waiting]
    return df.reset_index(drop=True)


def _optional(df, col) -> np.ndarray | None:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(float) if col in df.columns else None


def _table_convention(df, cols: Columns, c_col_named: bool) -> str | None:
    """The convention our tables planned their budgets in, when C is not named on the command line."""
    if c_col_named or "flop_convention" not in df.columns:
        return None
    convs = df["flop_convention"].dropna().astype(str).unique()
    if len(convs) > 1:
        raise InputError(f"column 'flop_convention': the table mixes {', '.join(convs)}; "
                         f"one study, one convention (or name the compute column with --c-col)")
    if len(convs) == 1 and f"flops_{convs[0]}" in df.columns:
        return str(convs[0])
    return None


def load_runs(path, cols: Columns = Columns()) -> Runs:
    return runs_from(read_table(path), cols, path)


def runs_from(df: pd.DataFrame, cols: Columns = Columns(), path="the table") -> Runs:
    notes: list[str] = []
    n_col = pick_column(df, cols.n, N_CANDIDATES, "--n-col")
    loss_col = pick_column(df, cols.loss, LOSS_CANDIDATES, "--loss-col")
    df = _leave_out(df, cols, loss_col, notes)
    if len(df) == 0:
        raise InputError(f"{path}: no runs left after leaving out diverged/failed, non-isoflop and "
                         f"unfinished ones ({'; '.join(notes)})")
    run_col = pick_column(df, cols.run, ("run_id", "run"), "--run-col", required=False)
    ids = df[run_col].astype(str).to_numpy() if run_col else np.array([f"row{i + 1}" for i in range(len(df))])
    n = _positive(df[n_col].to_numpy(), n_col, ids)
    loss = _positive(df[loss_col].to_numpy(), loss_col, ids)
    ne_col = pick_column(df, cols.n_nonembed, ("non_embedding_params",), "--n-nonembed-col", required=False)
    n_ne = _positive(df[ne_col].to_numpy(), ne_col, ids) if ne_col else None
    if cols.flops_convention not in CONVENTIONS:
        raise InputError(f"--flops-convention {cols.flops_convention!r}: choose one of {', '.join(CONVENTIONS)}")
    k = CONVENTIONS[cols.flops_convention]
    table_conv = _table_convention(df, cols, cols.c is not None)
    d_col = pick_column(df, cols.d, D_CANDIDATES, "--d-col", required=False)
    c_col = f"flops_{table_conv}" if table_conv else pick_column(df, cols.c, C_CANDIDATES, "--c-col", required=False)
    if d_col is None and c_col is None:
        raise InputError("missing column: need tokens (--d-col) or compute (--c-col) to know D")
    c = _positive(df[c_col].to_numpy(), c_col, ids) if c_col else None
    d = _positive(df[d_col].to_numpy(), d_col, ids) if d_col else c / (k * n)
    c = c if c is not None else k * n * d
    b_col = pick_column(df, cols.budget, ("budget",), "--budget-col", required=False)
    if cols.budgets:
        budget = snap_budgets(c, cols.budgets, cols.snap_dex)
    elif b_col:
        budget = _positive(df[b_col].to_numpy(), b_col, ids)
    else:
        budget = group_budgets(c, cols.budget_gap_dex)
    flops = {conv: v for conv in TABLE_CONVENTIONS if (v := _optional(df, f"flops_{conv}")) is not None
             and np.all(np.isfinite(v) & (v > 0))}
    convention = table_conv or (c_col[len("flops_"):] if c_col and c_col.startswith("flops_") else cols.flops_convention)
    return Runs(ids, n, d, c, loss, budget, n_ne, tuple(notes), seed=_optional(df, "seed"),
                loss_se=_optional(df, "final_eval_loss_se"), true_loss=_optional(df, "true_loss"),
                flops=flops, convention=convention)


def load_curves(path, loss_col: str | None = None, flops_convention: str = "6nd") -> Curves:
    """Long-format curves (run_id, params, tokens, [flops], loss); the loss column defaults to
    train_loss (then eval_loss, loss). Rows whose loss is missing (e.g. eval loss logged every k
    steps) are skipped; steps before any token was seen are skipped."""
    df = read_table(path)
    run_col = pick_column(df, None, ("run_id", "run"), "--curve-run-col")
    n_col = pick_column(df, None, N_CANDIDATES, "--curve-n-col")
    t_col = pick_column(df, None, ("tokens",), "--curve-tokens-col")
    if loss_col is None:  # the train loss is logged every step: the curve with the most points
        loss_col = next((c for c in ("train_loss", "eval_loss", "loss") if c in df.columns
                         and pd.to_numeric(df[c], errors="coerce").notna().any()), None)
        if loss_col is None:
            raise InputError("curves: missing column: none of train_loss, eval_loss, loss has values; name it with --curve-loss-col")
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
