"""One training run: `python -m scaling.train --config=experiments/configs/train_tiny.py --workdir=DIR`.

Validate everything, build the mesh and the compiled steps, restore the newest checkpoint of the
workdir if there is one, then loop: the batch for step i is a pure function of (seed, i), so resuming
needs nothing but the checkpointed state. Metrics are fetched one step late so the host never stalls
dispatch. Exit codes: 0 completed, 2 invalid config, 3 diverged, 143 interrupted by SIGTERM.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from scaling import data as data_lib
from scaling import flops, metrics, step as step_lib, validate, xla_flags
from scaling.checkpoint import Checkpointer
from scaling.sharding import make_mesh

EXIT_OK, EXIT_CONFIG, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 2, 3, 143


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # completed | diverged | interrupted
    step: int
    final_train_loss: float | None
    final_eval_loss: float | None


class _Sigterm:
    """Turns SIGTERM into a flag the loop checks after each step (save, then exit cleanly)."""

    def __init__(self):
        self.received = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, *_):
        self.received = True


def _peak_flops(dtype: str) -> float | None:
    return flops.peak_flops(jax.devices()[0].device_kind, dtype)


def evaluate(comp: step_lib.Compiled, state, data, eval_batches) -> dict:
    """Mean eval loss over the fixed eval set, and its standard error (see `eval_standard_error`)."""
    nll_rows, w_rows = [], []
    for local in map(_arrays, eval_batches):
        rows = local["inputs"].shape[0] * jax.process_count()
        batch = step_lib.global_batch(local, comp.eval_batch_sharding, rows)
        n_B, w_B = comp.eval_step(state["params"], batch)  # global rows, replicated
        nll_rows.append(n_B)
        w_rows.append(w_B)
    nll_R = np.concatenate([np.asarray(jax.device_get(n), np.float64) for n in nll_rows])
    w_R = np.concatenate([np.asarray(jax.device_get(w), np.float64) for w in w_rows])
    loss = float(nll_R.sum() / w_R.sum())
    docs_R = np.concatenate(data.eval_docs) if data.eval_docs else np.arange(len(w_R))
    return {"eval_loss": loss, "eval_bits_per_byte": data.bits_per_byte(loss),
            "eval_loss_se": eval_standard_error(nll_R, w_R, docs_R), "eval_tokens": float(w_R.sum())}


def eval_standard_error(nll_R: np.ndarray, w_R: np.ndarray, cluster_R: np.ndarray) -> float | None:
    """Standard error of the ratio mean sum(nll)/sum(w), clustered by document.

    Tokens of one sequence, and sequences of one document, are correlated (a hard file is hard
    throughout), so the eval's rows are grouped by the document their first target is in and the
    groups treated as independent draws: the cluster-robust (linearised) variance of a ratio
    estimator, G/(G-1) * sum_g (NLL_g - L*W_g)^2 / W^2 (Cameron & Miller 2015, eq. 12). With one
    document per row this is the per-sequence estimator. None when fewer than 2 groups.
    """
    keep = w_R > 0
    groups, inverse = np.unique(cluster_R[keep], return_inverse=True)
    if len(groups) < 2:
        return None
    nll_G = np.bincount(inverse, nll_R[keep])
    w_G = np.bincount(inverse, w_R[keep])
    loss = nll_G.sum() / w_G.sum()
    var = len(groups) / (len(groups) - 1) * np.sum((nll_G - loss * w_G) ** 2) / w_G.sum() ** 2
    return float(np.sqrt(var))


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _arrays(batch: data_lib.Batch) -> dict[str, np.ndarray]:
    return {"inputs": batch.inputs, "targets": batch.targets, "weights": batch.weights}


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
        init_from: str | None = None, init_step: int | None = None) -> Outcome:
    # Everything that can be wrong with the input is found here, before any compilation.
    model_cfg = validate.check(config, jax.device_count(), jax.process_count())
    workdir = validate.check_workdir(str(workdir))
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
    record = {
        "status": "running", "config": config.to_dict(), "params": dataclasses.asdict(counts),
        "flops_per_token": per_token, "steps": steps, "tokens": steps * tokens_per_step,
        "final_train_loss": None, "final_eval_loss": None, **metrics.environment_info(),
    }
    if data.true_loss is not None:  # the source's exact optimal loss on this eval set (synthetic:markov)
        record["true_loss"] = data.true_loss
    is_writer = jax.process_index() == 0
    started = time.time()

    with jax.set_mesh(mesh):
        restored = ckpt.restore(comp.abstract_state)
        if restored is None and init_from:
            # A WSD cooldown branch starts from its trunk's state at the branch step.
            restored = (init_step, ckpt.restore_step(init_step, comp.abstract_state,
                                                     directory=init_from))
        if restored is None:
            start, state = 0, comp.init()
        else:
            start, state = restored
        previous = metrics.read_run_json(workdir) if restored else None
        if previous and previous.get("status") == "completed" and start >= steps:
            print(f"{workdir} already completed {steps} steps; nothing to do", flush=True)
            ckpt.close()
            return Outcome("completed", start, previous.get("final_train_loss"),
                           previous.get("final_eval_loss"))
        writer = metrics.MetricsWriter(workdir, resume_step=start if restored else None,
                                       process_index=jax.process_index())
        if is_writer:
            metrics.write_run_json(workdir, record)
        eval_batches = data.eval_batches(jax.process_index(), jax.process_count())

        def local_batch(i):
            return _arrays(data.train_batch(i, jax.process_index(), jax.process_count()))

        batch = step_lib.global_batch(local_batch(start), comp.batch_sharding,
                                      config.train.global_batch, config.train.grad_accum)
        # Compile ahead of time so step times below are pure step times.
        t0 = time.time()
        train_step = comp.train_step.lower(state, batch, comp.schedule(start)).compile()
        compile_s = time.time() - t0
        sigterm = _Sigterm()
        peak = _peak_flops(model_cfg.dtype)
        pending = None  # (step, device metrics) of the step whose results are not fetched yet
        status, last_eval = "completed", None
        last_train = _last_train_loss(workdir, start) if restored else None
        # Pure step time of the whole run: earlier attempts' (as far as they recorded it) + this one's.
        step_time_total = float((previous or {}).get("step_time_s") or 0.0)
        last_t = time.time()

        def settle(pending, dt):
            """Fetch a step's metrics (dt: its wall time); log them; False if the loss is not finite."""
            nonlocal step_time_total, last_train
            i, dev, lr = pending
            m = {k: float(v) for k, v in jax.device_get(dev).items()}
            m["lr"] = float(lr)
            if not math.isfinite(m["train_loss"]):
                return False
            step_time_total += dt
            last_train = m["train_loss"]
            done = i + 1
            if done % max(config.log.every_steps, 1) == 0 or done == steps:
                tok_s = tokens_per_step / dt
                mfu = tok_s * per_token[flops.MFU_CONVENTION] / peak if peak else None
                writer.write(done, tokens=done * tokens_per_step,
                             flops=done * tokens_per_step * per_token[config_convention(config)],
                             step_time=dt, tokens_per_s=tok_s, mfu=mfu, **m)
                eta = (steps - done) * dt
                if is_writer:
                    print(f"step {done}/{steps} | loss {m['train_loss']:.4f} | "
                          f"{tok_s:,.0f} tok/s | ETA {_fmt_s(eta)}", flush=True)
            return True

        for i in range(start, steps):
            lr = comp.schedule(i)
            state, dev_metrics = train_step(state, batch, lr)
            if i + 1 < steps:  # prepare the next batch while the device works
                batch = step_lib.global_batch(local_batch(i + 1), comp.batch_sharding,
                                              config.train.global_batch, config.train.grad_accum)
            if pending is not None:
                now = time.time()
                ok = settle(pending, now - last_t)
                last_t = now
                if not ok:
                    status = "diverged"
                    break
            pending = (i, dev_metrics, lr)
            done = i + 1
            boundary = done == steps or sigterm.received or (
                config.checkpoint.every_steps and done % config.checkpoint.every_steps == 0) or (
                config.eval.every_steps and done % config.eval.every_steps == 0)
            if not boundary:
                continue
            # Settle this step before saving or evaluating: never checkpoint a diverged state.
            now = time.time()
            ok = settle(pending, now - last_t)
            pending = None
            if not ok:
                status = "diverged"
                break
            if config.eval.every_steps and done % config.eval.every_steps == 0 and done < steps:
                ev = evaluate(comp, state, data, eval_batches)
                last_eval = ev["eval_loss"]
                writer.write(done, tokens=done * tokens_per_step, **ev)
            # A finite loss at step s says nothing of the weights its update produced: check those too.
            saving = done == steps or sigterm.received or (
                config.checkpoint.every_steps and done % config.checkpoint.every_steps == 0)
            if saving and not bool(
                    _all_finite(state["params"])):
                status = "diverged"
                break
            ckpt.maybe_save(done, state, force=done == steps or sigterm.received)
            if sigterm.received and done < steps:
                status = "interrupted"
                break
            last_t = time.time()  # eval and checkpoint time is not step time

        if pending is not None and status == "completed":
            if not settle(pending, time.time() - last_t):
                status = "diverged"
        final_step = int(jax.device_get(state["step"])) if status != "diverged" else None
        if status == "completed":
            ev = evaluate(comp, state, data, eval_batches)
            last_eval = ev["eval_loss"]
            writer.write(steps, tokens=steps * tokens_per_step, **ev)
        ckpt.wait()
        ckpt.close()
        writer.close()

    record.update(status=status, final_train_loss=last_train,
                  final_eval_loss=last_eval if status == "completed" else None,
                  wall_time_s=time.time() - started, compile_time_s=compile_s,
                  step_time_s=step_time_total,
                  tokens_per_s=steps * tokens_per_step / step_time_total
                  if step_time_total and status == "completed" else None)
    if status == "completed":
        record["final_eval_bits_per_byte"] = ev["eval_bits_per_byte"]
        record["final_eval_loss_se"] = ev["eval_loss_se"]
        record["eval_tokens_used"] = int(ev["eval_tokens"])
    if is_writer:
        metrics.write_run_json(workdir, record)
    return Outcome(status, final_step if final_step is not None else -1, last_train, last_eval)


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


