"""`python -m analysis.fit --law NAME[,NAME...]`: the registry laws (analysis.laws.registry) on any
table. Writes DIR/fits.json with one section per law, keyed by its name, and with --predict FILE
DIR/predictions.csv (FILE's columns + predicted_loss, predicted_low, predicted_high per law; with
several laws the columns are prefixed by the law's name). The annealing law reads loss curves
(run, step, lr, loss) from --curves when given, else from --results; its --predict FILE is a
schedule (run, step, lr) whose whole curve is predicted."""
from __future__ import annotations

import argparse
import os
import sys

from analysis.laws import annealing_decay, law_report, registry
from analysis.laws.law_table import LawColumns, law_table
from analysis.records import write_atomic, write_fits
from analysis.tables import tables


def add_law_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("registry laws (--law; without it, the approaches above)")
    g.add_argument("--law", help=f"comma-separated laws to fit instead of --approach: {', '.join(registry.names())}")
    g.add_argument("--fix", help="NAME=VALUE,... hold these parameters (the paper's notation, e.g. E=1.8,alpha=0.34)")
    g.add_argument("--untie", action="store_true", help="data_constrained: fit beta apart from alpha")
    g.add_argument("--unique-col", help="unique tokens U_D (default: unique_tokens, 'Unique Tokens', U_D, unique)")
    g.add_argument("--step-col", help="annealing: optimiser step of each curve row (default: step)")
    g.add_argument("--lr-col", help="annealing: learning rate at that step (default: lr, learning_rate)")
    g.add_argument("--decay", default="profile",
                   help="annealing: the momentum lambda of S2: 'profile' (default: the least objective on the fitted "
                        "curves over 0.99 ... 0.9995, predictions widened over the 95%% profile) or a value (the paper: 0.999)")
    g.add_argument("--predict", help="CSV of runs to predict (same column flags, no loss needed): "
                                     "writes DIR/predictions.csv")
    g.add_argument("--figures", action="store_true",
                   help="also draw each law's figures into DIR/figures (analysis.output.law_figures; "
                        "data_constrained: loss vs epochs, effective data; laws of N, D: loss vs M = D/N)")


def _columns(args) -> LawColumns:
    return LawColumns(n=args.n_col, d=args.d_col, u=args.unique_col, c=args.c_col, loss=args.loss_col,
                      status=args.status_col, run=args.run_col, step=args.step_col, lr=args.lr_col)


def main_law(args) -> int:
    laws = [registry.get(name.strip(), args.untie) for name in args.law.split(",") if name.strip()]
    options = law_report.LawOptions(law_report.parse_fixes(args.fix, laws), args.delta, args.bootstrap, args.seed,
                                    args.level, validation=not args.no_validation)
    df = tables.read_table(args.results)
    curves_df = tables.read_table(args.curves) if args.curves else df  # annealing: --curves, else --results
    pred_df = tables.read_table(args.predict) if args.predict else None
    results, predicted = {}, None
    decay = annealing_decay.parse(args.decay)
    for law in laws:
        annealed = annealing_decay.fit(law, curves_df, _columns(args), options, decay) if "s1" in law.inputs else None
        table = annealed.table if annealed else law_table(df, _columns(args), law.inputs)
        for note in table.notes:
            print(f"note: {note}", file=sys.stderr)
        res = annealed.result if annealed else law_report.run(law, table.data, options)
        results[law.name] = res
        print(law_report.format_result(res))
        if args.figures:
            from analysis.output import law_figures  # matplotlib: only when asked for
            for path in law_figures.draw(res, table.data, os.path.join(args.out, "figures")):
                print(f"figure: {path}")
        if pred_df is not None:
            if annealed:
                out = annealing_decay.predict(annealed, pred_df, _columns(args), args.level)
            else:
                target = law_table(pred_df, _columns(args), law.inputs, with_loss=False)
                out = law_report.predictions(res, target.frame, target.data, args.level)
            predicted = _merge(predicted, out, law.name, len(laws) > 1)
    os.makedirs(args.out, exist_ok=True)
    write_fits(os.path.join(args.out, "fits.json"), {k: r.record for k, r in results.items()})
    if predicted is not None:
        write_atomic(os.path.join(args.out, "predictions.csv"), predicted.to_csv(index=False))
        print(f"predictions: {os.path.join(args.out, 'predictions.csv')} ({len(predicted)} rows)")
    return 0


def _merge(acc, out, name: str, prefixed: bool):
    cols = ("predicted_loss", "predicted_low", "predicted_high")
    if not prefixed:
        return out
    out = out.rename(columns={c: f"{name}_{c}" for c in cols})
    return out if acc is None else acc.join(out[[f"{name}_{c}" for c in cols]])
