"""The study's analysis steps over the analysis library: fit -> calibrate -> figures -> report, each
handing the next its records (the table read once, fitted once; figures and report draw that fit).
experiments.study runs the steps as phases (progress line, fault point, log file, errors caught)."""
from __future__ import annotations

from pathlib import Path

from experiments import study_validation as sv


class Analysis:
    """One pass of the analysis over DIR. `only_fit`: the grid's first fit, that the validation's
    prediction is frozen from (no calibration, figures or report)."""

    def __init__(self, args, study: Path, only_fit: bool = False):
        from analysis.laws import fitters
        from analysis.output import report

        self.args, self.study, self.only_fit = args, study, only_fit
        targets = tuple(float(t) for t in args.targets.split(",") if t.strip()) if args.targets else None
        self.options = report.ReportOptions(targets=targets, bootstrap=args.bootstrap)
        self.fit_options = fitters.FitOptions(curves=str(study / "curves.csv"), bootstrap=args.bootstrap)
        self.done: dict = {}  # what each step hands the next
        self.notes: list[str] = []  # what fit and figures noted (skipped approaches, figures) goes in the report

    def steps(self) -> tuple:
        a = self.args
        steps = (("fit", self.fit, "fitting Approaches 1-3 and Kaplan, with bootstrap intervals"),
                 ("calibrate", self.calibrate, f"simulating {a.calibration} studies of this design per scenario "
                                               f"({a.calibration_scenarios}) to calibrate the intervals and checks"),
                 ("figures", self.figures, "drawing Chinchilla Figs. 2-4 and Kaplan Fig. 1"),
                 ("report", self.report, "writing report.md and report.html"))
        return steps[:1] if self.only_fit else steps

    def fit(self) -> None:
        from analysis import fit
        from analysis.output import prediction_test, report
        from analysis.tables.tables import Columns

        study, done = self.study, self.done
        done["table"] = table = report.Table.load(str(study / "results.csv"), Columns(), curves=self.fit_options.curves)
        done["fits"] = fit.fit_and_write(table.runs, self.fit_options, str(study / "fits"))
        self.notes.extend([*table.runs.notes, *done["fits"].notes])
        frozen = sv.read_frozen(study)
        done["test"] = prediction_test.from_study(frozen, str(study / "results.csv"), done["fits"].to_json()) \
            if frozen and not self.only_fit else None
        if done["test"] is not None:  # beside the fits, in fits.json (the grid's fit never reads these runs)
            prediction_test.write_into(done["fits"].source, done["test"])

    def calibrate(self) -> None:
        self.done["calibration"] = calibration(self.args, self.study, self.done["table"].runs, self.done["fits"])

    def figures(self) -> None:
        import pandas as pd

        from analysis.figures import print_drawn
        from analysis.output import figures, report

        table, fits, options = self.done["table"], self.done["fits"], self.options
        self.done["approach2"] = a2 = report.approach2_projection(table, fits, options)
        marked = figures.ValidationPoints.from_table(pd.read_csv(self.study / "results.csv"))
        drawn = figures.draw(table.runs, self.fit_options, str(self.study / "figures"), None, table.targets(options),
                             fits, report.figure_projections(options, a2[1]), validation=marked)
        print_drawn(drawn)
        self.notes.extend([*([table.note] if table.note else []), *drawn.notes])

    def report(self) -> None:
        from analysis.diagnostics import lr_sensitivity
        from analysis.output import report
        from analysis.output.report_study import read_study

        d, study = self.done, self.study
        sens = lr_sensitivity.for_study(str(study), d["table"].runs, d["fits"])  # a against the lr law, into fits.json too
        for path in report.report(d["table"], d["fits"], str(study), str(study / "figures"), self.options,
                                  read_study(str(study)), self.notes, d["approach2"], prediction=d["test"],
                                  calibration=d["calibration"], lr_sensitivity=sens):
            print(path)


def calibration(args, study: Path, runs, fits):
    """The report's calibration (analysis.uncertainty.study_calibration), or why there is none."""
    from analysis.uncertainty import calibrate as cal, study_calibration as sc
    if args.calibration <= 0:
        return sc.StudyCalibration(None, "--calibration 0")
    if args.bootstrap < 10:
        return sc.StudyCalibration(None, f"--bootstrap {args.bootstrap}: the fits have no intervals to calibrate")
    options = cal.CalibrationOptions(
        # The fits' own resample count: the intervals calibrated are the ones the report prints.
        studies=max(2, args.calibration), resamples=args.bootstrap, validation=False,
        scenarios=tuple(x.strip() for x in args.calibration_scenarios.split(",") if x.strip()))
    return sc.run(str(study), runs, fits, options, log=lambda line: print(line, flush=True))
