"""Any CSV as a registry law's input: the columns the law needs, as logs, one-line errors.

Column keys: "n" (parameters), "d" (tokens; else D = C/(6N) from a compute column), "u" (unique
tokens: data_constrained), and the loss. Named columns win; otherwise the same auto-detection as
analysis.tables (first present of the candidates). Rows whose status is diverged/failed are left
out, as there. The table's run noise rides along (LawData.sigma, for the diagnostics' z scores):
the pooled std over seed repeats where a `seed` column says which rows repeat one configuration,
else its eval SE column, as analysis.uncertainty.noise.run_noise does for the approaches.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.laws import schedule
from analysis.laws.law_fit import LawData
from analysis.records import InputError
from analysis.tables import tables

U_CANDIDATES = ("unique_tokens", "Unique Tokens", "U_D", "unique")
SE_CANDIDATES = ("final_eval_loss_se", "loss_se", "eval_loss_se")
FLAGS = {"n": "--n-col", "d": "--d-col", "u": "--unique-col", "c": "--c-col", "loss": "--loss-col",
         "run": "--run-col", "step": "--step-col", "lr": "--lr-col"}
CANDIDATES = {"n": tables.N_CANDIDATES, "d": tables.D_CANDIDATES, "u": U_CANDIDATES, "c": tables.C_CANDIDATES,
              "loss": tables.LOSS_CANDIDATES + ("train_loss",), "run": ("run_id", "run"), "step": ("step",),
              "lr": ("lr", "learning_rate")}


@dataclasses.dataclass(frozen=True)
class LawColumns:
    n: str | None = None
    d: str | None = None
    u: str | None = None
    c: str | None = None
    loss: str | None = None
    status: str | None = "status"
    run: str | None = None
    step: str | None = None
    lr: str | None = None


@dataclasses.dataclass(frozen=True)
class LawTable:
    frame: pd.DataFrame  # the rows used, every column as read (predictions.csv repeats them)
    data: LawData
    columns: dict  # key -> the CSV column it came from
    notes: tuple[str, ...] = ()


def _column(df, cols: LawColumns, key: str, required: bool = True) -> str | None:
    return tables.pick_column(df, getattr(cols, key), CANDIDATES[key], FLAGS[key], required)


def _positive(df, col: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v) | (v <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"column {col!r}: value {df[col].iloc[i]} in row {i + 1} is NaN, infinite or not "
                         f"positive ({int(bad.sum())} such rows); fix or drop those rows")
    return v


def law_table(df: pd.DataFrame, cols: LawColumns, inputs: tuple[str, ...], with_loss: bool = True,
              decay: float = schedule.LAMBDA) -> LawTable:
    """The law's inputs (and the loss, when `with_loss`) from the table's rows; `decay`: the
    annealing momentum's lambda for curves' S2 (analysis.laws.annealing_decay chooses it)."""
    notes = []
    if cols.status and cols.status in df.columns:
        bad = df[cols.status].astype(str).str.lower().isin(tables.DROPPED_STATUS)
        if bad.any():
            notes.append(f"left out {int(bad.sum())} rows with status diverged/failed")
        df = df[~bad].reset_index(drop=True)
    if "s1" in inputs:
        return _curves(df, cols, with_loss, notes, decay)
    used: dict[str, str] = {}
    logs: dict[str, np.ndarray] = {}
    for key in inputs:
        if key == "d":
            continue
        used[key] = _column(df, cols, key)
        logs[f"log_{key}"] = np.log(_positive(df, used[key]))
    if "d" in inputs:
        d_col = _column(df, cols, "d", required=False)
        if d_col is not None:
            used["d"], logs["log_d"] = d_col, np.log(_positive(df, d_col))
        else:
            c_col = _column(df, cols, "c", required=False)
            if c_col is None:
                raise InputError("missing column: need tokens (--d-col) or compute (--c-col, D = C/6N) to know D")
            used["c"] = c_col
            logs["log_d"] = np.log(_positive(df, c_col)) - np.log(6.0) - logs["log_n"]
    log_loss, sigma, source = None, None, "none"
    if with_loss:
        used["loss"] = _column(df, cols, "loss")
        log_loss = np.log(_positive(df, used["loss"]))
        sigma, source = run_noise(df, logs, log_loss)
    return LawTable(df, LawData(logs, log_loss, sigma, source), used, tuple(notes))


def run_noise(df: pd.DataFrame, logs: dict, log_loss: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(per-row loss std in nats, its source): the pooled within-group std (ddof 1) over rows that
    share every input of the law and differ by `seed`, else the eval SE column where every row has
    one, else (None, "none"). Without a seed column, equal inputs are no known repeats."""
    if "seed" in df.columns:
        keys = np.round(np.stack(list(logs.values()), 1), 9)
        _, group = np.unique(keys, axis=0, return_inverse=True)
        loss = np.exp(log_loss)
        ss, dof = 0.0, 0
        for g in np.unique(group):
            y = loss[group == g]
            if len(y) > 1:
                ss, dof = ss + float(np.sum((y - y.mean()) ** 2)), dof + len(y) - 1
        if dof and ss > 0:
            return np.full(len(loss), np.sqrt(ss / dof)), f"seed noise ({dof} dof)"
    se_col = next((c for c in SE_CANDIDATES if c in df.columns), None)
    if se_col is not None:
        se = pd.to_numeric(df[se_col], errors="coerce").to_numpy(float)
        if np.all(np.isfinite(se) & (se > 0)):
            return se, f"eval SE ({se_col})"
    return None, "none"


def _curves(df: pd.DataFrame, cols: LawColumns, with_loss: bool, notes: list, decay: float) -> LawTable:
    """Loss curves (run, step, lr[, loss]) as the annealing law's S1, S2 per row: the lr of every
    row enters the areas; rows without a loss value (eval every k steps) are then dropped when fitting."""
    used = {k: _column(df, cols, k) for k in ("run", "step", "lr")}
    step = pd.to_numeric(df[used["step"]], errors="coerce").to_numpy(float)
    lr = pd.to_numeric(df[used["lr"]], errors="coerce").to_numpy(float)
    if not np.all(np.isfinite(step)) or not np.all(np.isfinite(lr) & (lr >= 0)):
        raise InputError(f"columns {used['step']!r}, {used['lr']!r}: every row needs a step and an lr >= 0")
    s1, s2 = np.full(len(df), np.nan), np.full(len(df), np.nan)
    for _, idx in df.groupby(used["run"], sort=False).indices.items():
        s1[idx], s2[idx] = schedule.areas(step[idx], lr[idx], decay)
    keep = (step >= 1) & (s1 > 0)
    if with_loss:
        used["loss"] = _column(df, cols, "loss")
        keep &= pd.to_numeric(df[used["loss"]], errors="coerce").notna().to_numpy()
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} curve rows before step 1, at zero lr area or without a loss are not fitted")
    df, s1, s2 = df[keep].reset_index(drop=True), s1[keep], s2[keep]
    log_loss = np.log(_positive(df, used["loss"])) if with_loss else None
    return LawTable(df, LawData({"log_s1": np.log(s1), "s2": s2}, log_loss), used, tuple(notes))
