"""Checkpoints of the training state through orbax's `CheckpointManager` (orbax-checkpoint 0.12.8 API).

A thin layer over orbax that adds what resuming a scaling run needs:

* Complete or ignored: orbax writes each step into `<step>.orbax-checkpoint-tmp` and renames it
  when the save is finished, so a save killed half-way is never listed. `restore()` (the owner of
  the directory resuming) removes such leftovers; opening a directory does not, because a branch
  run may open its trunk's directory while the trunk is still writing into it.
* Verified: orbax reads a flipped bit back silently (measured: a byte flipped inside an OCDBT data
  file restores without error and with wrong values). Each checkpoint therefore carries a
  fingerprint of every leaf (two position-weighted 32-bit sums of the raw bits, computed on the
  devices, so it is independent of the sharding); a restore whose fingerprint differs is corrupt.
* Fallback: an unreadable or corrupt newest checkpoint is reported with a warning naming its step,
  moved aside to `<directory>/corrupt/`, and the previous one is restored. (Moving it aside matters:
  orbax refuses to save a step <= its newest step, so a corrupt step 400 left in place would stop
  every later save of the resumed run up to step 400.)

The state is a plain pytree: nested dicts of `jax.Array`s and Python ints. Every method that touches
the checkpoint must be called by all processes with the same arguments (orbax's contract).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
import shutil
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)

STATE_ITEM = "state"
FINGERPRINT_ITEM = "fingerprint"
CORRUPT_SUBDIR = "corrupt"
_TMP_STEP_DIR = re.compile(r"\d+\.orbax-checkpoint-tmp.*")


class CheckpointCorruptError(RuntimeError):
    """A checkpoint was read back but its contents differ from what was saved."""


@dataclasses.dataclass(frozen=True)
class CheckpointOptions:
    every_steps: int
    keep: int
    async_save: bool = True

    def __post_init__(self):
        if not isinstance(self.every_steps, int) or self.every_steps < 0:
            raise ValueError(
                f"checkpoint.every_steps must be an integer >= 0 (0: only forced saves), got {self.every_steps!r}"
            )
        if not isinstance(self.keep, int) or self.keep < 1:
            raise ValueError(f"checkpoint.keep must be an integer >= 1, got {self.keep!r}")


class Checkpointer:
    """Saves on an interval (or when forced), keeps the newest `keep`, restores verified and sharded.

    `every_steps=0` saves only when forced (end of run, SIGTERM).
    """

    def __init__(self, directory: str | os.PathLike, *, every_steps: int, keep: int, async_save: bool = True):
        self.options = CheckpointOptions(every_steps=every_steps, keep=keep, async_save=async_save)
        self.directory = pathlib.Path(directory).absolute()
        # Preemption policy: on multi-host jobs jax's preemption notice makes every host save the
        # same step, which a per-process SIGTERM handler cannot guarantee.
        policies = ocp.checkpoint_managers
        chosen = [policies.PreemptionCheckpointingPolicy()]
        if every_steps:
            chosen.append(policies.FixedIntervalPolicy(every_steps))
        policy = policies.AnySavePolicy(chosen)
        self._manager = ocp.CheckpointManager(
            self.directory,
            item_names=(STATE_ITEM, FINGERPRINT_ITEM),
            options=ocp.CheckpointManagerOptions(
                save_decision_policy=policy,
                max_to_keep=keep,
                enable_async_checkpointing=async_save,
                cleanup_tmp_directories=False,  # see the module docstring; done in restore()
                create=True,
            ),
        )

    # ---------------------------------------------------------------- queries
    def latest_step(self) -> int | None:
        """Newest step listed on disk (finished saves and the one in flight); not yet verified."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    # ---------------------------------------------------------------- saving
    def maybe_save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves `state` as `step` if step is a multiple of every_steps, or if `force`.

        Returns whether a save was started. With async_save it returns once the arrays are copied
        off the devices (the state may then be donated); the write finishes in the background.
        A step that is not newer than the newest checkpoint is never saved (e.g. a forced save at
        the end of a run that already saved its last step on the interval).
        """
        latest = self._manager.latest_step()
        if latest is not None and step <= latest:
            return False
        if not force and not self._manager.should_save(step):
            return False
        args = ocp.args.Composite(
            **{
                STATE_ITEM: ocp.args.StandardSave(state),
                FINGERPRINT_ITEM: ocp.args.JsonSave(fingerprint(state)),
            }
        )
        return bool(self._manager.save(step, args=args, force=True))

    def wait(self) -> None:
        """Blocks until every started save is written and committed (and re-raises its error)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves, then releases orbax's threads."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- restoring
    def restore(self, abstract_state: Any) -> tuple[int, Any] | None:
        """Restores the newest readable checkpoint into the shardings of `abstract_state`.

        `abstract_state` mirrors the saved pytree: `jax.ShapeDtypeStruct`s carrying `.sharding`
        (arrays come back directly sharded; the saved sharding does not matter) and ints for int
        leaves. Returns (step, state), or None when the directory holds no checkpoint. A newest
        checkpoint that cannot be read or fails verification is warned about, moved to
        `<directory>/corrupt/`, and the previous one is tried. If none can be restored the error of
        the newest is raised and nothing is moved (a wrong `abstract_state` is not corruption).
        """
        self.wait()
        self._remove_unfinished_saves()
        self._manager.reload()  # a killed attempt may have written since we opened the directory
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return None
        failed: list[tuple[int, BaseException]] = []
        for step in steps:
            try:
                state = self._restore_verified(step, abstract_state, self.directory)
            except Exception as e:  # tensorstore raises bare Exception for a torn file
                failed.append((step, e))
                warnings.warn(
                    f"checkpoint step {step} in {self.directory} cannot be restored "
                    f"({type(e).__name__}: {_first_line(e)}); falling back to the previous checkpoint",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            if failed:
                self._quarantine([s for s, _ in failed])
            return step, state
        newest_step, newest_error = failed[0]
        raise RuntimeError(
            f"no checkpoint in {self.directory} can be restored (tried steps {steps}); the newest, "
            f"step {newest_step}, failed with {type(newest_error).__name__}: {_first_line(newest_error)}. "
            "If the state's structure changed, start a new workdir; if the files are damaged, move "
            "the step directories away"
        ) from newest_error

    def restore_step(
        self, step: int, abstract_state: Any, *, directory: str | os.PathLike | None = None
    ) -> Any:
        """Restores exactly `step` (no fallback), from `directory` if given, else this one.

        For branching: a WSD cooldown run starts from step s of its trunk run's checkpoints
        (`directory=<trunk workdir>/checkpoints`) and then saves into its own directory.
        """
        source = pathlib.Path(directory).absolute() if directory is not None else self.directory
        available = ocp.utils.checkpoint_steps(source)
        if step not in available:
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {source} (available steps: {sorted(available)})"
            )
        self.wait()
        return self._restore_verified(step, abstract_state, source)

    # ---------------------------------------------------------------- internals
    def _restore_verified(self, step: int, abstract_state: Any, directory: pathlib.Path) -> Any:
        args = ocp.args.Composite(
            **{
                STATE_ITEM: ocp.args.StandardRestore(abstract_state),
                FINGERPRINT_ITEM: ocp.args.JsonRestore(),
            }
        )
        restored = self._manager.restore(step, args=args, directory=directory)
        state, expected = restored[STATE_ITEM], restored[FINGERPRINT_ITEM]
        if expected is None:
            raise CheckpointCorruptError(f"step {step} has no fingerprint file")
        got = fingerprint(state)
        if got != expected:
            bad = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
            raise CheckpointCorruptError(f"fingerprint mismatch in leaves {bad[:5]}")
        return state

    def _remove_unfinished_saves(self) -> None:
        """Deletes `<step>.orbax-checkpoint-tmp*` dirs left by a killed save (never listed as steps)."""
        if jax.process_index() == 0 and self.directory.is_dir():
            for path in self.directory.iterdir():
                if _TMP_STEP_DIR.fullmatch(path.name) and path.is_dir():
                    log.warning("removing unfinished checkpoint save %s", path)
                    shutil.rmtree(path, ignore_errors=True)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("scaling.checkpoint.remove_unfinished")

    def _quarantine(self, steps: list[int]) -> None:
        if jax.process_index() == 0:
            target_root = self.directory / CORRUPT_SUBDIR
            target_root.mkdir(exist_ok=True)
            for step in steps:
                src = self.directory / str(step)
                if src.exists():
                    dst = target_root / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
                    os.replace(src, dst)
                    log.warning("moved corrupt checkpoint step %d to %s", step, dst)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"scaling.checkpoint.quarantine.{steps}")
        self._manager.reload()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


