"""Train-step throughput against the device's own matmul speed, measured in one process.

    python bench/train_throughput.py                # ~10M-parameter model, f32, on the default device
    python bench/train_throughput.py --preset=gpu   # >= 350M parameters, bf16 (on a GPU)
    python bench/train_throughput.py --plan=studies/isoflop_gpu/plan.json --run=C6e+18-N8.53e+07

Prints tokens/s, model FLOP/s (Chinchilla App. F count, attention counted as non-causal as in PaLM's
MFU), the matmul FLOP/s this device reaches at the same dtype under the trainer's XLA flags
(scaling/xla_flags.py) and under XLA's defaults (a second process, timed in the same rounds), the
step's FLOP/s over the better of the two, the time the loop waited for data over step time (the
trainer's batches: built and placed by scaling/data/prefetch.py), the allocator and the share of CPU
time spent in the kernel (scaling/allocator.py: the bench, like the trainer, restarts itself under
tcmalloc where it is installed), and MFU against the device's peak where it is known. Machines vary
hour to hour: only the ratios from one run mean much.

`--plan/--run` times one planned run as the launcher would hand it to the trainer (its config file,
model shape, batch, micro-batches and remat) and sets its memory beside what planned it: the bytes
per device `scaling.memory` estimated, XLA's own figure for the compiled step and, on accelerators,
the device's measured peak.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from models.transformer import attention_kernel  # noqa: E402
from scaling import allocator, flops, memory, step as step_lib, validate, xla_flags  # noqa: E402
from scaling.config import default_config  # noqa: E402
from scaling.data.prefetch import Prefetcher  # noqa: E402
from scaling.sharding import make_mesh  # noqa: E402

_USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")  # before the trainer's defaults are added

PRESETS = {
    # n_layer, d_model, n_heads, seq_len, global_batch, dtype, remat
    "cpu": dict(n_layer=8, d_model=320, n_heads=5, seq_len=256, global_batch=16, dtype="float32"),
    # 352M parameters (12·28·1024² non-embedding): the size the H100 target names.
    "gpu": dict(n_layer=28, d_model=1024, n_heads=8, seq_len=2048, global_batch=16,
                dtype="bfloat16"),
}


def matmul_flops_per_s(n: int, dtype, repeats: int) -> float:
    """Best-of-`repeats` FLOP/s of an n x n x n matmul chain (the device's practical peak)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype) / n ** 0.5

    @jax.jit
    def chain(a, b):
        for _ in range(4):  # several dependent matmuls amortise dispatch
            a = a @ b
        return a

    chain(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        chain(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 4 * 2 * n ** 3 / best


class DefaultFlagsMatmul:
    """The same matmul in a second process under XLA's default flags (XLA reads its flags once per
    process), asked line by line so that its timings alternate with ours in the same rounds."""

    def __init__(self, n: int, dtype: str):
        env = {**os.environ, "XLA_FLAGS": _USER_XLA_FLAGS}
        self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--matmul_worker",
                                       f"--matmul={n}", f"--dtype={dtype}"], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def measure(self, repeats: int) -> float:
        self._proc.stdin.write(f"{repeats}\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the default-flags matmul process died")
        return float(line)

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=60)


def _matmul_worker(n: int, dtype: str) -> None:
    for line in sys.stdin:
        print(matmul_flops_per_s(n, jnp.dtype(dtype), int(line)), flush=True)


def _batches(c, model_cfg, batch: int, data: str):
    """This process's rows of step i, from `data`: the stdlib corpus through scaling.data (what
    the trainer reads), or random tokens where TFDS is not installed (some GPU images)."""
    if data == "stdlib":
        from scaling import data as data_lib
        pipe = data_lib.load(c.data, seq_len=model_cfg.seq_len, seed=0, global_batch=batch,
                             eval_tokens=0, eval_batch=batch, vocab_size=model_cfg.vocab_size)

        def local(i):
            b = pipe.train_batch(i)
            return {"inputs": b.inputs, "targets": b.targets, "weights": b.weights}
    else:
        def local(i):
            t = np.random.default_rng(i).integers(0, 257, (batch, model_cfg.seq_len + 1), dtype=np.int32)
            return {"inputs": t[:, :-1], "targets": t[:, 1:],
                    "weights": np.ones((batch, model_cfg.seq_len), np.float32)}
    return local


def planned_run(plan_file: str, run_id: str):
    """`run_id` of a plan.json (experiments.study_dir.load_plan), its study config file taken from
    this checkout's experiments/configs when it was planned in another one."""
    import dataclasses
    import pathlib

    from experiments.study_dir import load_plan
    spec = next((r for r in load_plan(pathlib.Path(plan_file).parent).runs if r.run_id == run_id), None)
    if spec is None:
        raise SystemExit(f"--run={run_id}: not in {plan_file}")
    config_file = pathlib.Path(spec.config_file)
    if not config_file.exists():
        config_file = pathlib.Path(__file__).resolve().parents[1] / "experiments/configs" / config_file.name
    return dataclasses.replace(spec, config_file=str(config_file))


def plan_run_config(plan_file: str, run_id: str):
    """The config the launcher gives the trainer for `run_id` of a plan.json."""
    from experiments.plan import load_file_config
    from experiments.planning.specs import run_config
    spec = planned_run(plan_file, run_id)
    return run_config(load_file_config(spec.config_file), spec)


def print_trainer_argv(plan_file: str, run_id: str) -> None:
    """The trainer's command line for the run, as the launcher builds it (workdir PLAN_DIR/runs/ID)."""
    import pathlib
    import shlex

    from experiments.executors.worker import trainer_argv
    print(shlex.join(trainer_argv(pathlib.Path(plan_file).parent, planned_run(plan_file, run_id))[1:]))


def _config(args, on_gpu: bool):
    """(run config, global batch, micro-batches) of a preset or a planned run."""
    if args.plan:
        c = plan_run_config(args.plan, args.run)
        c.data.dataset, c.data.data_dir = "stdlib", ""  # what this machine has (batches only)
        if args.attention != "auto":
            c.model.attention = args.attention
        if args.scan is not None:
            c.model.scan_layers = args.scan
        if args.remat:
            c.model.remat = True
        return c, int(c.train.global_batch), int(c.train.grad_accum)
    preset = dict(PRESETS[args.preset or ("gpu" if on_gpu else "cpu")])
    batch = preset.pop("global_batch")
    c = default_config()
    c.model.update(**preset, vocab_size=264, scan_layers=bool(args.scan), remat=args.remat,
                   attention=args.attention)
    c.train.update(global_batch=batch, steps=1000, warmup_steps=10)
    return c, batch, 1


def _memory_lines(c, model_cfg, batch: int, accum: int, step) -> list[str]:
    """scaling.memory's planned bytes per device, XLA's figure and the device's measured peak."""
    plan = memory.step_memory(model_cfg, global_batch=batch, grad_accum=accum,
                              mesh_shape=(1, 1, 1), rules=c.mesh.rules).total
    xla = memory.xla_peak_bytes(step)
    stats = jax.devices()[0].memory_stats() or {}
    line = (f"memory            scaling.memory {plan / 1e9:.2f} GB per device; XLA's buffer assignment "
            f"{xla / 1e9:.2f} GB (estimate / XLA {plan / xla:.2f})")
    if "peak_bytes_in_use" in stats:
        peak = stats["peak_bytes_in_use"]
        line += f"; device peak {peak / 1e9:.2f} GB (estimate / peak {plan / peak:.2f})"
        if "bytes_limit" in stats:
            line += f" of {stats['bytes_limit'] / 1e9:.1f} GB"
    return [line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="model size (default: gpu on a GPU, else cpu)")
    parser.add_argument("--steps", type=int, default=3, help="timed train steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of matmul and step timing")
    parser.add_argument("--matmul", type=int, default=0, help="matmul size (0: 2048 CPU, 8192 GPU)")
    parser.add_argument("--scan", action=argparse.BooleanOptionalAction, default=None,
                        help="scan over layers (default: off for presets, the plan's for --run)")
    parser.add_argument("--remat", action="store_true", help="rematerialise each block (also a planned run's)")
    parser.add_argument("--attention", default="auto", help="model.attention: auto, cudnn, dot_product, einsum")
    parser.add_argument("--data", choices=("auto", "stdlib", "random"), default="auto",
                        help="batches: the stdlib corpus (needs TFDS) or random tokens; auto: stdlib if TFDS imports")
    parser.add_argument("--plan", default="", help="a study's plan.json: time one of its runs (--run)")
    parser.add_argument("--run", default="", help="run id in --plan")
    parser.add_argument("--trainer_argv", action="store_true",
                        help="with --plan/--run: print the trainer's arguments for the run and exit")
    parser.add_argument("--matmul_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.matmul_worker:
        return _matmul_worker(args.matmul, args.dtype)
    if args.trainer_argv:
        return print_trainer_argv(args.plan, args.run)
    xla_flags.apply_defaults()  # measure the step the trainer runs
    on_gpu = jax.default_backend() == "gpu"
    if bool(args.plan) != bool(args.run):
        parser.error("--plan and --run go together")
    c, batch, accum = _config(args, on_gpu)
    data = args.data
    if data == "auto":
        try:
            import tensorflow_datasets  # noqa: F401
            data = "stdlib"
        except ImportError:
            data = "random"

    c.mesh.shape = (1, 1, 1)
    devices = jax.devices()[:1]
    model_cfg = validate.check(c, 1)
    comp = step_lib.build(c, model_cfg, make_mesh((1, 1, 1), devices))
    counts = flops.count_params(model_cfg)
    per_token = flops.flops_per_token(model_cfg)[flops.MFU_CONVENTION]
    dtype = jnp.dtype(model_cfg.dtype)
    mm_size = args.matmul or (8192 if on_gpu else 2048)
    local = _batches(c, model_cfg, batch, data)
    total_steps = 1 + args.rounds * args.steps

    def place(i):
        return step_lib.global_batch(local(i), comp.batch_sharding, batch, grad_accum=accum)

    rows = {k: [] for k in ("step_s", "mm_ours", "mm_default", "ratio", "wait")}
    # The trainer's flags (scaling/xla_flags.py) are XLA:CPU flags: elsewhere both settings are one,
    # and a second process would take its own share of the accelerator's memory.
    default_mm = DefaultFlagsMatmul(mm_size, dtype.name) if jax.default_backend() == "cpu" else None
    with jax.set_mesh(comp.mesh), Prefetcher(place, 0, total_steps) as batches:
        state = comp.init()
        step = comp.train_step.lower(state, batches.peek(), comp.schedule(0)).compile()
        state, m = step(state, batches.get(0), comp.schedule(0))
        jax.block_until_ready(m)
        i = 1
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        # This machine's speed drifts 2x within seconds: time the step and both matmuls in
        # alternation and take the median of the per-round ratios.
        for _ in range(args.rounds):
            mm_ours = matmul_flops_per_s(mm_size, dtype, repeats=3)
            mm_default = default_mm.measure(repeats=3) if default_mm else mm_ours
            waited, t0 = batches.wait_s, time.perf_counter()
            for _ in range(args.steps):
                state, m = step(state, batches.get(i), comp.schedule(i))
                i += 1
            jax.block_until_ready(m)
            elapsed = time.perf_counter() - t0
            step_s = elapsed / args.steps
            rows["step_s"].append(step_s)
            rows["mm_ours"].append(mm_ours)
            rows["mm_default"].append(mm_default)
            rows["ratio"].append(batch * model_cfg.seq_len / step_s * per_token / max(mm_ours, mm_default))
            rows["wait"].append((batches.wait_s - waited) / elapsed)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    sys_s, user_s = usage1.ru_stime - usage0.ru_stime, usage1.ru_utime - usage0.ru_utime
    kernel_share = sys_s / max(sys_s + user_s, 1e-9)
    if default_mm:
        default_mm.close()
    step_s, mm_ours, mm_default, ratio, wait = (float(np.median(rows[k])) for k in rows)
    tok_s = batch * model_cfg.seq_len / step_s
    model_flops = tok_s * per_token
    kind = jax.devices()[0].device_kind
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as f:
        load = f.read().strip() or "unknown"
    print(f"device            {kind} ({jax.default_backend()}), dtype {model_cfg.dtype}, load {load}")
    preload = os.environ.get("LD_PRELOAD", "")
    print(f"allocator         {'tcmalloc (' + preload + ')' if 'tcmalloc' in preload else 'system malloc'}"
          f"; kernel time {kernel_share:.0%} of the process's CPU time in the timed rounds")
    print(f"model             {counts.total / 1e6:.2f}M params ({counts.non_embedding / 1e6:.2f}M "
          f"non-embedding), L={model_cfg.seq_len}, batch {batch} in {accum} micro-batches, "
          f"scan={model_cfg.scan_layers}, remat={model_cfg.remat}, attention={c.model.attention} -> "
          f"{attention_kernel(model_cfg)}{', run ' + args.run if args.run else ''}")
    print(f"step time         {step_s * 1e3:.1f} ms")
    print(f"tokens/s          {tok_s:,.0f}")
    print(f"model FLOP/s      {model_flops / 1e9:,.1f} GFLOP/s ({per_token / 1e6:.1f} MFLOP/token)")
    print(f"matmul FLOP/s     {mm_ours / 1e9:,.1f} GFLOP/s trainer's XLA flags, {mm_default / 1e9:,.1f} "
          f"XLA defaults ({mm_size}^3 {dtype.name}, same device, same rounds)")
    print(f"ratio             {ratio:.1%} of the better matmul (median of {args.rounds} rounds: "
          f"{', '.join(f'{r:.0%}' for r in rows['ratio'])}); target >= 60%")
    print(f"data wait         {wait:.2%} of step time ({data} batches, prefetched; rounds: "
          f"{', '.join(f'{w:.1%}' for w in rows['wait'])}); target < 2%")
    for line in _memory_lines(c, model_cfg, batch, accum, step):
        print(line)
    peak = flops.peak_flops(kind, model_cfg.dtype)
    if peak:
        print(f"MFU               {model_flops / peak:.1%} of {peak / 1e12:.0f} TFLOP/s peak")


if __name__ == "__main__":
    allocator.reexec()  # as the trainer runs (scaling/train.py), and its matmul worker with it
    main()
