"""The runs an lr-transfer analysis (experiments.planning.lr_transfer) reads: anyone's table with a
width, a parametrization, an lr and a loss column, or a study's results.csv joined with its plan."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.records import InputError
from analysis.tables.tables import pick_column, read_table
from experiments import study_dir
from experiments.planning.errors import StudyError
from models.config import ModelConfig

AUTO = {  # flag -> candidate column names, first present wins
    "width": ("d_model", "width", "n_embd", "hidden_size"),
    "param": ("parametrization", "param"),
    "lr": ("lr", "learning_rate", "peak_lr"),
    "loss": ("final_eval_loss", "loss", "eval_loss", "final_train_loss"),
}
DROPPED_STATUS = ("diverged", "failed")
SWEEP_ROLE = "lr_sweep"  # when a table has such rows, only they are read


def _pick(df: pd.DataFrame, name: str | None, role: str, required: bool = True) -> str | None:
    return pick_column(df, name, AUTO[role], f"--{role}-col", required)


def runs_from(df: pd.DataFrame, names: dict[str, str | None] | None = None) -> tuple[pd.DataFrame, dict, list[str]]:
    """The runs the analysis reads, as columns param, width, lr, loss (without a parametrization column,
    every run's is "all"); the columns used (`names`: role -> column, None or absent: auto); notes."""
    names = names or {}
    cols = {r: _pick(df, names.get(r), r, required=r != "param") for r in AUTO}
    notes, keep = [], np.ones(len(df), bool)
    if "role" in df.columns and df["role"].astype(str).eq(SWEEP_ROLE).any():
        other = ~df["role"].astype(str).eq(SWEEP_ROLE).to_numpy()
        if other.any():
            notes.append(f"left out {int(other.sum())} runs whose role is not {SWEEP_ROLE}")
        keep &= ~other
    if "status" in df.columns:
        bad = keep & df["status"].astype(str).str.lower().isin(DROPPED_STATUS).to_numpy()
        if bad.any():
            notes.append(f"left out {int(bad.sum())} runs with status diverged/failed (no loss to fit)")
        keep &= ~bad
    num = {r: pd.to_numeric(df[cols[r]], errors="coerce").to_numpy(float) for r in ("width", "lr", "loss")}
    no_loss = keep & ~np.isfinite(num["loss"])
    if no_loss.any():
        notes.append(f"left out {int(no_loss.sum())} runs with no finite {cols['loss']}")
    keep &= np.isfinite(num["loss"])
    for r in ("width", "lr"):
        bad = keep & ~(num[r] > 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"column {cols[r]!r}: value {df[cols[r]].iloc[i]!r} in row {i} is not a positive number")
    if not keep.any():
        raise InputError("no run with a finite loss in the table")
    param = df[cols["param"]].astype(str).to_numpy() if cols["param"] else np.full(len(df), "all")
    runs = pd.DataFrame({"param": param, "width": num["width"], "lr": num["lr"], "loss": num["loss"]})[keep]
    return runs, cols, notes


def study_table(study: Path) -> pd.DataFrame:
    """DIR/results.csv with each run's d_model and parametrization: from its plan overrides, else from
    the config its run.json recorded (results.csv does not carry them)."""
    df = read_table(study / "results.csv")
    try:
        specs = study_dir.load_plan(study).by_id()
    except StudyError as e:
        raise InputError(str(e)) from None
    widths, params = [], []
    for rid in df["run_id"].astype(str):
        spec = specs.get(rid)
        over = dict(spec.overrides) if spec else {}
        model = {}
        if "model.d_model" not in over or "model.parametrization" not in over:
            rec = study_dir.read_run(study_dir.run_dir(study, rid))
            model = dict((rec.config or {}).get("model", {})) if rec else {}
        widths.append(over.get("model.d_model", model.get("d_model")))
        params.append(over.get("model.parametrization", model.get("parametrization", ModelConfig.parametrization)))
    return df.assign(d_model=widths, parametrization=params)
