"""One training run: `python -m scaling.train --config=experiments/configs/train_tiny.py --workdir=DIR`.

Validate everything, build the mesh and the compiled steps, restore the newest checkpoint of the
workdir if there is one, then loop: the batch for step i is a pure function of (seed, i), so resuming
needs nothing but the checkpointed state. The host reads device results only at log, eval and
checkpoint steps, and a thread builds and places the next batches, so dispatch runs ahead of the
device. Exit codes: 0 completed, 2 invalid config, 3 diverged, 143 interrupted by SIGTERM.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import sys
import time

if __name__ == "__main__":  # before the heavy imports below (~1.5 s): this process may be replaced
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))  # nothing written yet: just go
    from scaling import allocator
    allocator.reexec()  # under tcmalloc where installed: XLA:CPU's per-step temporaries

import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import multihost_utils

from plumbing import atomic, faults
from plumbing.cli import one_line
from scaling import data as data_lib
from scaling import eval_loss, flops, metrics, run_record, step as step_lib, validate, xla_flags
from scaling.checkpoint import Checkpointer
from scaling.data.prefetch import Prefetcher
from scaling.exit_codes import EXIT_CONFIG, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_OK
from scaling.sharding import make_mesh


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # completed | diverged | interrupted
    step: int
    final_train_loss: float | None
    final_eval_loss: float | None


class Terminated(BaseException):
    """SIGTERM before the run's own handler is installed: nothing to save yet, exit 143."""


def _terminate(*_):
    raise Terminated


class Preemption:
    """Whether the run stops (and saves) after a step: the same step on every process.

    One process: a SIGTERM handler sets a flag. Several: jax.distributed's preemption sync manager
    owns SIGTERM (its handler tells the coordination service, which tells every process); each
    process reports every step and all of them get True at the same step, max(steps reached) + 1
    (`multihost_utils.reached_preemption_sync_point`). A per-process flag would have one process
    save while another ran the next step's collectives, and hang. Asked every step, host-side only:
    no device round trip.
    """

    def __init__(self):
        self.received = False
        self._multi = jax.process_count() > 1
        if not self._multi:  # a Python handler would replace the sync manager's
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_):
        self.received = True

    def reached(self, step: int) -> bool:
        if self._multi:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.received

    def requested(self) -> bool:
        """A stop asked of this process, outside the step loop (e.g. mid-evaluation). Several
        processes must stop at one agreed step, so there they finish what they are doing instead."""
        return self.received and not self._multi


def _peak_flops(dtype: str) -> float | None:
    return flops.peak_flops(jax.devices()[0].device_kind, dtype)


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


@dataclasses.dataclass
class _Run:
    """What one run's loop reads; fixed once the run is built."""
    config: ml_collections.ConfigDict
    workdir: pathlib.Path
    data: data_lib.DataPipeline
    comp: step_lib.Compiled
    ckpt: Checkpointer
    writer: metrics.MetricsWriter
    steps: int
    tokens_per_step: int
    per_token: dict[str, float]
    peak_flops: float | None  # of one device (`metrics.mfu` divides by all of them)
    is_writer: bool
    eval_batches: list


@dataclasses.dataclass
class _Progress:
    """What the loop changes and `_finish` records."""
    status: str = "completed"
    step: int = 0
    last_train: float | None = None
    last_eval: float | None = None
    step_time_s: float = 0.0  # pure step time of the whole run, earlier attempts' included
    compile_s: float = 0.0


class _Clock:
    """Step time between two fetches from the device: wall time over the steps it covered.

    `restart` after evaluations and saves: their time is not step time. The prefetcher's wait
    over the same span is the share of it the loop stood waiting for data.
    """

    def __init__(self, step: int, batches: Prefetcher):
        self._batches = batches
        self.restart(step)

    def restart(self, step: int) -> None:
        self._t, self._step, self._wait = time.perf_counter(), step, self._batches.wait_s

    def lap(self, step: int) -> tuple[float, float, float]:
        """(seconds per step, data wait fraction, seconds) since the last lap or restart."""
        now = time.perf_counter()
        elapsed, waited = now - self._t, self._batches.wait_s - self._wait
        per_step = elapsed / max(step - self._step, 1)
        self._t, self._step, self._wait = now, step, self._batches.wait_s
        return per_step, waited / elapsed if elapsed > 0 else 0.0, elapsed


