"""Local executor: N trainer processes at once on this machine, each pinned to its own cores or GPU.

Worker slots are threads of the launcher; each blocks in `worker.run_one` on one trainer subprocess.
On a GPU host slot i sees one GPU (`CUDA_VISIBLE_DEVICES`); on CPU slot i is bound to a disjoint set of
cores (`sched_setaffinity`, which XLA's thread pool sizes itself from) with BLAS/OpenMP threads to match,
so N runs share the machine without oversubscribing it.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from experiments.executors import worker
from experiments.study_dir import Plan
from experiments.spec import RunSpec
from scaling import allocator, xla_flags

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class Slot:
    index: int
    cpus: tuple[int, ...] | None  # None: leave affinity alone (GPU hosts)
    env: dict[str, str]


def visible_gpus(env: dict[str, str]) -> list[str]:
    """GPU ids this host offers: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    if env.get("CUDA_VISIBLE_DEVICES", "").strip():
        return [g for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def make_slots(workers: int, base_env: dict[str, str], gpus: list[str], cores: list[int]) -> list[Slot]:
    slots = []
    for i in range(workers):
        env = dict(base_env)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
            sharing = -(-workers // len(gpus))  # runs per GPU
            if sharing > 1:  # JAX preallocates 75% of a GPU per process by default
                env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / sharing:.3f}"
            slots.append(Slot(i, None, env))
            continue
        per = max(1, len(cores) // workers)
        mine = tuple(cores[i * per:(i + 1) * per]) if workers <= len(cores) else (cores[i % len(cores)],)
        env.update({v: str(len(mine)) for v in THREAD_VARS})
        if len(mine) == 1:  # one core: keep XLA's Eigen pool from spawning threads it cannot use
            # Only flags XLA knows: it aborts on an unknown `--flag` and silently skips a token
            # without `--` (the `intra_op_parallelism_threads=1` this once carried did nothing).
            # The CPU client's own pool is sized from the affinity mask set above.
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        slots.append(Slot(i, mine, env))
    return slots


class LocalExecutor:
    name = "local"

    def __init__(self, study: Path, plan: Plan, workers: int, *, trainer: str, max_retries: int):
        # Trainers start under tcmalloc, if installed, and preallocate their GPU (the study does not).
        env = xla_flags.for_trainer(allocator.preload_env(os.environ))
        self.slots = make_slots(workers, env, visible_gpus(env), sorted(os.sched_getaffinity(0)))
        self.study, self.plan, self.trainer, self.max_retries = study, plan, trainer, max_retries
        self._free = list(range(workers))
        self._active: dict[str, threading.Thread] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._done: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._stopping = False
        self._wake = threading.Event()

    def capacity(self) -> int:
        return len(self._free)

    def active(self) -> set[str]:
        return set(self._active)

    def queued(self) -> frozenset[str]:
        return frozenset()

    def submit(self, specs: list[RunSpec]) -> None:
        for spec in specs[: self.capacity()]:
            slot = self.slots[self._free.pop(0)]
            t = threading.Thread(target=self._work, args=(spec, slot), name=f"run-{spec.run_id}", daemon=True)
            self._active[spec.run_id] = t
            t.start()

    def _work(self, spec: RunSpec, slot: Slot) -> None:
        try:
            out = worker.run_one(self.study, spec, self.plan, trainer=self.trainer, max_retries=self.max_retries,
                                 owner=f"local launcher pid {os.getpid()} slot {slot.index}", env=slot.env,
                                 cpus=slot.cpus, on_start=lambda p: self._register(spec.run_id, p))
        except Exception as e:  # a broken run dir must not take the other runs down
            out = worker.Outcome(spec.run_id, f"error: {type(e).__name__}: {e}")
        with self._lock:
            self._procs.pop(spec.run_id, None)
        self._done.put((out, slot.index))
        self._wake.set()

    def wait(self, timeout: float) -> None:
        """Sleep until a run finishes or `timeout` passes (a freed slot is refilled at once)."""
        self._wake.wait(timeout)
        self._wake.clear()

    def _register(self, run_id: str, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs[run_id] = proc
            if self._stopping:  # started while stop() was signalling the others
                proc.send_signal(signal.SIGTERM)

    def poll(self) -> list[worker.Outcome]:
        outs = []
        while not self._done.empty():
            out, slot = self._done.get()
            self._active.pop(out.run_id).join()
            self._free.append(slot)
            outs.append(out)
        return outs

    def kill(self, run_id: str) -> None:
        """SIGKILL one trainer (a stalled one: it cannot be trusted to answer SIGTERM)."""
        with self._lock:
            proc = self._procs.get(run_id)
        if proc is not None:
            _signal(proc, signal.SIGKILL)

    def stop(self, grace_s: float = 300.0) -> None:
        """SIGTERM every trainer (each saves a checkpoint and exits 143) and wait for the workers;
        after `grace_s`, SIGKILL what is left (its newest committed checkpoint is still there)."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        for p in procs:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for t in list(self._active.values()):
            t.join(max(deadline - time.monotonic(), 0))
        with self._lock:
            late = list(self._procs.values())
        for p in late:
            _signal(p, signal.SIGKILL)
        for t in list(self._active.values()):
            t.join()
        self.poll()


def _signal(proc: subprocess.Popen, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:  # already gone
        pass
