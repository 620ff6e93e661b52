"""Launcher: idempotent relaunch, crash safety (SIGKILL at several moments), locks, plan guard, retries,
WSD branch ordering, worker pinning, status, CLI errors.

Most tests drive the launcher with a small real trainer (`python -m test_launch`, the `__main__` block
below) that follows scaling.train's contract: same flags, exit codes, run.json / metrics.jsonl /
checkpoints/<step> layout, SIGTERM -> checkpoint + exit 143. It sleeps instead of computing, and it
logs every invocation, so tests can count trainings exactly. The end-to-end test with the real trainer
is at the bottom.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------------------
# The small trainer (runs as `python -m test_launch --config=... --workdir=... --config.k=v ...`)
# ------------------------------------------------------------------------------------------------------

def _write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _append(path: Path, value) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(value) + "\n")


def _parse_flags(argv: list[str]) -> tuple[Path, dict, Path | None, int | None]:
    workdir, over, init_from, init_step = None, {}, None, None
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "--workdir":
            workdir = Path(value)
        elif key.startswith("--config."):
            over[key[len("--config."):]] = value
        elif key == "--init_from":
            init_from = Path(value)
        elif key == "--init_step":
            init_step = int(value)
    return workdir, over, init_from, init_step


def _latest_checkpoint(ckpt: Path) -> int:
    steps = [int(p.name) for p in ckpt.glob("*") if p.name.isdigit()]
    return max(steps, default=0)


def _save(ckpt: Path, step: int, loss: float) -> None:
    tmp = ckpt / f"{step}.orbax-checkpoint-tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    _write_json(tmp / "state.json", {"step": step, "loss": loss})
    os.replace(tmp, ckpt / str(step))


def fake_trainer(argv: list[str]) -> int:
    workdir, over, init_from, init_step = _parse_flags(argv)
    steps, batch_tokens = int(over.get("train.steps", 20)), int(over.get("fake.batch_tokens", 256))
    step_s, every = float(over.get("fake.step_s", 0.03)), int(over.get("checkpoint.every_steps", 5))
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = workdir / "checkpoints"
    start = _latest_checkpoint(ckpt)
    loss = 10.0 if start == 0 else json.loads((ckpt / str(start) / "state.json").read_text())["loss"]
    init_ok = None
    if init_from is not None and start == 0:
        init_ok = (init_from / str(init_step) / "state.json").exists()
    n_before = len((workdir / "invocations.log").read_text().splitlines()) if (workdir / "invocations.log").exists() else 0
    _append(workdir / "invocations.log", {"pid": os.getpid(), "t0": time.time(), "start_step": start, "init_ok": init_ok,
                                          "cpus": sorted(os.sched_getaffinity(0)),
                                          "omp": os.environ.get("OMP_NUM_THREADS")})
    if over.get("fake.invalid") == "true":
        return 2
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    record = {"steps": steps, "tokens": steps * batch_tokens, "config": over, "params": {
        "total": int(over.get("fake.params", 1000)), "embedding": 100, "non_embedding": int(over.get("fake.params", 1000)) - 100},
        "flops_per_token": {"6n": 6000.0, "6n_nonembed": 5400.0, "chinchilla": 7000.0, "chinchilla_causal": 6500.0}}
    if init_ok is False or n_before < int(over.get("fake.fail_times", 0)):
        _write_json(workdir / "run.json", {**record, "status": "failed"})
        return 1
    _write_json(workdir / "run.json", {**record, "status": "running"})
    diverge_at = int(over.get("fake.diverge_at", 0))
    for step in range(start + 1, steps + 1):
        time.sleep(step_s)
        loss = loss * 0.97
        line = {"step": step, "tokens": step * batch_tokens, "flops": 6000.0 * step * batch_tokens, "train_loss": loss,
                "lr": 1e-3, "grad_norm": 1.0, "step_time": step_s, "tokens_per_s": batch_tokens / step_s, "mfu": 0.0}
        if step % every == 0 or step == steps:
            line["eval_loss"] = loss + 0.1
        _append(workdir / "metrics.jsonl", line)
        if step == diverge_at:
            _write_json(workdir / "run.json", {**record, "status": "diverged"})
            return 3
        if step % every == 0 or stop:
            _save(ckpt, step, loss)
        if stop:
            _write_json(workdir / "run.json", {**record, "status": "interrupted"})
            return 143
    _save(ckpt, steps, loss) if not (ckpt / str(steps)).exists() else None
    _write_json(workdir / "run.json", {**record, "status": "completed", "final_train_loss": loss,
                                       "final_eval_loss": loss + 0.1, "wall_time_s": 1.0, "step_time_s": steps * step_s,
                                       "tokens_per_s": batch_tokens / step_s})
    _append(workdir / "completions.log", {"pid": os.getpid(), "t": time.time()})
    return 0


def _fake_main() -> None:
    code = fake_trainer(sys.argv[1:])
    workdir = _parse_flags(sys.argv[1:])[0]
    _append(workdir / "exits.log", {"pid": os.getpid(), "t1": time.time(), "code": code})
    sys.exit(code)


if __name__ == "__main__":
    _fake_main()


# ------------------------------------------------------------------------------------------------------
# Helpers shared with test_collect / test_slurm
# ------------------------------------------------------------------------------------------------------

def spec(run_id: str, steps: int = 20, params: int = 1000, branch_from=None, branch_step=None, **fake) -> dict:
    """A RunSpec dict for the small trainer; `fake` keys become --config.fake.<k> overrides."""
    from experiments.spec import RunSpec
    batch_tokens = 256
    overrides = {"train.steps": steps, "checkpoint.every_steps": fake.pop("every", 5),
                 "fake.params": params, **{f"fake.{k}": v for k, v in fake.items()}}
    return RunSpec(run_id=run_id, budget=6000.0 * steps * batch_tokens, flop_convention="6n",
                   flops=6000.0 * steps * batch_tokens, params=params, non_embedding_params=params - 100,
                   tokens=steps * batch_tokens, steps=steps, global_batch=2, seq_len=128, lr=1e-3, warmup_steps=2,
                   schedule="wsd" if branch_from else "cosine", config_file="experiments/configs/fake.py",
                   overrides=overrides, branch_from=branch_from, branch_step=branch_step).to_dict()


def make_study(root: Path, runs: list[dict], **study) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.json").write_text(json.dumps({"study": {"name": root.name, **study}, "runs": runs, "dropped": []}))
    return root


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}


def launch_cmd(study: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "experiments.launch", f"--study={study}", "--trainer=test_launch", "--poll-s=0.1", *flags]


def launch(study: Path, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(launch_cmd(study, *flags), cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)


def start_launch(study: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(launch_cmd(study, *flags), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def log(study: Path, run_id: str, name: str) -> list[dict]:
    path = study / "runs" / run_id / name
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def run_json(study: Path, run_id: str) -> dict:
    return json.loads((study / "runs" / run_id / "run.json").read_text())


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_trained_once(study: Path, run_ids) -> None:
    """Completed, by exactly one trainer invocation reaching the end, with every step logged."""
    for r in run_ids:
        assert run_json(study, r)["status"] == "completed", r
        assert len(log(study, r, "completions.log")) == 1, (r, log(study, r, "invocations.log"))
        steps = {m["step"] for m in log(study, r, "metrics.jsonl")}
        assert steps == set(range(1, run_json(study, r)["steps"] + 1)), r


def no_overlap(study: Path, run_id: str) -> None:
    """No two trainer processes of this run were alive at the same time."""
    starts = {x["pid"]: x["t0"] for x in log(study, run_id, "invocations.log")}
    ends = {x["pid"]: x["t1"] for x in log(study, run_id, "exits.log")}
    spans = sorted((starts[p], ends.get(p, float("inf"))) for p in starts)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"{run_id}: trainers overlapped {spans}"
