"""`python -m experiments.study --config=experiments/configs/<study>.py [--study=DIR]`: one command from a
study config to a report: plan -> train -> collect -> fit -> validate -> calibrate -> figures -> report.

    python -m experiments.study --config=experiments/configs/isoflop_ci.py --study=/tmp/ci_study
        [--config.<field>=<value> ...] [--workers N] [--executor local|slurm] [--max-retries K] [--fresh]
        [--targets 1e13,5.76e23] [--bootstrap 200] [--calibration 100] [--calibration-scenarios correct,heavy,curved]

Each phase is the existing command's own entry point (experiments.plan, experiments.launch,
experiments.collect) or the analysis library under analysis.fit, analysis.figures and
analysis.report (one fit, drawn and reported from the record it returns; a study of mode
data_constrained or annealing fits its law instead, experiments.law_study); their output goes to
DIR/logs/<phase>.log and the terminal shows one progress line for the whole study (phase, runs
done/running/failed, ETA). Idempotent and safe to kill at any moment: the plan is rewritten only
when the config or its overrides changed (a grown plan keeps its completed runs, see
experiments.launch), completed runs are never retrained, interrupted ones resume from their
checkpoints, and the analysis reruns only when results.csv, curves.csv or its flags changed
(DIR/study.json keeps the hashes). Every file is written atomically. Exit: 0 done, 1 some runs
failed or the analysis could not run (the report says why), 2 bad input, 130/143 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from experiments import collect, launch, plan
from experiments import study_dir as st
from experiments import study_validation as sv
from experiments.executors import EXECUTORS
from plumbing import atomic, faults
from plumbing.cli import Parser
from scaling import xla_flags

PHASES = ("plan", "train", "collect", "fit", "validate", "calibrate", "figures", "report")


class StudyInputError(Exception):
    """Bad input found before anything runs: one line naming the flag and the fix."""


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ap = Parser(prog="experiments.study", error_prefix="study", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="study config file (get_config() with a `study` section)")
    ap.add_argument("--study", "--study_dir", dest="study", help="study directory (default: the config's study.dir)")
    ap.add_argument("--executor", choices=EXECUTORS, help="default: the plan's study.executor")
    ap.add_argument("--workers", type=int, help="runs at once (default: the plan's study.workers)")
    ap.add_argument("--max-retries", type=int, help="retries of a failed run")
    ap.add_argument("--fresh", action="store_true", help="archive and retrain runs whose spec changed")
    ap.add_argument("--targets", help="target budgets for the report, comma-separated FLOPs "
                                      "(default: 10x the largest budget and 5.76e23)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the fits (default 200)")
    ap.add_argument("--calibration", type=int, default=100,
                    help="simulated studies per scenario that calibrate the report's intervals and checks on this "
                         "study's design (default 100; 0: none)")
    ap.add_argument("--calibration-scenarios", default="correct,heavy,curved",
                    help="comma-separated, from correct, heavy, curved, offcentre")
    ap.add_argument("--reanalyse", action="store_true",
                    help="rerun fit, figures and report even if their inputs did not change (e.g. after an update)")
    ap.add_argument("--probe", choices=("auto", "on", "off"), default="auto",
                    help="the planner's measured throughput probe for wall-time estimates (off: assumed FLOP/s)")
    ap.add_argument("--trainer", default=None, help=argparse.SUPPRESS)  # tests: a small stand-in trainer
    ap.add_argument("--poll-s", type=float, default=2.0, help="seconds between progress checks")
    args, rest = ap.parse_known_args(argv)
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        ap.error(f"unrecognized arguments: {' '.join(unknown)} (config fields go as --config.<field>=<value>)")
    return args, rest


# --- the study's own record: which inputs each phase last ran on --------------------------------------

def read_state(study: Path) -> dict:
    try:
        return json.loads((study / "study.json").read_text())
    except (OSError, ValueError):
        return {}


def write_state(study: Path, state: dict) -> None:
    atomic.write_json(study / "study.json", state)


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def config_hash(config, overrides: list[str]) -> str:
    """The resolved config (imports of other configs included) and the command-line overrides."""
    return _sha(config.to_json(sort_keys=True).encode(), json.dumps(sorted(overrides)).encode())


def study_dir(args, config, overrides: list[str]) -> Path:
    given = args.study or next((o.split("=", 1)[1] for o in overrides if o.startswith("--config.study.dir=")), None)
    return Path(given or config.study.dir).expanduser().resolve()


# --- one progress line ----------------------------------------------------------------------------------

class StudyLine:
    """The study's one line: rewritten in place on a terminal, a new line per change elsewhere."""

    def __init__(self, name: str):
        self.name, self.tty, self.last = name, sys.stdout.isatty(), ""

    def label(self, phase: str) -> str:
        return f"study {self.name} | {phase} {PHASES.index(phase) + 1}/{len(PHASES)} | "

    def show(self, phase: str, text: str) -> None:
        line = self.label(phase) + text
        if line != self.last:
            print(("\r\033[K" if self.tty else "") + line, end="" if self.tty else "\n", flush=True)
            self.last = line

    def end(self, text: str) -> None:
        print(("\r\033[K" if self.tty else "") + text, flush=True)