# ------------------------------------------------------------------ fingerprints
_UINT_OF_SIZE = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _leaf_words_u32(x: jax.Array) -> jax.Array:
    """The raw bits of `x` as uint32 words (64-bit dtypes give a trailing axis of 2 words)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = x.dtype.itemsize
    if size == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if size not in _UINT_OF_SIZE:
        raise TypeError(f"cannot fingerprint dtype {x.dtype}")
    return jax.lax.bitcast_convert_type(x, _UINT_OF_SIZE[size]).astype(jnp.uint32)


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
    """Two uint32 sums: plain and weighted by an odd hash of the position.

    Odd weights mean any single flipped bit changes both sums (w * 2^k != 0 mod 2^32); the position
    weights catch swapped or shifted blocks, which a plain sum cannot see.
    """
    u = _leaf_words_u32(x)
    linear = jnp.zeros(u.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(u.ndim)):
        linear = linear + jax.lax.broadcasted_iota(jnp.uint32, u.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= u.shape[axis]
    weight = (linear * jnp.uint32(0x9E3779B1)) | jnp.uint32(1)
    return jnp.stack([jnp.sum(u, dtype=jnp.uint32), jnp.sum(u * weight, dtype=jnp.uint32)])


@jax.jit
def _fingerprint_arrays(leaves: list[jax.Array]) -> list[jax.Array]:
    return [_leaf_fingerprint(x) for x in leaves]


def fingerprint(state: Any) -> dict[str, list]:
    """{leaf path: [dtype, shape, sum, weighted sum]} for arrays, {path: ["int", value]} for ints."""
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    out: dict[str, list] = {}
    arrays: list[tuple[str, Any]] = []
    for path, leaf in flat:
        key = jax.tree_util.keystr(path)
        if isinstance(leaf, (bool, int, np.integer)) and not isinstance(leaf, np.ndarray):
            out[key] = ["int", int(leaf)]
        elif isinstance(leaf, float):
            out[key] = ["float", float(leaf).hex()]
        else:
            arrays.append((key, leaf))
    sums = _fingerprint_arrays([leaf for _, leaf in arrays])
    for (key, leaf), s in zip(arrays, sums):
        # The result is replicated; read the local copy (a multi-process global array is not
        # fully addressable, so np.asarray(s) would fail there).
        local = np.asarray(s.addressable_data(0)) if isinstance(s, jax.Array) else np.asarray(s)
        out[key] = [str(leaf.dtype), list(leaf.shape), int(local[0]), int(local[1])]
    return out
