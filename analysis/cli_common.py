"""Shared command-line pieces of the analysis CLIs: column flags -> Columns, start grid, input errors -> exit 2."""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

import jax

from analysis.laws import approach3
from analysis.records import InputError
from analysis.tables.tables import Columns

CHINCHILLA_BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)


def floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_table_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("results table (columns are auto-detected when not named)")
    g.add_argument("--results", required=True, help="CSV, one row per run")
    g.add_argument("--n-col", help="parameters N (default: first of params, 'Model Size', N, n_params)")
    g.add_argument("--d-col", help="tokens D (default: tokens, 'Training Tokens', D; else D = C/(k N))")
    g.add_argument("--c-col", help="compute C (default: flops_6n, 'Training FLOP', C, flops; else C = k N D)")
    g.add_argument("--loss-col", help="final loss (default: final_eval_loss, loss, final_train_loss, eval_loss)")
    g.add_argument("--budget-col", help="IsoFLOP budget label (default: budget if present, else groups of C)")
    g.add_argument("--n-nonembed-col", help="non-embedding N for Kaplan laws (default: non_embedding_params)")
    g.add_argument("--run-col", help="run id (default: run_id or run; else the row number)")
    g.add_argument("--status-col", default="status", help="rows whose status is diverged/failed are left out")
    g.add_argument("--flops-convention", default="6nd", help="C = k N D used to derive D or C (6nd: k = 6)")
    g.add_argument("--budgets", type=budgets_arg, default=(),
                   help="comma-separated nominal budgets: each run snaps to the nearest within --snap-dex "
                        "('chinchilla' for Hoffmann et al.'s nine)")
    g.add_argument("--snap-dex", type=float, default=0.06, help="tolerance in decades for --budgets")
    g.add_argument("--budget-gap-dex", type=float, default=0.1,
                   help="without budget column or --budgets: runs whose log10 C differ by less share a budget")
    g.add_argument("--drop-highest", type=int, default=0,
                   help="leave out the K highest-loss runs (Besiroglu et al. 2024 drop 5 on the Fig. 4 data)")


def add_smoothing_flag(p: argparse.ArgumentParser) -> None:
    """Approach 1's curve smoothing, one flag for analysis.fit and analysis.figures (Fig. 2 draws
    the envelope the fit reads)."""
    p.add_argument("--smooth-dex", type=float, default=0.1,
                   help="Approach 1: local linear smoothing of each curve over this many decades of tokens (0: off)")


def columns_from(args) -> Columns:
    return Columns(n=args.n_col, d=args.d_col, c=args.c_col, loss=args.loss_col, budget=args.budget_col,
                   n_nonembed=args.n_nonembed_col, status=args.status_col, run=args.run_col,
                   flops_convention=args.flops_convention, budget_gap_dex=args.budget_gap_dex,
                   budgets=args.budgets, snap_dex=args.snap_dex)


def budgets_arg(text: str) -> tuple[float, ...]:
    return CHINCHILLA_BUDGETS if text.strip().lower() == "chinchilla" else floats(text)


def grid_from(args) -> approach3.StartGrid:
    return approach3.StartGrid(alpha=args.grid_alpha, beta=args.grid_beta, e=args.grid_e,
                               a=args.grid_a, b=args.grid_b)


def add_grid_flags(p: argparse.ArgumentParser) -> None:
    d = approach3.StartGrid()
    fmt = lambda t: ",".join(f"{v:g}" for v in t)
    g = p.add_argument_group("Approach 3 start grid (Hoffmann et al.: 4,500 starts)")
    g.add_argument("--grid-alpha", type=floats, default=d.alpha, help=f"default {fmt(d.alpha)}")
    g.add_argument("--grid-beta", type=floats, default=d.beta, help=f"default {fmt(d.beta)}")
    g.add_argument("--grid-e", type=floats, default=d.e, help=f"log E starts, default {fmt(d.e)}")
    g.add_argument("--grid-a", type=floats, default=d.a, help=f"log A starts, default {fmt(d.a)}")
    g.add_argument("--grid-b", type=floats, default=d.b, help=f"log B starts, default {fmt(d.b)}")


def start_compilation_cache() -> None:
    """The persistent compilation cache the trainer uses (~/.cache/scaling/jax; $SCALING_JAX_CACHE: a
    directory, or `off`). Compiling is most of a CLI fit's time (each batched L-BFGS program takes
    seconds on a 2-core CPU); a table of the same size refitted (other flags, --predict, a study's
    rerun) reads them back. A cache a caller already chose (the test session,
    $JAX_COMPILATION_CACHE_DIR) is left alone."""
    where = os.environ.get("SCALING_JAX_CACHE", "")
    if where.lower() == "off" or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", where or str(pathlib.Path("~/.cache/scaling/jax").expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def run_main(main_body, argv=None) -> int:
    start_compilation_cache()
    try:
        return main_body(argv)
    except InputError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
