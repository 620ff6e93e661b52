"""python -m analysis.reproduce --results ../shared/data/chinchilla-svg/svg_extracted_data.csv

Refits Chinchilla's Fig. 4 data as Besiroglu et al. 2024 did (5 highest-loss rows dropped; Huber
sum over the 4,500-start grid; their maximum-likelihood variant) and prints one table: Hoffmann et
al.'s published values, Epoch's, and ours side by side, with eq. 4's N* at Gopher's budget.
"""
from __future__ import annotations

import sys

from analysis.laws import allocation, approach3
from analysis.tables import tables
from analysis.uncertainty import bootstrap
from analysis.cli_common import run_main
from analysis.records import InputError
from plumbing.cli import Parser


def row(name, p: allocation.LawParams, objective=None) -> str:
    a, b, g = allocation.exponents(p)
    n_star = allocation.optimal_allocation(p, allocation.GOPHER_FLOPS).N_opt[0]
    obj = f"{objective:>12.6g}" if objective is not None else f"{'-':>12}"
    return (f"{name:<34}{p.E:>9.4f}{p.A:>10.2f}{p.B:>10.2f}{p.alpha:>9.5f}{p.beta:>9.5f}{a:>8.4f}"
            f"{n_star / 1e9:>10.1f}{obj}")


def main_body(argv=None) -> int:
    p = Parser(prog="python -m analysis.reproduce", description=__doc__.split("\n\n")[1])
    p.add_argument("--results", required=True, help="Epoch's svg_extracted_data.csv (Model Size, Training FLOP, loss)")
    p.add_argument("--drop-highest", type=int, default=5, help="highest-loss rows left out (Epoch: 5)")
    p.add_argument("--bootstrap", type=int, default=0, help="resamples for intervals of our Huber fit (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = p.parse_args(argv)
    if args.bootstrap < 0:
        raise InputError("--bootstrap must be >= 0")
    cols = tables.Columns(n="Model Size", c="Training FLOP", loss="loss")
    runs = tables.drop_highest_loss(tables.load_runs(args.results, cols), args.drop_highest)
    huber = approach3.fit_huber(runs.N, runs.D, runs.loss)
    ml, _ = approach3.fit_ml(runs.N, runs.D, runs.loss)
    print(f"{len(runs)} runs; N* is eq. 4 at Gopher's budget {allocation.GOPHER_FLOPS:.3g} FLOPs")
    print(f"{'':<34}{'E':>9}{'A':>10}{'B':>10}{'alpha':>9}{'beta':>9}{'a':>8}{'N* (B)':>10}{'objective':>12}")
    print(row("Hoffmann et al. 2022 (rounded)", allocation.HOFFMANN_ROUNDED))
    print(row("Hoffmann et al. 2022 (unrounded)", allocation.HOFFMANN_UNROUNDED))
    print(row("Epoch 2024, Huber-sum replication", allocation.EPOCH_HUBER_SUM, 1.01827e-3))
    print(row("Epoch 2024, max. likelihood", allocation.EPOCH_ML))
    print(row("ours, Huber-sum, 4,500 starts", huber.params, huber.objective))
    print(row("ours, max. likelihood", ml.params))
    if args.bootstrap:
        s = bootstrap.approach3_samples(runs.N, runs.D, runs.loss, huber.x, args.bootstrap, args.seed)
        iv = bootstrap.percentiles(s)
        print("ours, Huber-sum, 95% bootstrap intervals: " +
              ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in iv.items()))
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