@jax.jit
def _count_nonfinite(count: jax.Array, loss: jax.Array) -> jax.Array:
    return count + jnp.logical_not(jnp.isfinite(loss)).astype(jnp.int32)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
        init_from: str | None = None, init_step: int | None = None) -> Outcome:
    # Everything that can be wrong with the input is found here, before any compilation.
    model_cfg = validate.check(config, jax.device_count(), jax.process_count())
    workdir = validate.check_workdir(str(workdir))
    if jax.process_index() == 0:
        atomic.sweep_temps(workdir)  # a write killed half-way in an earlier attempt
    data = data_lib.load(config.data, seq_len=model_cfg.seq_len, seed=config.seed,
                         global_batch=config.train.global_batch, eval_tokens=config.eval.tokens,
                         eval_batch=config.eval.batch, vocab_size=model_cfg.vocab_size)
    counts = flops.count_params(model_cfg)
    per_token = flops.flops_per_token(model_cfg)
    tokens_per_step = config.train.global_batch * model_cfg.seq_len
    steps = int(config.train.steps)

    mesh = make_mesh(config.mesh.shape)
    comp = step_lib.build(config, model_cfg, mesh)
    ckpt = Checkpointer(workdir / "checkpoints", every_steps=config.checkpoint.every_steps,
                        keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
    record = run_record.RunRecord(
        status="running", config=config.to_dict(), params=dataclasses.asdict(counts),
        flops_per_token=per_token, steps=steps, tokens=steps * tokens_per_step,
        unique_tokens=data.train_tokens_per_epoch, epochs=steps * tokens_per_step / data.train_tokens_per_epoch,
        environment=run_record.Environment(**metrics.environment_info()),
        true_loss=data.true_loss)  # the source's exact optimal loss on this eval set (synthetic:markov)
    is_writer = jax.process_index() == 0
    started = time.time()

    # From here on a SIGTERM (during the restore or the compile too) ends the run at its next step,
    # saved, with exit 143: the launcher's stop must not lose a run that had not started stepping.
    preemption = Preemption()
    with jax.set_mesh(mesh):
        faults.point("restore")
        start, state, restored = _restore(ckpt, comp, init_from, init_step)
        previous = run_record.read(workdir) if restored else None
        if previous and previous.completed and start >= steps:
            print(f"{workdir} already completed {steps} steps; nothing to do", flush=True)
            ckpt.close()
            return Outcome("completed", start, previous.final_train_loss, previous.final_eval_loss)
        writer = metrics.MetricsWriter(workdir, resume_step=start if restored else None,
                                       process_index=jax.process_index())
        faults.point("before_run_json")
        if is_writer:
            run_record.write(workdir, record)
        peak = _peak_flops(model_cfg.dtype)
        r = _Run(config, workdir, data, comp, ckpt, writer, steps, tokens_per_step, per_token,
                 peak, is_writer,
                 data.eval_batches(jax.process_index(), jax.process_count()))
        progress = _Progress(step=start,
                             last_train=_last_train_loss(workdir, start) if restored else None,
                             step_time_s=float(previous and previous.step_time_s or 0.0))
        if start < steps:  # a run killed after its last checkpoint only has its final eval to do
            state = _loop(r, state, start, progress, preemption)
        ev = _finish(r, state, progress, preemption)
    faults.point("after_last_checkpoint")  # every save committed, run.json still says running
    if is_writer:
        run_record.write(workdir, _final_record(record, progress, ev, time.time() - started))
    final_step = progress.step if progress.status != "diverged" else -1
    return Outcome(progress.status, final_step, progress.last_train, progress.last_eval)


def _final_record(record: run_record.RunRecord, progress: _Progress, ev: dict | None,
                  wall_s: float) -> run_record.RunRecord:
    """The run record as the run ends: its status, losses and times (the eval's details if done)."""
    completed = progress.status == "completed"
    record = dataclasses.replace(
        record, status=progress.status, final_train_loss=progress.last_train,
        final_eval_loss=progress.last_eval if completed else None,
        wall_time_s=wall_s, compile_time_s=progress.compile_s, step_time_s=progress.step_time_s,
        tokens_per_s=record.tokens / progress.step_time_s if progress.step_time_s and completed else None)
    if not completed:
        return record
    return dataclasses.replace(record, final_eval_bits_per_byte=ev["eval_bits_per_byte"],
                               final_eval_loss_se=ev["eval_loss_se"], eval_tokens_used=int(ev["eval_tokens"]))


def _restore(ckpt: Checkpointer, comp: step_lib.Compiled, init_from: str | None,
             init_step: int | None) -> tuple[int, step_lib.State, bool]:
    """(first step, state, whether it came from a checkpoint): the workdir's newest, else the
    branch point of `init_from` (a WSD cooldown starts from its trunk), else a fresh init."""
    restored = ckpt.restore(comp.abstract_state)
    if restored is None and init_from:
        restored = (init_step, ckpt.restore_step(init_step, comp.abstract_state,
                                                 directory=init_from))
    if restored is None:
        return 0, comp.init(), False
    return restored[0], restored[1], True


def _loop(r: _Run, state: step_lib.State, start: int, progress: _Progress,
          preemption: Preemption) -> step_lib.State:
    """Steps start..steps-1. The host touches device results only at log, eval and save steps, so
    between them dispatch runs ahead of the device; batches are built and placed by a thread."""
    cfg = r.config
    log_every, ckpt_every, eval_every = (max(cfg.log.every_steps, 1), cfg.checkpoint.every_steps,
                                         cfg.eval.every_steps)

    def place(i: int) -> dict:
        local = eval_loss.arrays(r.data.train_batch(i, jax.process_index(), jax.process_count()))
        return step_lib.global_batch(local, r.comp.batch_sharding, cfg.train.global_batch,
                                     cfg.train.grad_accum)

    with Prefetcher(place, start, r.steps) as batches:
        # Compile ahead of time so step times below are pure step times.
        t0 = time.time()
        faults.point("compile")
        train_step = r.comp.train_step.lower(state, batches.peek(), r.comp.schedule(start)).compile()
        progress.compile_s = time.time() - t0
        clock = _Clock(start, batches)
        nonfinite = jnp.zeros((), jnp.int32)  # steps since the last check whose loss was not finite
        for i in range(start, r.steps):
            lr = r.comp.schedule(i)
            state, dev = train_step(state, batches.get(i), lr)
            faults.point("mid_step")
            nonfinite = _count_nonfinite(nonfinite, dev["train_loss"])
            done = i + 1
            stop = preemption.reached(done) and done < r.steps  # asked every step, on every process
            log = done % log_every == 0 or done == r.steps
            save = done == r.steps or stop or bool(ckpt_every) and done % ckpt_every == 0
            evaluate_now = bool(eval_every) and done % eval_every == 0 and done < r.steps
            if not (log or save or evaluate_now):
                continue
            bad, m = jax.device_get((nonfinite, dev))
            nonfinite = jnp.zeros((), jnp.int32)
            per_step, wait_frac, elapsed = clock.lap(done)
            progress.step_time_s += elapsed
            if bad:
                progress.status = "diverged"
                break
            progress.step, progress.last_train = done, float(m["train_loss"])
            if log:
                _log(r, done, {k: float(v) for k, v in m.items()}, lr, per_step, wait_frac)
            if evaluate_now:
                ev = eval_loss.evaluate(r.comp, state, r.data, r.eval_batches)
                progress.last_eval = ev["eval_loss"]
                # The lr too, so every row of curves.csv has one (the annealing law's S1, S2) when
                # evals fall between log steps.
                r.writer.write(done, tokens=done * r.tokens_per_step, lr=float(lr), **ev)
            # A finite loss at step s says nothing of the weights its update produced: check those
            # too. Never checkpoint a diverged state.
            if save and not bool(_all_finite(state["params"])):
                progress.status = "diverged"
                break
            if save and r.ckpt.maybe_save(done, state, force=done == r.steps or stop):
                faults.point("checkpoint_write")
            if stop:
                progress.status = "interrupted"
                break
            clock.restart(done)  # eval and checkpoint time is not step time
    return state


def _log(r: _Run, done: int, m: dict, lr, per_step: float, wait_frac: float) -> None:
    tok_s = r.tokens_per_step / per_step
    mfu = metrics.mfu(tok_s, r.per_token[flops.MFU_CONVENTION], r.peak_flops, jax.device_count())
    r.writer.write(done, tokens=done * r.tokens_per_step,
                   flops=done * r.tokens_per_step * r.per_token[config_convention(r.config)],
                   step_time=per_step, tokens_per_s=tok_s, mfu=mfu, data_wait_frac=wait_frac,
                   lr=float(lr), **m)
    if r.is_writer:
        print(f"step {done}/{r.steps} | loss {m['train_loss']:.4f} | {tok_s:,.0f} tok/s | "
              f"ETA {_fmt_s((r.steps - done) * per_step)}", flush=True)


def _finish(r: _Run, state: step_lib.State, progress: _Progress,
            preemption: Preemption) -> dict | None:
    """The final evaluation of a completed run; every save committed before the process exits.

    A stop asked during the final evaluation ends the run `interrupted` at its last step: the
    restart restores that checkpoint and only evaluates."""
    ev = None
    if progress.status == "completed":
        def stop() -> bool:
            faults.point("final_eval")
            return preemption.requested()
        ev = eval_loss.evaluate(r.comp, state, r.data, r.eval_batches, stop=stop)
        if ev is None:
            progress.status = "interrupted"
        else:
            progress.last_eval = ev["eval_loss"]
            r.writer.write(r.steps, tokens=r.steps * r.tokens_per_step, **ev)
    r.ckpt.wait()
    r.ckpt.close()
    r.writer.close()
    if progress.status == "interrupted":
        print(f"preempted: saved step {progress.step}; exiting {EXIT_INTERRUPTED}", flush=True)
    return ev


def _last_train_loss(workdir: pathlib.Path, step: int) -> float | None:
    rows = [r for r in metrics.read_metrics(workdir) if "train_loss" in r and r["step"] <= step]
    return rows[-1]["train_loss"] if rows else None


def config_convention(config) -> str:
    """The convention cumulative FLOPs are logged in: the study's, else the Appendix-F count."""
    study = config.get("study")
    return study.get("flop_convention", "chinchilla") if study is not None else "chinchilla"


def _fmt_s(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _parse(argv: list[str]):
    """The run's flags (absl FlagValues) with the config loaded; raises on bad input."""
    from absl import flags as absl_flags
    from ml_collections import config_flags

    fv = absl_flags.FlagValues()
    # sys_argv: config_flags reads --config.* overrides from sys.argv unless told otherwise.
    config_flags.DEFINE_config_file("config", None, "ml_collections config file (get_config()).",
                                    flag_values=fv, lock_config=True, sys_argv=argv)
    absl_flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, run.json.", flag_values=fv)
    absl_flags.DEFINE_string("init_from", None, "Checkpoint directory to start from when the "
                             "workdir has none (WSD cooldown branches).", flag_values=fv)
    absl_flags.DEFINE_integer("init_step", None, "Step of --init_from to start from.", flag_values=fv)
    absl_flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-host "
                             "runs (jax.distributed); 'auto' detects SLURM/TPU/MPI.", flag_values=fv)
    absl_flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.", flag_values=fv)
    absl_flags.DEFINE_integer("process_id", None, "This process's index.", flag_values=fv)
    absl_flags.DEFINE_integer("cpu_devices", None, "Number of CPU devices to expose (testing).", flag_values=fv)
    validate.check_config_file(argv, "experiments/configs/train_tiny.py")
    fv(argv)
    if fv.workdir is None:
        raise validate.ConfigError("--workdir is required: the run's directory")
    if fv["config"].value is None:
        raise validate.ConfigError("--config is required: e.g. experiments/configs/train_tiny.py")
    if (fv.init_from is None) != (fv.init_step is None):
        raise validate.ConfigError("--init_from and --init_step go together")
    return fv


def _start_jax(fv) -> None:
    """The compilation cache, the CPU device count and, for multi-host runs, jax.distributed."""
    # Runs of one study share shapes (the lr is an input of the step, not a constant), so a
    # persistent compilation cache turns most of a grid's compiles into cache hits. Every program is
    # kept, however fast it compiled: a small model's dozen sub-second compiles are most of a
    # restart's time (a 40-step tiny run on 2 cores: 6.9 CPU s with JAX's 1 s floor, 4.9 without).
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", str(pathlib.Path("~/.cache/scaling/jax").expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if fv.cpu_devices:
        jax.config.update("jax_num_cpu_devices", fv.cpu_devices)
    if fv.coordinator_address:
        # CPU processes need a collectives backend to talk to each other; GPUs use NCCL regardless.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if fv.coordinator_address == "auto":
        jax.distributed.initialize()
    elif fv.coordinator_address:
        jax.distributed.initialize(coordinator_address=fv.coordinator_address,
                                   num_processes=fv.num_processes, process_id=fv.process_id)


def main(argv: list[str] | None = None) -> int:
    from absl import flags as absl_flags

    xla_flags.apply_defaults()  # before the first computation creates XLA's backend
    signal.signal(signal.SIGTERM, _terminate)  # until run() installs the handler that saves
    try:
        fv = _parse(sys.argv if argv is None else argv)
        config = fv.config
    except (absl_flags.Error, validate.ConfigError, AttributeError, KeyError, ValueError,
            TypeError, FileNotFoundError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    _start_jax(fv)
    try:
        outcome = run(config, fv.workdir, init_from=fv.init_from, init_step=fv.init_step)
    except (validate.ConfigError, data_lib.DataError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    except Terminated:  # before anything was trained: run.json (if written) stays `running`
        print(f"terminated before the first step; exiting {EXIT_INTERRUPTED}", flush=True)
        return EXIT_INTERRUPTED
    except BaseException:
        _mark_failed(fv.workdir)
        raise
    return {"completed": EXIT_OK, "diverged": EXIT_DIVERGED, "interrupted": EXIT_INTERRUPTED}[outcome.status]


def _mark_failed(workdir: str) -> None:
    """Record a crash in run.json so launchers and collectors see it; never hides the exception."""
    if jax.process_index() != 0:
        return
    try:
        record = run_record.read(workdir)
        run_record.write(workdir, dataclasses.replace(record, status="failed") if record
                         else run_record.RunRecord(status="failed"))
    except Exception:  # the original exception matters more than this bookkeeping
        pass


if __name__ == "__main__":
    sys.exit(main())
