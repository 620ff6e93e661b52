"""Launcher: idempotent relaunch, crash safety (SIGKILL at several moments), locks, plan guard, retries,
WSD branch ordering, worker pinning, status, CLI errors.

Most tests drive the launcher with a small real trainer (`python -m test_launch`, the `__main__` block
below) that follows scaling.train's contract: same flags, exit codes, run.json / metrics.jsonl /
checkpoints/<step> layout, SIGTERM -> checkpoint + exit 143. It sleeps instead of computing, and it
logs every invocation, so tests can count trainings exactly. The end-to-end test with the real trainer
is in tests/test_study.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
    hang_at = int(over.get("fake.hang_at", 0)) if n_before == 0 else 0  # the first attempt only
    for step in range(start + 1, steps + 1):
        if step == hang_at:  # blocked for good, deaf to SIGTERM: only SIGKILL ends it
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(1)
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


# ------------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------------

def test_grid_runs_once_and_relaunch_skips_completed(tmp_path):
    study = make_study(tmp_path / "s", [spec("a"), spec("b", steps=30), spec("c", steps=10)])
    first = launch(study, "--workers=2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert_trained_once(study, "abc")
    assert "grid: 3/3 done" in first.stdout.splitlines()[-1]
    again = launch(study, "--workers=2")
    assert again.returncode == 0, again.stderr
    assert all(len(log(study, r, "invocations.log")) == 1 for r in "abc")


def test_sigkill_launcher_at_any_moment_then_relaunch_trains_each_run_once(tmp_path):
    runs = [spec(f"r{i}", steps=24, every=4) for i in range(4)]
    study = make_study(tmp_path / "s", runs)
    ids = [r["run_id"] for r in runs]
    moments = [  # kill right away, once trainers run, once some run completed
        lambda: True,
        lambda: any(log(study, r, "metrics.jsonl") for r in ids),
        lambda: any(log(study, r, "completions.log") for r in ids),
    ]
    for when in moments:
        proc = start_launch(study, "--workers=2")
        wait_for(when, what="kill moment")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = launch(study, "--workers=2")
    assert final.returncode == 0, final.stdout + final.stderr
    assert_trained_once(study, ids)
    for r in ids:
        no_overlap(study, r)
    # The SIGKILLed launchers' trainers were interrupted (SIGTERM via PDEATHSIG) and later resumed from a
    # checkpoint rather than restarted from step 0.
    resumed = [x for r in ids for x in log(study, r, "invocations.log") if x["start_step"] > 0]
    assert resumed


def test_sigterm_launcher_interrupts_trainers_and_relaunch_resumes(tmp_path):
    study = make_study(tmp_path / "s", [spec("a", steps=60, every=10)])
    proc = start_launch(study)
    wait_for(lambda: len(log(study, "a", "metrics.jsonl")) >= 12, what="training progress")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert run_json(study, "a")["status"] == "interrupted"
    assert launch(study).returncode == 0
    assert_trained_once(study, "a")
    assert log(study, "a", "invocations.log")[1]["start_step"] >= 10


def test_two_launchers_never_train_the_same_run_at_once(tmp_path):
    study = make_study(tmp_path / "s", [spec(f"r{i}", steps=15) for i in range(3)])
    procs = [start_launch(study, "--workers=2") for _ in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    ids = [f"r{i}" for i in range(3)]
    assert_trained_once(study, ids)
    for r in ids:
        no_overlap(study, r)
        assert len(log(study, r, "invocations.log")) == 1


def test_changed_plan_is_refused_unless_fresh(tmp_path):
    study = make_study(tmp_path / "s", [spec("a", steps=5)])
    assert launch(study).returncode == 0
    make_study(study, [spec("a", steps=8)])
    refused = launch(study)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "--fresh" in refused.stderr
    assert run_json(study, "a")["steps"] == 5  # nothing ran
    fresh = launch(study, "--fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert run_json(study, "a")["steps"] == 8
    assert_trained_once(study, "a")
    archived = list((study / "archive").glob("*/runs/a/run.json"))
    assert len(archived) == 1 and json.loads(archived[0].read_text())["steps"] == 5


def test_grown_plan_keeps_unchanged_runs_and_refuses_a_changed_one_by_id(tmp_path):
    study = make_study(tmp_path / "s", [spec("C1-N1", steps=5), spec("C1-N2", steps=6)])
    assert launch(study).returncode == 0
    # A budget and a size added: the two completed runs are kept, only the new ones train.
    grown = [spec("C1-N1", steps=5), spec("C1-N2", steps=6), spec("C1-N3", steps=4), spec("C2-N1", steps=7)]
    make_study(study, grown)
    out = launch(study)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_trained_once(study, ["C1-N1", "C1-N2", "C1-N3", "C2-N1"])
    assert not (study / "archive").exists()
    # One run's spec changed: refused with its id; nothing trains, nothing moves.
    make_study(study, [spec("C1-N1", steps=5), spec("C1-N2", steps=9), *grown[2:]])
    refused = launch(study)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "C1-N2" in refused.stderr and "C1-N1" not in refused.stderr and "--fresh" in refused.stderr
    assert run_json(study, "C1-N2")["steps"] == 6
    # --fresh archives and retrains the changed run only.
    fresh = launch(study, "--fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert run_json(study, "C1-N2")["steps"] == 9
    assert [p.name for p in (study / "archive").glob("*/runs/*")] == ["C1-N2"]
    assert_trained_once(study, ["C1-N1", "C1-N2", "C1-N3", "C2-N1"])
    # Shrinking the plan and growing it back does not retrain what was dropped in between.
    make_study(study, [spec("C1-N1", steps=5)])
    assert launch(study).returncode == 0
    make_study(study, [spec("C1-N1", steps=5), spec("C1-N2", steps=9), *grown[2:]])
    assert launch(study).returncode == 0
    assert len(log(study, "C2-N1", "invocations.log")) == 1


def test_failed_runs_are_retried_up_to_the_limit(tmp_path):
    study = make_study(tmp_path / "s", [spec("flaky", steps=5, fail_times=1), spec("broken", steps=5, fail_times=99)])
    out = launch(study, "--max-retries=2")
    assert out.returncode == 1, out.stdout
    assert_trained_once(study, ["flaky"])
    assert len(log(study, "flaky", "invocations.log")) == 2
    assert len(log(study, "broken", "invocations.log")) == 3  # first try + 2 retries
    assert "broken: failed (exit 1) -> failed" in out.stdout
    assert launch(study, "--max-retries=2").returncode == 1
    assert len(log(study, "broken", "invocations.log")) == 3  # exhausted stays exhausted
    launch(study, "--max-retries=3")
    assert len(log(study, "broken", "invocations.log")) == 4


def test_diverged_and_invalid_runs_are_kept_not_retried(tmp_path):
    study = make_study(tmp_path / "s", [spec("nan", steps=10, diverge_at=4), spec("bad", steps=5, invalid="true"),
                                        spec("ok", steps=5)])
    out = launch(study)
    assert out.returncode == 1  # an invalid config is an error; a divergence is a result
    assert [len(log(study, r, "invocations.log")) for r in ("nan", "bad")] == [1, 1]
    assert run_json(study, "nan")["status"] == "diverged"
    status = subprocess.run([sys.executable, "-m", "experiments.status", f"--study={study}"], cwd=REPO, env=env(),
                            capture_output=True, text=True)
    states = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[1:-1]}
    assert states == {"nan": "diverged", "bad": "invalid", "ok": "completed"}


def test_wsd_branch_waits_for_its_trunk_checkpoint(tmp_path):
    study = make_study(tmp_path / "s", [
        spec("trunk", steps=40, every=10, step_s=0.05),
        spec("cool", steps=10, branch_from="trunk", branch_step=30),
        spec("orphan", steps=10, branch_from="dead", branch_step=5),
        spec("dead", steps=10, invalid="true")])
    out = launch(study, "--workers=2")
    [inv] = log(study, "cool", "invocations.log")  # started once, and only when step 30 existed
    assert inv["init_ok"] is True
    assert inv["t0"] > (study / "runs/trunk/checkpoints/30").stat().st_mtime
    assert_trained_once(study, ["trunk", "cool"])
    assert "orphan" in out.stdout and "blocked" in out.stdout
    assert not (study / "runs/orphan/invocations.log").exists()


def test_local_workers_are_pinned_to_disjoint_cores(tmp_path):
    from experiments.executors.local import make_slots
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores to pin 2 workers apart")
    study = make_study(tmp_path / "s", [spec(f"r{i}", steps=10) for i in range(4)])
    assert launch(study, "--workers=2").returncode == 0
    cpus = {tuple(log(study, f"r{i}", "invocations.log")[0]["cpus"]) for i in range(4)}
    per = len(os.sched_getaffinity(0)) // 2
    assert len(cpus) == 2 and all(len(c) == per for c in cpus) and not set(cpus.pop()) & set(cpus.pop())
    assert {log(study, "r0", "invocations.log")[0]["omp"]} == {str(per)}
    # On a GPU host each worker sees one GPU; two workers per GPU split its memory.
    gpu_slots = make_slots(4, {}, ["0", "1"], cores=[0, 1])
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in gpu_slots] == ["0", "1", "0", "1"]
    assert gpu_slots[0].env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450" and gpu_slots[0].cpus is None


def test_run_lock_is_exclusive_and_released_when_its_holder_dies(tmp_path):
    from experiments import locks
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from experiments import locks; l = locks.RunLock(sys.argv[1]).acquire();"
        "print('held', flush=True); time.sleep(60)"), str(run)], cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert locks.is_held(run)
    with pytest.raises(locks.LockBusy):
        locks.RunLock(run).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert not locks.is_held(run)
    with locks.RunLock(run):  # the kernel dropped the crashed holder's flock; its lease is ignored here
        assert locks.is_held(run)
    assert not locks.is_held(run)


def test_lease_from_another_host_binds_until_stale(tmp_path):
    from experiments import locks
    run = tmp_path / "run"
    run.mkdir()
    lease = {"host": "other-node", "pids": [1], "token": "x", "owner": "slurm job 7"}
    locks.write_json_atomic(run / "lease.json", {**lease, "heartbeat": time.time()})
    assert locks.is_held(run)
    with pytest.raises(locks.LockBusy, match="slurm job 7"):
        locks.RunLock(run).acquire()
    locks.write_json_atomic(run / "lease.json", {**lease, "heartbeat": time.time() - 2 * locks.STALE_AFTER_S})
    with locks.RunLock(run):
        assert locks.read_lease(run).host != "other-node"


def test_status_table_while_running(tmp_path):
    study = make_study(tmp_path / "s", [spec("long", steps=200, step_s=0.03), spec("short", steps=5)])
    proc = start_launch(study)
    wait_for(lambda: len(log(study, "long", "metrics.jsonl")) >= 10, what="progress")
    out = subprocess.run([sys.executable, "-m", "experiments.status", f"--study={study}"], cwd=REPO, env=env(),
                         capture_output=True, text=True)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:7] == ["run_id", "state", "step/steps", "loss", "eval", "tokens/s", "ETA"]
    row = next(line.split() for line in lines if line.startswith("long"))
    step, steps = map(int, row[2].split("/"))
    assert row[1] == "running" and steps == 200 and 10 <= step < 200
    assert row[6] != "-" and float(row[3]) < 10.0
    assert lines[-1].startswith("grid: ") and "1 running" in lines[-1] and "ETA" in lines[-1]


def _launch_unprivileged(study: Path) -> subprocess.CompletedProcess:
    """Root writes anywhere, so the launcher drops to `nobody` once its modules are loaded (the
    interpreter lives under root's private home, which nobody cannot read)."""
    drop = "import os, sys, experiments.launch as L; os.setgid(65534); os.setuid(65534); sys.exit(L.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", drop, *launch_cmd(study)[3:]], cwd=REPO, env=env(),
                          capture_output=True, text=True)


