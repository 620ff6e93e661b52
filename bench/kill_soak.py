"""Kill soak: random SIGKILLs across the phases of `train_tiny` and of the CI study, each followed by
a plain restart, checked against an uninterrupted run.

    python bench/kill_soak.py --train-trials 50 --study-trials 10 --out /tmp/soak

A trainer trial kills one attempt either at a random named point of `plumbing.faults` (a random
arrival K of it) or at a random moment of its wall time, restarts it without the fault, and checks:
completed, final train and eval losses bitwise equal to the reference run, the final checkpoint's
fingerprint (every array's hash) equal, each logged step once, no temp file left. A study trial does
the same to `experiments.study` on isoflop_ci (its points, or a random moment) and checks: every run
completed by one trainer reaching the end, results.csv's losses equal to the reference study's, and
fits.json equal. Prints one line per trial and a tally.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plumbing import faults  # noqa: E402

TRAIN = [sys.executable, "-m", "scaling.train", "--config=experiments/configs/train_tiny.py"]
# Arrivals at each point in one train_tiny run (60 steps, log every 10, save every 20, eval at 30).
TRAIN_ARRIVALS = {"before_run_json": 1, "restore": 1, "compile": 1, "mid_step": 60, "checkpoint_write": 3,
                  "after_last_checkpoint": 1, "final_eval": 8, "write:run.json": 2, "write:metrics.jsonl": 8}
STUDY = [sys.executable, "-m", "experiments.study", "--config=experiments/configs/isoflop_ci.py",
         "--workers=2", "--poll-s=0.5", "--probe=off", "--bootstrap=0"]
# With its one validation run: the grid's first fit (fit, write:fits.json), the frozen prediction
# (validate, write:prediction.json), the validation run's own launch and collect (write:results.csv),
# then the full analysis (calibrate passes through: --bootstrap=0 leaves nothing to calibrate).
STUDY_ARRIVALS = {"plan": 1, "between_runs": 5, "collect": 1, "fit": 2, "validate": 1, "calibrate": 1, "figures": 1,
                  "report": 1, "write:results.csv": 2, "write:fits.json": 2, "write:prediction.json": 1,
                  "write:report.html": 1}


def _env(fault: str | None = None) -> dict:
    env = faults.without(dict(os.environ))
    env.setdefault("JAX_PLATFORMS", "cpu")
    if fault:
        env[faults.ENV] = fault
    return env


def _attempt(cmd: list[str], fault: str | None, kill_after_s: float | None, timeout: float) -> int:
    """One attempt, with a fault armed or a SIGKILL after a delay; its exit code."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(fault), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout=kill_after_s if kill_after_s is not None else timeout)
    except subprocess.TimeoutExpired:
        if kill_after_s is None:
            raise
        os.killpg(proc.pid, signal.SIGKILL)  # the study's trainers too, as a node loss would
        return proc.wait()


def _choose(rng: random.Random, arrivals: dict, wall_s: float) -> tuple[str | None, float | None, str]:
    if rng.random() < 0.5:
        point = rng.choice(sorted(arrivals))
        k = rng.randint(1, arrivals[point])
        return f"{point}:kill@{k}", None, f"kill {point}@{k}"
    t = rng.uniform(0, wall_s)
    return None, t, f"kill at {t:.1f} s"


# --- trainer ----------------------------------------------------------------------------------------

def _train_outcome(workdir: Path) -> dict:
    record = json.loads((workdir / "run.json").read_text())
    steps = [json.loads(x)["step"] for x in (workdir / "metrics.jsonl").read_text().splitlines()
             if x.strip() and "train_loss" in x]
    final = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    fingerprint = json.loads((workdir / "checkpoints" / str(final) / "fingerprint" / "metadata").read_text())
    temps = [p.name for p in workdir.glob(".*.tmp")]  # none may be left, in the reference either
    return {"status": record["status"], "train": record["final_train_loss"], "eval": record["final_eval_loss"],
            "steps": steps, "fingerprint": fingerprint, "temps": temps}


# --- study ------------------------------------------------------------------------------------------

def _study_outcome(study: Path) -> dict:
    rows = list(csv.DictReader(open(study / "results.csv")))
    once = all(
        [a["outcome"] for a in json.loads((study / "runs" / r["run_id"] / "attempts.json").read_text())
         ].count("completed") == 1 for r in rows)
    return {"losses": [(r["run_id"], r["final_eval_loss"], r["final_train_loss"]) for r in rows],
            "trained_once": once, "fits": json.loads((study / "fits" / "fits.json").read_text()),
            "report": (study / "report.html").exists(),
            "prediction": _frozen(study)}


