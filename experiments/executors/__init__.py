"""Executors run a study's planned runs: `local` (worker processes on this machine) or `slurm` (submitit
job arrays). Both hand each run to `worker.run_one`, which holds the run's lock around one trainer.

An executor offers: capacity() free slots, active() run ids it is running or has queued, queued() run ids
waiting in a queue, submit(specs), poll() -> finished Outcomes, wait(timeout) until something may have
changed, stop().
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # experiments.planning.study reads EXECUTORS, and experiments.study_dir reads it
    from experiments.study_dir import Plan

EXECUTORS = ("local", "slurm")


class ExecutorUnavailable(Exception):
    """The chosen executor cannot run here: one line naming the flag and the fix."""


def make_executor(name: str, study: Path, plan: Plan, workers: int, *, trainer: str, max_retries: int):
    if name == "local":
        from experiments.executors.local import LocalExecutor
        return LocalExecutor(study, plan, workers, trainer=trainer, max_retries=max_retries)
    if name == "slurm":
        from experiments.executors import slurm
        try:
            return slurm.SlurmExecutor(study, plan, workers, trainer=trainer, max_retries=max_retries)
        except slurm.SlurmUnavailable as e:
            raise ExecutorUnavailable(str(e)) from None
    raise ExecutorUnavailable(f"--executor={name}: unknown; choose one of {', '.join(EXECUTORS)}")
