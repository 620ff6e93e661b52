"""SLURM executor: runs become tasks of submitit job arrays; each task calls `worker.run_one`.

Resources come from the plan's study section, `study["slurm"]` (see experiments/configs/isoflop_cpu.py):
partition ("" = the cluster's default), time_minutes, gpus_per_task, cpus_per_task, mem_gb, and
optionally `additional` (extra sbatch flags, e.g. {"account": "..."}). One task runs one run, so
gpus_per_task is the node's GPU request. The launcher's --workers (else slurm.array_parallelism) caps
how many array tasks run at once (the `%N` array throttle).

Queued job ids are written to `<study>/slurm/jobs.json`, so a relaunched launcher neither resubmits a
run whose job is still queued or running nor forgets one. A task that gets SIGUSR2 (submitit asks
SLURM for it `signal_delay_s` before the time limit) or SIGTERM (scancel) passes SIGTERM on to the
trainer, which saves a checkpoint and exits 143; the run is then "interrupted" and the launcher
submits it again, so it resumes.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from experiments import locks
from experiments import study_dir as st
from experiments.executors import worker
from experiments.spec import RunSpec
from scaling import allocator, xla_flags

LIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
               "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


class SlurmUnavailable(Exception):
    pass


def check_available() -> None:
    missing = [b for b in ("sbatch", "squeue", "scancel") if shutil.which(b) is None]
    if missing:
        raise SlurmUnavailable(f"--executor=slurm: {', '.join(missing)} not found on PATH; "
                               f"run on a SLURM login node or use --executor=local")
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", "0"], capture_output=True, text=True)
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        line = (out.stderr.strip().splitlines() or ["no answer"])[-1]
        raise SlurmUnavailable(f"--executor=slurm: slurmctld does not answer ({line}); check SLURM_CONF / the cluster")


def run_task(study: str, spec: dict, plan_hash: str, trainer: str, max_retries: int) -> worker.Outcome:
    """The function each array task runs (pickled by submitit; runs on the compute node)."""
    plan = st.load_plan(Path(study))
    spec = RunSpec.from_dict(spec)
    if plan.hash != plan_hash:  # the plan was replaced (--fresh) while this task sat in the queue
        return worker.Outcome(spec.run_id, "skipped")
    procs: list[subprocess.Popen] = []

    def forward(signum, frame) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    # Replace submitit's handlers: its USR2 handler raises out of proc.wait() and its SIGTERM handler
    # ignores the signal; either way the trainer would be killed before saving a checkpoint.
    signal.signal(signal.SIGUSR2, forward)
    signal.signal(signal.SIGTERM, forward)
    # The trainer starts under tcmalloc, if installed, and preallocates its GPU (sbatch passed on the
    # submitting study's environment, which does not).
    env = xla_flags.for_trainer(allocator.preload_env(os.environ))
    ncpu = env.get("SLURM_CPUS_PER_TASK")
    if ncpu:
        env.update({v: ncpu for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    task = env.get("SLURM_ARRAY_TASK_ID")
    owner = (f"slurm job {env['SLURM_ARRAY_JOB_ID']}_{task}" if task is not None and "SLURM_ARRAY_JOB_ID" in env
             else f"slurm job {env.get('SLURM_JOB_ID', '?')}")
    return worker.run_one(Path(study), spec, plan, trainer=trainer, max_retries=max_retries, owner=owner,
                          env=env, on_start=procs.append)


def squeue_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state of each job id still known to slurmctld (array tasks as '<array>_<task>')."""
    if not job_ids:
        return {}
    bases = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(bases)], capture_output=True, text=True)
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


class SlurmExecutor:
    name = "slurm"

    def __init__(self, study: Path, plan: st.Plan, workers: int, *, trainer: str, max_retries: int):
        import submitit  # only the SLURM path needs it

        check_available()
        self.study, self.plan, self.trainer, self.max_retries = Path(study), plan, trainer, max_retries
        self.folder = self.study / "slurm"
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = plan.study.slurm
        self.executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        params = dict(timeout_min=cfg.time_minutes, slurm_array_parallelism=workers,
                      name=f"scaling-{self.study.name}", slurm_signal_delay_s=cfg.signal_delay_s)
        for value, name in ((cfg.partition, "slurm_partition"), (cfg.gpus_per_task, "gpus_per_node"),
                            (cfg.cpus_per_task, "cpus_per_task"), (cfg.mem_gb, "mem_gb")):
            if value:  # "" or 0: the cluster's default
                params[name] = value
        if cfg.additional:
            params["slurm_additional_parameters"] = dict(cfg.additional)
        self.executor.update_parameters(**params)
        self._jobs_path = self.folder / "jobs.json"
        # run_id -> {"job_id", "attempts"}: the run's attempt count when the job was submitted, to notice
        # jobs that ended without ever starting the trainer (broken node, env, sbatch script).
        self._jobs: dict[str, dict] = locks.read_json(self._jobs_path) or {}
        self._states = squeue_states([j["job_id"] for j in self._jobs.values()])

    def capacity(self) -> int:
        return 1 << 30  # SLURM queues everything; the array throttle bounds concurrency

    def _live(self) -> set[str]:
        return {r for r, j in self._jobs.items() if self._states.get(j["job_id"]) in LIVE_STATES}

    def active(self) -> set[str]:
        return self._live()

    def queued(self) -> frozenset[str]:
        return frozenset(self._live())

    def submit(self, specs: list[RunSpec]) -> None:
        if not specs:
            return
        with self.executor.batch():
            jobs = [self.executor.submit(run_task, str(self.study), s.to_dict(), self.plan.hash, self.trainer,
                                         self.max_retries) for s in specs]
        for spec, job in zip(specs, jobs):
            n = len(st.read_attempts(st.run_dir(self.study, spec.run_id)))
            self._jobs[spec.run_id] = {"job_id": str(job.job_id), "attempts": n}
            self._states[str(job.job_id)] = "PENDING"
        locks.write_json_atomic(self._jobs_path, self._jobs)

    def poll(self) -> list[worker.Outcome]:
        before = self._live()
        self._states = squeue_states([j["job_id"] for j in self._jobs.values()])
        gone = sorted(before - self._live())
        for run_id in gone:
            self._check_started(run_id)
        return [worker.Outcome(r, "job ended") for r in gone]

    def _check_started(self, run_id: str) -> None:
        """A job that left the queue without a new attempt and without finishing the run never reached
        the trainer: count it as a failed attempt so a broken job cannot be resubmitted forever."""
        rdir = st.run_dir(self.study, run_id)
        job = self._jobs[run_id]
        attempts = st.read_attempts(rdir)
        if len(attempts) > job["attempts"] or locks.is_held(rdir):
            return
        rj = st.read_run(rdir)
        if rj is not None and rj.status in (st.COMPLETED, st.DIVERGED):
            return
        rdir.mkdir(parents=True, exist_ok=True)
        attempts.append(st.Attempt(None, owner=f"slurm job {job['job_id']} ended without starting the "
                                               f"trainer; see {self.folder / job['job_id']}", outcome=st.FAILED))
        st.write_attempts(rdir, attempts)

    def wait(self, timeout: float) -> None:
        time.sleep(timeout)

    def stop(self, grace_s: float = 0.0) -> None:
        """Jobs keep running without the launcher; a relaunch picks them up from jobs.json."""
