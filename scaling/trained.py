"""A trained run read back: its config from run.json, the training mesh and compiled steps, and the
parameters of one checkpoint. Shared by `scaling.evaluate` and `scaling.sample`.

Reading never changes the run directory: no unfinished-save cleanup, no quarantine (those belong to
the trainer that owns it), so a run may be scored or sampled while it is still training.
"""
from __future__ import annotations

import dataclasses
import pathlib

import jax
import ml_collections
import orbax.checkpoint as ocp

from models.config import ConfigError, ModelConfig
from scaling import run_record, step as step_lib, validate
from scaling.checkpoint import Checkpointer
from scaling.sharding import make_mesh

CHECKPOINT_DIR = "checkpoints"


class RunError(ValueError):
    """A workdir or step that cannot be read; the message is one line naming it and the fix."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What run.json says, enough to check a request before any compute."""
    workdir: pathlib.Path
    record: run_record.RunRecord
    config: ml_collections.ConfigDict
    model_cfg: ModelConfig


@dataclasses.dataclass(frozen=True)
class Trained:
    info: RunInfo
    comp: step_lib.Compiled
    step: int
    params: dict  # pure dict, sharded as in training (comp.state_shardings["params"])


def read(workdir: str) -> RunInfo:
    path = pathlib.Path(workdir).expanduser().resolve()
    run_file = path / run_record.FILE
    if not run_file.is_file():
        raise RunError(f"--workdir={workdir} has no {run_record.FILE}: point it at a run directory "
                       "written by python -m scaling.train")
    try:
        record = run_record.read(path)
        if record.config is None:
            raise KeyError("config")
        config = ml_collections.ConfigDict(dict(record.config))
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{run_file} is not a readable run record ({type(e).__name__}: {e})") from None
    try:
        model_cfg = validate.check(config, jax.device_count(), jax.process_count())
    except ConfigError as e:
        raise RunError(f"{run_file}'s config does not fit these {jax.device_count()} devices: {e}") from None
    return RunInfo(path, record, config, model_cfg)


def checkpoint_step(info: RunInfo, step: int | None) -> int:
    """The requested step (None: the newest), checked to exist on disk."""
    directory = info.workdir / CHECKPOINT_DIR
    steps = sorted(ocp.utils.checkpoint_steps(directory)) if directory.is_dir() else []
    if not steps:
        raise RunError(f"no checkpoint in {directory}: train the run first (python -m scaling.train "
                       f"--workdir={info.workdir} ...) or check --workdir")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise RunError(f"--step={step}: no checkpoint for it in {directory}; available steps: {steps}")
    return step


def load(info: RunInfo, step: int) -> Trained:
    """The run's mesh and compiled steps, and the parameters of checkpoint `step` (verified)."""
    mesh = make_mesh(info.config.mesh.shape)
    comp = step_lib.build(info.config, info.model_cfg, mesh)
    ckpt = Checkpointer(info.workdir / CHECKPOINT_DIR, every_steps=0,
                        keep=int(info.config.checkpoint.keep), async_save=False)
    try:
        with jax.set_mesh(mesh):
            state = ckpt.restore_step(step, comp.abstract_state)
    finally:
        ckpt.close()
    return Trained(info, comp, step, state["params"])
