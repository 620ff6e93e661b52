"""Decoding with the key/value cache against recomputing the whole prefix for every new token.

    python bench/decode_throughput.py              # train_throughput's CPU preset shape (~10M params)
    python bench/decode_throughput.py --batch=8 --new-tokens=256

Both decode greedily from a one-token prompt (the document start) for --new-tokens tokens, never
stopping early, and must produce the same tokens. The cached path is `models.decode.generate` (one
jitted prefill + while_loop over the decode step), as `python -m scaling.sample` runs it. The
baseline feeds the whole prefix through the training forward pass for each token, with the prefix
padded up to a multiple of --bucket so that it compiles a few programs rather than one per length
(it therefore does up to bucket-1 extra positions per step; compile time is excluded from both).

It also prints the decode step's memory traffic: the bytes it must read per step (every weight but
the embedding rows it does not gather, and the whole cache, which attention reads at every slot)
over the step time, against the device's peak where known (GPUs) and against the read rate of a
large matrix-vector product measured in the same run (the step's own kind of op). Machines vary hour to hour: only ratios from one run mean much.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from bench.train_throughput import PRESETS  # noqa: E402
from models import decode, kv_cache  # noqa: E402
from models.config import ModelConfig  # noqa: E402
from models.sampling import Sampling  # noqa: E402
from models.transformer import Transformer  # noqa: E402
from scaling import flops, xla_flags  # noqa: E402

xla_flags.apply_defaults()  # the numerics the trainer and the sampler run with

EOD = 256
# Peak HBM bandwidth, bytes/s, from the vendors' data sheets.
PEAK_MEMORY_BANDWIDTH = {
    "NVIDIA H100 80GB HBM3": 3.35e12, "NVIDIA H100 PCIe": 2.0e12, "NVIDIA H100 NVL": 3.9e12,
    "NVIDIA H200": 4.8e12, "NVIDIA A100-SXM4-80GB": 2.039e12, "NVIDIA A100-SXM4-40GB": 1.555e12,
    "NVIDIA A100 80GB PCIe": 1.935e12, "NVIDIA A100-PCIE-40GB": 1.555e12, "NVIDIA L4": 300e9,
    "NVIDIA A10G": 600e9,
}


@dataclasses.dataclass(frozen=True)
class Timing:
    seconds: float  # median over repeats of one full generation of `new` tokens
    tokens_BxN: np.ndarray


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def cached(graphdef, params, batch: int, new: int, repeats: int) -> Timing:
    gen = decode.compiled_generate(max_new=new, sampling=Sampling(temperature=0.0), eod_id=-1)
    args = (jnp.full((batch, 1), EOD, jnp.int32), jnp.zeros((batch,), jnp.int32), jax.random.key(0))
    compiled = gen.lower(graphdef, params, *args).compile()
    seconds, out = _median_time(lambda: compiled(params, *args), repeats)
    return Timing(seconds, np.asarray(out.tokens_BxN))


def recompute(graphdef, params, batch: int, new: int, bucket: int, repeats: int) -> Timing:
    """Greedy decoding by a full forward pass over the (padded) prefix for every token."""
    def step(L, params, buf_BxT, t):
        logits_BxLxV = nnx.merge(graphdef, params)(buf_BxT[:, :L])  # causal: the padding is unseen
        token_B = jnp.argmax(jax.lax.dynamic_index_in_dim(logits_BxLxV, t, axis=1, keepdims=False), -1)
        return jax.lax.dynamic_update_index_in_dim(buf_BxT, token_B.astype(jnp.int32), t + 1, axis=1)

    total = new + 1

    def padded(t):  # the prefix [0, t] rounded up to a whole bucket (one compiled step per length)
        return min(-(-(t + 1) // bucket) * bucket, total - 1)

    lengths = sorted({padded(t) for t in range(new)})
    buf0 = jnp.full((batch, total), EOD, jnp.int32)
    steps = {L: jax.jit(lambda p, b, t, L=L: step(L, p, b, t)).lower(params, buf0, 0).compile()
             for L in lengths}

    def run():
        buf = buf0
        for t in range(new):  # token t + 1 from the prefix [0, t]
            buf = steps[padded(t)](params, buf, t)
        return buf

    seconds, buf = _median_time(run, repeats)
    return Timing(seconds, np.asarray(buf[:, 1:]))


def decode_step_bytes(cfg: ModelConfig, params, batch: int, slots: int) -> int:
    """Bytes one decode step reads: all weights except the embedding rows it does not gather (when
    the embedding is not also the unembedding), and the keys and values of every cache slot."""
    weights = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    if not cfg.tie_embeddings:
        embed = params["embed"]
        weights -= (embed.shape[0] - batch) * embed.shape[1] * embed.dtype.itemsize
    cache = jax.eval_shape(lambda: kv_cache.init(cfg, batch, slots))
    return weights + kv_cache.nbytes(cache)


def matvec_bytes_per_s(n: int = 4096, repeats: int = 30) -> float:
    """Best-of-`repeats` read rate of a float32 n x n matrix-vector product (64 MiB at n = 4096):
    the decode step's own kind of op, so the practical ceiling of its memory traffic here. Best of
    many, because on a shared machine any one call may be descheduled."""
    w = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    x = jnp.ones((1, n), jnp.float32)
    matvec = jax.jit(lambda x, w: x @ w)
    jax.block_until_ready(matvec(x, w))
    best = min(_median_time(lambda: matvec(x, w), 1)[0] for _ in range(repeats))
    return n * n * 4 / best


def _loadavg() -> list[str]:
    if not os.path.exists("/proc/loadavg"):
        return []
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--batch", type=int, default=1, help="rows decoded together")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--bucket", type=int, default=32, help="baseline: prefix lengths rounded up to this")
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per method (median)")
    parser.add_argument("--scan", action="store_true", help="scan over layers")
    args = parser.parse_args()
    load_before = _loadavg()
    preset = dict(PRESETS[args.preset])
    preset.pop("global_batch")
    # The cache holds new - 1 positions after the one-token prompt; seq_len must cover them.
    preset["seq_len"] = max(preset["seq_len"], args.new_tokens)
    cfg = ModelConfig(**preset, vocab_size=264, scan_layers=args.scan)
    graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)
    counts = flops.count_params(cfg)

    fast = cached(graphdef, params, args.batch, args.new_tokens, args.repeats)
    slow = recompute(graphdef, params, args.batch, args.new_tokens, args.bucket, args.repeats)
    same = float(np.mean(fast.tokens_BxN == slow.tokens_BxN))
    n_tokens = args.batch * args.new_tokens
    fast_rate, slow_rate = n_tokens / fast.seconds, n_tokens / slow.seconds
    step_s = fast.seconds / args.new_tokens  # the prefill of one token costs about one step
    step_bytes = decode_step_bytes(cfg, params, args.batch, decode.slots_needed(1, args.new_tokens))
    achieved = step_bytes / step_s
    ceiling = matvec_bytes_per_s()
    kind = jax.devices()[0].device_kind
    peak = PEAK_MEMORY_BANDWIDTH.get(kind)
    load_after = _loadavg()

    print(f"device            {kind} ({jax.default_backend()}), dtype {cfg.dtype}")
    print(f"model             {counts.total / 1e6:.2f}M params, {cfg.n_layer} layers, d_model "
          f"{cfg.d_model}, seq_len {cfg.seq_len}, scan={args.scan}")
    print(f"generation        batch {args.batch}, {args.new_tokens} new tokens after a 1-token prompt, greedy")
    print(f"cached decoding   {fast.seconds:.3f} s  {fast_rate:,.1f} tok/s  ({step_s * 1e3:.2f} ms/step)")
    print(f"recompute prefix  {slow.seconds:.3f} s  {slow_rate:,.1f} tok/s  (prefix padded to "
          f"multiples of {args.bucket})")
    print(f"ratio             {fast_rate / slow_rate:.1f}x (target >= 5x); same tokens: {same:.1%}")
    print(f"decode step reads {step_bytes / 1e6:.1f} MB (weights + {args.batch}-row cache) -> "
          f"{achieved / 1e9:.2f} GB/s achieved")
    print(f"matrix-vector     {ceiling / 1e9:.2f} GB/s read by a 64 MiB f32 matvec in this run -> "
          f"decode step at {achieved / ceiling:.0%} of it")
    if peak:
        print(f"memory bandwidth  {achieved / peak:.1%} of the {peak / 1e12:.2f} TB/s peak of {kind}")
    else:
        print(f"memory bandwidth  fraction of peak unmeasured: no peak on record for {kind!r}")
    if load_before:
        print(f"load average      {' '.join(load_before)} before, {' '.join(load_after)} after")


if __name__ == "__main__":
    main()
