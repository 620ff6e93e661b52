"""The tables `experiments.collect` writes into a study directory and the analysis reads: their
columns, declared once. Plain names only, so the analysis keeps running on anyone's CSV.

results.csv  one row per planned run, in plan order (see `result_columns`)
curves.csv   CURVE_COLUMNS: one row per logged step of every run (Approach 1's envelope)
points.csv   POINT_COLUMNS: one row per IsoFLOP point (budget, params) over its seeds
"""
from __future__ import annotations

from typing import Sequence

FLOPS_PREFIX = "flops_"  # flops_<convention>: the compute a run spent, per FLOP convention
RESULT_HEAD = ("run_id", "budget", "flop_convention")
RESULT_TAIL = ("params", "non_embedding_params", "tokens", "tokens_per_param", "steps", "final_train_loss",
               "final_eval_loss", "status", "wall_time_s", "step_time_s", "tokens_per_s", "global_batch",
               "seq_len", "lr", "schedule", "branch_from", "branch_step", "attempts", "role", "seed", "beta2",
               "final_eval_loss_se", "true_loss", "unique_tokens", "epochs")
CURVE_COLUMNS = ("run_id", "params", "step", "tokens", "flops", "train_loss", "eval_loss", "lr")
POINT_COLUMNS = ("budget", "params", "tokens", "n_seeds", "mean_eval_loss", "std_eval_loss")


def result_columns(conventions: Sequence[str]) -> tuple[str, ...]:
    """results.csv's columns, with one flops_<conv> column per FLOP convention the runs counted."""
    return (*RESULT_HEAD, *(FLOPS_PREFIX + c for c in conventions), *RESULT_TAIL)
