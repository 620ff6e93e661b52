"""The analysis of a `data_constrained` or `annealing` study (issue 19), run by experiments.study in
place of the IsoFLOP approaches: the registry law fitted to the study's own runs.

    data_constrained: `data_constrained` on the completed runs of results.csv (params, tokens,
        unique_tokens, final_eval_loss), as `analysis.fit --law data_constrained` fits it.
    annealing: `annealing` on the eval-loss curves (curves.csv: step, lr, eval_loss) of the runs
        with role annealing; the curves of role annealing_heldout are predicted from their lr alone,
        and each one's final loss is compared with the prediction and its interval.

Writes DIR/laws/fits.json (one section per law, as analysis.fit --law), DIR/laws/predictions.csv
(annealing: the held-out curves with predicted_loss, _low, _high), the figure (DIR/figures/, PNG and
PDF: analysis.output.law_figures) and DIR/report.md, report.html.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.laws import annealing_decay, law_report, registry
from analysis.laws.law_table import LawColumns, law_table
from analysis.output import figures, law_figures
from analysis.output.report_render import Bullets, Image, Section, Table, to_html, to_markdown
from analysis.records import InputError, write_atomic, write_fits

MODES = ("data_constrained", "annealing")
COMPLETED = "completed"


def _completed(results: pd.DataFrame, role: str) -> set[str]:
    keep = (results["role"].astype(str) == role) & (results["status"].astype(str) == COMPLETED)
    return set(results.loc[keep, "run_id"].astype(str))


def analyse(study: Path, mode: str, options: law_report.LawOptions | None = None,
            draw: bool = True) -> tuple[Path, Path]:
    """Fit, write fits.json (and predictions.csv) and the report; returns (report.md, report.html).
    `options`: the fit's (default: analysis.fit --law's: 200 resamples, 95% intervals); `draw`:
    the figure too (a second of savefig: tests of the fit alone leave it out)."""
    results = pd.read_csv(study / "results.csv")
    options = options or law_report.LawOptions()
    out = study / "laws"
    out.mkdir(parents=True, exist_ok=True)
    if mode == "data_constrained":
        law = registry.get("data_constrained")
        rows = results[results["run_id"].astype(str).isin(_completed(results, "data_constrained"))]
        table = law_table(rows.reset_index(drop=True), LawColumns(), law.inputs)
        res = law_report.run(law, table.data, options)
        extra = [_figure(study, law_figures.repeated_data(table.data, res), "repeated_data",
                         "Loss against epochs at fixed compute (Muennighoff et al. 2023, Fig. 3): measured runs "
                         "and the fitted law"),
                 _figure(study, law_figures.effective_data(table.data, res), "effective_data",
                         "Effective data D'/U_D and parameters N'/U_N against repetitions: the fitted decay "
                         "(Muennighoff et al. 2023, eqs. 5-6) and its resampled band")] if draw else []
    else:
        law = registry.get("annealing")
        res, extra = _annealing(study, results, law, options, out, draw)
    write_fits(str(out / "fits.json"), {law.name: res.record})
    sections = [Section(f"The fitted law: {law.name}", [Bullets(law_report.format_result(res).splitlines())]),
                *extra]
    title = f"{study.resolve().name}: {law.name} law"
    md, html_path = study / "report.md", study / "report.html"
    write_atomic(str(md), to_markdown(title, sections, str(study)))
    write_atomic(str(html_path), to_html(title, sections))
    return md, html_path


def _annealing(study: Path, results: pd.DataFrame, law, options: law_report.LawOptions, out: Path, draw: bool):
    """The law on the role-annealing curves; the held-out curves predicted from their lr (and the
    report's sections: the figure, the held-out runs' final losses)."""
    curves = pd.read_csv(study / "curves.csv")
    ids = curves["run_id"].astype(str)
    cols, level = LawColumns(loss="eval_loss", status=None), options.level
    fitted = curves[ids.isin(_completed(results, "annealing"))].reset_index(drop=True)
    if fitted.empty:
        raise InputError("no completed run with role annealing in results.csv: nothing to fit")
    annealed = annealing_decay.fit(law, fitted, cols, options)  # lambda profiled on the fitted curves
    res = annealed.result
    held = curves[ids.isin(_completed(results, "annealing_heldout"))].reset_index(drop=True)
    pred = None
    sections = []
    if not held.empty:
        pred = annealing_decay.predict(annealed, held, cols, level)
        write_atomic(str(out / "predictions.csv"), pred.to_csv(index=False))
        sections.append(Section("The held-out schedules: predicted against measured final loss",
                                [Table(("run", "step", "measured", "predicted", f"{level:.0%} interval", "error"),
                                       [_final_row(g) for _, g in pred.groupby("run_id", sort=False)])]))
    if draw:
        own = law_table(fitted, cols, law.inputs, with_loss=False, decay=annealed.choice.value)
        lines = pd.concat([law_report.predictions(res, own.frame, own.data, level), pred], ignore_index=True)
        fig = law_figures.annealing_curves(pd.concat([fitted, held], ignore_index=True), lines,
                                           set(held["run_id"].astype(str)))
        sections.insert(0, _figure(study, fig, "annealing_curves", "Eval-loss curves: the fitted schedules (solid) "
                                   f"and the held-out ones predicted from their lr (dashed, {level:.0%} interval shaded)"))
    return res, sections


def _figure(study: Path, fig, name: str, caption: str) -> Section:
    paths = figures.save(fig, str(study / "figures"), name)
    title = caption.split(":")[0].split(" (")[0]  # the caption's opening words: one heading per figure
    return Section(f"Figure: {title}", [Image(next(p for p in paths if p.endswith(".png")), caption)])


def _final_row(g: pd.DataFrame) -> tuple[str, ...]:
    last = g.loc[g["step"].idxmax()]
    measured, p, lo, hi = (float(last[k]) for k in ("eval_loss", "predicted_loss", "predicted_low", "predicted_high"))
    error = (p - measured) / measured
    outside = "" if not np.isfinite(lo) or lo <= measured <= hi else \
        f"; measured {min(abs(measured - lo), abs(measured - hi)):.4f} outside"
    interval = f"[{lo:.4f}, {hi:.4f}]" if np.isfinite(lo) else "none (no resamples)"
    return (str(last["run_id"]), str(int(last["step"])), f"{measured:.4f}", f"{p:.4f}", interval, f"{error:+.2%}{outside}")