def _frozen(study: Path) -> dict:
    """prediction.json but its time of writing: frozen once, it must never move."""
    return {k: v for k, v in json.loads((study / "prediction.json").read_text()).items() if k != "written"}


@dataclasses.dataclass(frozen=True)
class Target:
    """What a trial kills and how its end is read."""
    name: str
    command: Callable[[Path], list[str]]  # the command for one run (or study) directory
    outcome: Callable[[Path], dict]  # what must equal the reference's; raises if there is none
    arrivals: dict  # fault point -> how many times one uninterrupted attempt passes it
    timeout_s: float


def _outcome_or_error(target: Target, directory: Path) -> dict:
    try:
        return target.outcome(directory)
    except (OSError, ValueError, KeyError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _walk(arrivals: dict, walk: tuple[str, ...]) -> list[tuple[str, None, str]]:
    """The table of phases, each at its first arrival: an entry ACTION walks every point of this
    target with it, POINT:ACTION that point alone (if it is this target's)."""
    chosen = []
    for entry in walk:
        point, _, action = entry.rpartition(":")
        for p in ([point] if point else list(arrivals)):
            if p in arrivals:
                chosen.append((f"{p}:{action}", None, f"{p} ({action})"))
    return chosen


def trials(target: Target, out: Path, n: int, rng: random.Random, walk: tuple[str, ...] = ()) -> list[bool]:
    """`walk`: each point once per action; then n trials with one attempt killed at a random point
    and arrival or a random moment of a warm run's wall time. Each killed (or stopped) attempt is
    followed by a plain rerun and compared with an uninterrupted reference."""
    ref_dir, warm_dir = out / f"{target.name}-ref", out / f"{target.name}-warm"
    shutil.rmtree(ref_dir, ignore_errors=True)
    assert _attempt(target.command(ref_dir), None, None, target.timeout_s) == 0, "the reference failed"
    ref = target.outcome(ref_dir)
    # The random moments span a run as the trials see it: data built and compiles cached.
    shutil.rmtree(warm_dir, ignore_errors=True)
    t0 = time.time()
    assert _attempt(target.command(warm_dir), None, None, target.timeout_s) == 0, "the warm run failed"
    wall = time.time() - t0
    shutil.rmtree(warm_dir, ignore_errors=True)
    results = []
    chosen = _walk(target.arrivals, walk) + [_choose(rng, target.arrivals, wall) for _ in range(n)]
    for i, (fault, delay, label) in enumerate(chosen):
        directory = out / f"{target.name}-{i}"
        shutil.rmtree(directory, ignore_errors=True)
        first = _attempt(target.command(directory), fault, delay, target.timeout_s)
        second = _attempt(target.command(directory), None, None, target.timeout_s)
        got = _outcome_or_error(target, directory)
        ok = second == 0 and got == ref
        results.append(ok)
        differs = sorted(k for k in {*ref, *got} if got.get(k) != ref.get(k))
        print(f"{target.name} {i:3d} {label:32s} first exit {first:4d} rerun exit {second:3d} "
              f"{'equal to the reference' if ok else f'DIFFERENT: {differs}'}", flush=True)
        shutil.rmtree(directory, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-trials", type=int, default=50)
    ap.add_argument("--study-trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--walk", default="", help="first, one trial per fault point and action: 'kill,term' walks "
                                               "every point with both; 'collect:term' one point")
    ap.add_argument("--out", type=Path, default=Path("/tmp/kill_soak"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    walk = tuple(a for a in args.walk.split(",") if a)
    tally, ok = [], True
    data = args.out / "tfds"
    train = Target("train", lambda d: [*TRAIN, f"--workdir={d}", f"--config.data.data_dir={data}"],
                   _train_outcome, TRAIN_ARRIVALS, 900)
    study = Target("study", lambda d: [*STUDY, f"--study={d}"], _study_outcome, STUDY_ARRIVALS, 3600)
    if args.train_trials or _walk(train.arrivals, walk):
        r = trials(train, args.out, args.train_trials, rng, walk)
        tally.append(f"train_tiny: {sum(r)} of {len(r)} trials ended completed and bitwise equal")
        ok &= all(r)
    if args.study_trials or _walk(study.arrivals, walk):
        r = trials(study, args.out, args.study_trials, rng, walk)
        tally.append(f"isoflop_ci study: {sum(r)} of {len(r)} trials ended with every run trained once "
                     f"and the same losses and fits")
        ok &= all(r)
    print("\n".join(tally))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