@pytest.mark.parametrize("case", ["no_plan", "bad_executor", "no_slurm", "unwritable"])
def test_bad_input_is_one_line_exit_2_before_anything_runs(tmp_path, case, request):
    study = make_study(tmp_path / "s", [spec("a", steps=5)], executor="slurm" if case == "no_slurm" else "local")
    flags, run_env = [], env()
    if case == "no_plan":
        (study / "plan.json").unlink()
    elif case == "bad_executor":
        flags = ["--executor=k8s"]
    elif case == "no_slurm":
        run_env["PATH"] = str(tmp_path / "empty")
    if case == "unwritable" and os.geteuid() == 0:
        study = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp tree is private to root
        request.addfinalizer(lambda: shutil.rmtree(study))
        make_study(study, [spec("a", steps=5)])
        study.chmod(0o755)
        out = _launch_unprivileged(study)
    else:
        if case == "unwritable":
            study.chmod(0o555)
        out = subprocess.run(launch_cmd(study, *flags), cwd=REPO, env=run_env, capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
    expected = {"no_plan": "plan.json", "bad_executor": "--executor", "no_slurm": "sbatch", "unwritable": "writable"}
    assert expected[case] in out.stderr
    assert "runs" not in out.stdout and not (study / "runs" / "a").exists()


# The end-to-end test with the real planner and trainer goes through experiments.study: tests/test_study.py.


def test_an_unknown_allocator_is_a_one_line_launch_error(tmp_path, monkeypatch, capsys):
    from experiments import launch
    from experiments import study_dir as st
    from experiments.planning.study import Study
    study = tmp_path / "s"
    study.mkdir()
    monkeypatch.setenv("SCALING_MALLOC", "jemalloc")
    monkeypatch.setattr(st, "load_plan", lambda path: st.Plan(study=Study(), runs=(), hash="0"))
    assert launch.main([f"--study={study}", "--workers=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SCALING_MALLOC='jemalloc'" in err[0]


def test_a_stalled_run_is_killed_and_retried_from_its_checkpoint(tmp_path):
    """The first attempt blocks for good at step 12 (ignoring SIGTERM); the launcher sees its log
    stand still past the allowance, kills it, and the retry resumes from checkpoint 10."""
    study = make_study(tmp_path / "s", [spec("a", steps=20, hang_at=12)])
    result = launch(study, "--stall-min-s=2", "--stall-factor=5", "--max-retries=1", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run a: stalled: no progress for" in result.stdout
    assert [x["start_step"] for x in log(study, "a", "invocations.log")] == [0, 10]
    assert_trained_once(study, ["a"])


def test_sigterm_launcher_kills_a_deaf_trainer_after_the_grace(tmp_path):
    study = make_study(tmp_path / "s", [spec("a", steps=20, hang_at=3)])
    proc = start_launch(study, "--stop-grace-s=1")
    wait_for(lambda: len(log(study, "a", "metrics.jsonl")) >= 2, what="the run to start")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert run_json(study, "a")["status"] == "running"  # killed, not saved: a relaunch resumes it
    result = launch(study)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_trained_once(study, ["a"])