@contextlib.contextmanager
def logged(study: Path, phase: str):
    """The phase's stdout and stderr appended to DIR/logs/<phase>.log (the terminal keeps one line)."""
    (study / "logs").mkdir(parents=True, exist_ok=True)
    with open(study / "logs" / f"{phase}.log", "a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
        log.flush()
        outer = sys.stderr
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            _absl_to(log)
            try:
                yield log
            finally:
                _absl_to(outer)


def _absl_to(stream) -> None:
    """Logging handlers keep the stderr they were created with (absl's, and the root's that absl adds
    on its first warning): pointed at each phase's log, then back, so a later phase's warning (tfds
    logs some) is not written to a log file already closed ("--- Logging error ---")."""
    import logging

    from absl import logging as absl_logging
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    for h in [*handlers, absl_logging.get_absl_handler().python_handler]:
        h.setStream(stream)


def _last_error(study: Path, phase: str) -> str:
    try:
        lines = (study / "logs" / f"{phase}.log").read_text().strip().splitlines()
    except OSError:
        return ""
    return next((x for x in reversed(lines) if "error" in x.lower()), lines[-1] if lines else "")


# --- phases ---------------------------------------------------------------------------------------------

def plan_phase(args, study: Path, overrides: list[str], chash: str, state: dict, progress: StudyLine) -> None:
    """Plan into DIR/.plan-new, and put it in place only if no started run's spec changed (or --fresh):
    a refused plan leaves the study's plan.json, and so its status and report, as they were."""
    if state.get("config_hash") == chash and (study / "plan.json").exists():
        return
    progress.show("plan", "planning the grid")
    faults.point("plan")
    staging = study / ".plan-new"
    with logged(study, "plan"):
        code = plan.main(["experiments.plan", f"--config={args.config}", f"--study={staging}",
                          f"--probe={args.probe}", *overrides])
    if code != 0:
        raise StudyInputError(f"plan: {_last_error(study, 'plan')} (DIR/logs/plan.log)")
    changed = launch.changed_runs(study, st.load_plan(staging))
    if changed and not args.fresh:
        raise StudyInputError(f"the config changed the spec of started run {launch.name_runs(changed)} (see "
                              f"{staging}/plan.json); pass --fresh to archive and retrain them, or undo the change")
    os.replace(staging / "plan.json", study / "plan.json")
    state.update(config=os.path.abspath(args.config), overrides=overrides, config_hash=chash)
    write_state(study, state)


def train_phase(args, study: Path, progress: StudyLine, phase: str = "train") -> int:
    flags = [f"--study={study}", f"--poll-s={args.poll_s}"]
    flags += [f"--executor={args.executor}"] if args.executor else []
    flags += [f"--workers={args.workers}"] if args.workers else []
    flags += [f"--max-retries={args.max_retries}"] if args.max_retries is not None else []
    flags += ["--fresh"] if args.fresh else []
    flags += [f"--trainer={args.trainer}"] if args.trainer else []
    (study / "logs").mkdir(parents=True, exist_ok=True)
    # The launcher turns SIGINT/SIGTERM into "stop and let the trainers checkpoint"; afterwards
    # they must stop the analysis again.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(study / "logs" / "train.log", "a") as log, contextlib.redirect_stderr(log):
            return launch.main(flags, label=progress.label(phase), log=log)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        progress.last = ""


def inputs_hash(study: Path, args) -> str:
    files = [(study / name).read_bytes() if (study / name).exists() else b""
             for name in ("results.csv", "curves.csv", sv.PREDICTION)]
    return _sha(*files, json.dumps([args.targets, args.bootstrap, args.calibration, args.calibration_scenarios]).encode())


def analysis_phases(args, study: Path, state: dict, progress: StudyLine, only_fit: bool = False) -> str | None:
    """fit -> calibrate -> figures -> report (experiments.study_analysis), unless their inputs are those
    of the last report. `only_fit`: the grid's first fit, that the validation's prediction is frozen
    from. Returns the reason the analysis stopped, or None."""
    from experiments.study_analysis import Analysis

    h = inputs_hash(study, args)
    if not only_fit and state.get("report_inputs") == h and (study / "report.html").exists() and not args.reanalyse:
        return None
    for phase, step, what in Analysis(args, study, only_fit).steps():
        progress.show(phase, what)
        stopped = run_step(study, phase, step)
        if stopped:
            return stopped
    if not only_fit:
        state["report_inputs"] = h
        write_state(study, state)
    return None


def run_step(study: Path, phase: str, step) -> str | None:
    """One analysis step as a phase: its fault point, its output in DIR/logs/<phase>.log; returns why it
    stopped (bad input in one line; a bug's traceback goes to the log, not the terminal), or None."""
    from analysis.records import InputError

    faults.point(phase)
    with logged(study, phase):
        try:
            step()
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return f"{phase}: error: {e} (DIR/logs/{phase}.log)"
        except Exception as e:
            traceback.print_exc()
            return f"{phase}: {type(e).__name__}: {e} (traceback in DIR/logs/{phase}.log)"
    return None


def law_phase(args, study: Path, state: dict, progress: StudyLine, mode: str) -> str | None:
    """The analysis of a data_constrained or annealing study (experiments.law_study): its law fitted,
    written and reported, unless its inputs are those of the last report. Returns why it stopped, or None."""
    from analysis.laws.law_report import LawOptions
    from experiments import law_study

    h = inputs_hash(study, args)
    if state.get("report_inputs") == h and (study / "report.html").exists() and not args.reanalyse:
        return None
    progress.show("fit", f"fitting the {mode} law, with bootstrap intervals")

    def step():
        for path in law_study.analyse(study, mode, LawOptions(bootstrap=args.bootstrap)):
            print(path)
    stopped = run_step(study, "fit", step)
    if stopped:
        return stopped
    state["report_inputs"] = h
    write_state(study, state)
    return None


def validate_phase(args, study: Path, overrides: list[str], state: dict, progress: StudyLine,
                   code: int) -> tuple[int, str | None]:
    """The grid's first fit, its prediction frozen (once), the validation runs added to the plan,
    trained and collected. Returns (exit code so far, why the analysis stopped or None)."""
    config = sv.load_config(args.config, overrides)
    if not sv.wanted(config):
        return code, None
    frozen = sv.read_frozen(study) is not None
    if not frozen:
        stopped = analysis_phases(args, study, state, progress, only_fit=True)
        if stopped:
            return 1, stopped
    progress.show("validate", "the frozen prediction's runs" if frozen else
                  "freezing the grid fit's prediction and planning its runs")
    faults.point("validate")
    with logged(study, "validate"):
        try:
            record = sv.freeze(study, args.config, overrides)
            added = sv.add_to_plan(study, record)
        except Exception as e:  # a fit with no Approach 3, a size that cannot train: the report says why
            traceback.print_exc()
            return 1, f"validate: {type(e).__name__}: {e} (DIR/logs/validate.log)"
        print("\n".join(sv.table_lines(record)))
    if not added:  # already in the plan: the grid's train phase trained (or resumed) them
        return code, None
    trained = train_phase(args, study, progress, "validate")
    if trained == 2 or trained >= 128:
        progress.end(f"study {progress.name}: stopped while training the validation runs; rerun to resume")
        return trained, None
    with logged(study, "collect"):
        if collect.main(["--study", str(study)]) != 0:
            return 1, f"collect: {_last_error(study, 'collect')}"
    return max(code, trained), None


def _check(args) -> None:
    if not os.path.isfile(args.config):
        raise StudyInputError(f"--config={args.config}: no such file; e.g. experiments/configs/isoflop_ci.py")
    if args.workers is not None and args.workers < 1:
        raise StudyInputError(f"--workers={args.workers}: need at least 1")
    if args.bootstrap < 0:
        raise StudyInputError(f"--bootstrap={args.bootstrap}: need 0 or more")
    if args.calibration < 0:
        raise StudyInputError(f"--calibration={args.calibration}: simulated studies per scenario, 0 or more")
    from analysis.uncertainty.calibrate import SCENARIOS as known
    bad = [x for x in args.calibration_scenarios.split(",") if x.strip() not in known]
    if bad or not args.calibration_scenarios.strip():
        raise StudyInputError(f"--calibration-scenarios={args.calibration_scenarios}: choose from {', '.join(known)}")
    if args.targets:
        try:
            if any(float(t) <= 0 for t in args.targets.split(",") if t.strip()):
                raise ValueError
        except ValueError:
            raise StudyInputError(f"--targets={args.targets}: comma-separated positive FLOPs, e.g. 1e13,5.76e23") from None


class Terminated(BaseException):
    """SIGTERM outside training (the launcher handles its own there)."""


def _terminate(*_):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    xla_flags.for_planner()  # before the first jax.devices(): the trainer's flags, no GPU held
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(*parse(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # outside training (the launcher handles its own): every write was atomic
        print("\nstudy: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Terminated:
        print("\nstudy: terminated; rerun the same command to resume", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args, overrides: list[str]) -> int:
    try:
        _check(args)
        try:
            config = plan.load_file_config(args.config)
        except AttributeError as e:  # a file with no get_config(); elsewhere AttributeError is a bug
            raise StudyInputError(f"--config={args.config}: {e}") from e
        if "study" not in config:
            raise StudyInputError(f"--config={args.config} has no `study` section: it is not a study config")
        study = study_dir(args, config, overrides)
        study.mkdir(parents=True, exist_ok=True)
        state = read_state(study)
        progress = StudyLine(str(config.study.name))
        mode = str(config.study.get("mode", "independent"))
        plan_phase(args, study, overrides, config_hash(config, overrides), state, progress)
    except (StudyInputError, OSError, SyntaxError) as e:
        print(f"study: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    code = train_phase(args, study, progress)
    if code == 2:
        progress.end(f"study {progress.name}: launch refused: {_last_error(study, 'train')}")
        return 2
    if code >= 128:
        progress.end(f"study {progress.name}: stopped while training; rerun the same command to resume")
        return code
    progress.show("collect", "results.csv, curves.csv")
    faults.point("collect")
    with logged(study, "collect"):
        if collect.main(["--study", str(study)]) != 0:
            progress.end(f"study {progress.name}: collect failed: {_last_error(study, 'collect')}")
            return 1
    code, stopped = validate_phase(args, study, overrides, state, progress, code)
    if code == 2 or code >= 128:
        return code
    if mode in ("data_constrained", "annealing"):  # laws beyond Chinchilla's form (experiments.law_study)
        stopped = stopped or law_phase(args, study, state, progress, mode)
    else:
        stopped = stopped or analysis_phases(args, study, state, progress)
    if stopped:
        progress.end(f"study {progress.name}: analysis stopped at {stopped}")
        return 1
    failed = "" if code == 0 else " (some runs failed: see the report's last section)"
    progress.end(f"study {progress.name}: done{failed} | report: {study / 'report.html'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