def main(argv: list[str] | None = None) -> int:
    from absl import flags as absl_flags
    from ml_collections import config_flags

    xla_flags.apply_defaults()  # before the first computation creates XLA's backend
    flag_values = absl_flags.FlagValues()
    argv = sys.argv if argv is None else argv
    # sys_argv: config_flags reads --config.* overrides from sys.argv unless told otherwise.
    config_flags.DEFINE_config_file("config", None, "ml_collections config file (get_config()).",
                                    flag_values=flag_values, lock_config=True, sys_argv=argv)
    absl_flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, run.json.",
                             flag_values=flag_values)
    absl_flags.DEFINE_string("init_from", None, "Checkpoint directory to start from when the "
                             "workdir has none (WSD cooldown branches).", flag_values=flag_values)
    absl_flags.DEFINE_integer("init_step", None, "Step of --init_from to start from.",
                              flag_values=flag_values)
    absl_flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-host "
                             "runs (jax.distributed); 'auto' detects SLURM/TPU/MPI.",
                             flag_values=flag_values)
    absl_flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.",
                              flag_values=flag_values)
    absl_flags.DEFINE_integer("process_id", None, "This process's index.", flag_values=flag_values)
    absl_flags.DEFINE_integer("cpu_devices", None, "Number of CPU devices to expose (testing).",
                              flag_values=flag_values)
    try:
        flag_values(argv)
        if flag_values.workdir is None:
            raise validate.ConfigError("--workdir is required: the run's directory")
        if flag_values["config"].value is None:
            raise validate.ConfigError("--config is required: e.g. experiments/configs/train_tiny.py")
        if (flag_values.init_from is None) != (flag_values.init_step is None):
            raise validate.ConfigError("--init_from and --init_step go together")
        config = flag_values.config
    except (absl_flags.Error, validate.ConfigError, AttributeError, KeyError, ValueError,
            TypeError, FileNotFoundError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG

    # Runs of one study share shapes (the lr is an input of the step, not a constant), so a
    # persistent compilation cache turns most of a grid's compiles into cache hits.
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir",
                          str(pathlib.Path("~/.cache/scaling/jax").expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if flag_values.cpu_devices:
        jax.config.update("jax_num_cpu_devices", flag_values.cpu_devices)
    if flag_values.coordinator_address:
        # CPU processes need a collectives backend to talk to each other; GPUs use NCCL regardless.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if flag_values.coordinator_address == "auto":
        jax.distributed.initialize()
    elif flag_values.coordinator_address:
        jax.distributed.initialize(coordinator_address=flag_values.coordinator_address,
                                   num_processes=flag_values.num_processes,
                                   process_id=flag_values.process_id)
    try:
        outcome = run(config, flag_values.workdir, init_from=flag_values.init_from,
                      init_step=flag_values.init_step)
    except (validate.ConfigError, data_lib.DataError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    except BaseException:
        _mark_failed(flag_values.workdir)
        raise
    return {"completed": EXIT_OK, "diverged": EXIT_DIVERGED,
            "interrupted": EXIT_INTERRUPTED}[outcome.status]


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n")[0].split())


def _mark_failed(workdir: str) -> None:
    """Record a crash in run.json so launchers and collectors see it; never hides the exception."""
    if jax.process_index() != 0:
        return
    try:
        record = metrics.read_run_json(pathlib.Path(workdir)) or {}
        record["status"] = "failed"
        metrics.write_run_json(pathlib.Path(workdir), record)
    except Exception:  # the original exception matters more than this bookkeeping
        pass


if __name__ == "__main__":
    sys.exit(main())
