"""Train-step throughput against the device's own matmul speed, measured in one process.

    python bench/train_throughput.py                # ~10M-parameter model, f32, on the default device
    python bench/train_throughput.py --preset=gpu   # >= 350M parameters, bf16 (on a GPU)

Prints tokens/s, model FLOP/s (Chinchilla App. F count, attention counted as non-causal as in PaLM's
MFU), the matmul FLOP/s this device reaches at the same dtype, their ratio, and MFU against the
device's peak where it is known. Machines vary hour to hour: only the ratio from one run means much.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from models.transformer import attention_kernel  # noqa: E402
from scaling import flops, step as step_lib, validate, xla_flags  # noqa: E402
from scaling.config import default_config  # noqa: E402
from scaling.sharding import make_mesh  # noqa: E402

xla_flags.apply_defaults()  # measure the step the trainer runs

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="model size (default: gpu on a GPU, else cpu)")
    parser.add_argument("--steps", type=int, default=3, help="timed train steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of matmul and step timing")
    parser.add_argument("--matmul", type=int, default=0, help="matmul size (0: 2048 CPU, 8192 GPU)")
    parser.add_argument("--scan", action="store_true", help="scan over layers")
    parser.add_argument("--remat", action="store_true", help="rematerialise each block")
    parser.add_argument("--attention", default="auto", help="model.attention: auto, cudnn, dot_product, einsum")
    args = parser.parse_args()
    on_gpu = jax.default_backend() == "gpu"
    preset = dict(PRESETS[args.preset or ("gpu" if on_gpu else "cpu")])
    batch = preset.pop("global_batch")

    c = default_config()
    c.model.update(**preset, vocab_size=264, scan_layers=args.scan, remat=args.remat,
                   attention=args.attention)
    c.train.update(global_batch=batch, steps=1000, warmup_steps=10)
    c.mesh.shape = (1, 1, 1)
    devices = jax.devices()[:1]
    model_cfg = validate.check(c, 1)
    comp = step_lib.build(c, model_cfg, make_mesh((1, 1, 1), devices))
    counts = flops.count_params(model_cfg)
    per_token = flops.flops_per_token(model_cfg)[flops.MFU_CONVENTION]
    tokens = np.random.default_rng(0).integers(0, 257, (batch, model_cfg.seq_len + 1)).astype(np.int32)
    local = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
             "weights": np.ones((batch, model_cfg.seq_len), np.float32)}
    dtype = jnp.dtype(model_cfg.dtype)
    mm_size = args.matmul or (8192 if on_gpu else 2048)
    ratios, step_times, mm_rates = [], [], []
    with jax.set_mesh(comp.mesh):
        state = comp.init()
        b = step_lib.global_batch(local, comp.batch_sharding, batch, grad_accum=1)
        step = comp.train_step.lower(state, b, comp.schedule(0)).compile()
        state, m = step(state, b, comp.schedule(0))
        jax.block_until_ready(m)
        # This machine's speed drifts 2x within seconds: time the step and the matmul in
        # alternation and take the median of the per-round ratios.
        for _ in range(args.rounds):
            mm = matmul_flops_per_s(mm_size, dtype, repeats=3)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                state, m = step(state, b, comp.schedule(0))
            jax.block_until_ready(m)
            step_s = (time.perf_counter() - t0) / args.steps
            ratios.append(batch * model_cfg.seq_len / step_s * per_token / mm)
            step_times.append(step_s)
            mm_rates.append(mm)
    step_s, mm, ratio = (float(np.median(x)) for x in (step_times, mm_rates, ratios))
    tok_s = batch * model_cfg.seq_len / step_s
    model_flops = tok_s * per_token
    kind = jax.devices()[0].device_kind
    print(f"device            {kind} ({jax.default_backend()}), dtype {model_cfg.dtype}")
    print(f"model             {counts.total / 1e6:.2f}M params ({counts.non_embedding / 1e6:.2f}M "
          f"non-embedding), L={model_cfg.seq_len}, batch {batch}, scan={args.scan}, remat={args.remat}, attention={args.attention} -> {attention_kernel(model_cfg)}")
    print(f"step time         {step_s * 1e3:.1f} ms")
    print(f"tokens/s          {tok_s:,.0f}")
    print(f"model FLOP/s      {model_flops / 1e9:,.1f} GFLOP/s ({per_token / 1e6:.1f} MFLOP/token)")
    print(f"matmul FLOP/s     {mm / 1e9:,.1f} GFLOP/s ({dtype.name}, same device, same run)")
    print(f"ratio             {ratio:.1%} (median of {args.rounds} rounds: "
          f"{', '.join(f'{r:.0%}' for r in ratios)})")
    peak = flops.peak_flops(kind, model_cfg.dtype)
    if peak:
        print(f"MFU               {model_flops / peak:.1%} of {peak / 1e12:.0f} TFLOP/s peak")


if __name__ == "__main__":
    main()
