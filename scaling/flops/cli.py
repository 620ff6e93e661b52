"""`python -m scaling.flops`: training compute of a model, in FLOPs, PF-days and device-hours.

    python -m scaling.flops --params 175B --tokens 300B                     # size only: C = 6ND
    python -m scaling.flops --n_layer 12 --d_model 768 --n_heads 12 --seq_len 2048 \\
        --vocab_size 50257 --tokens 300B [--mlp gelu] [--tie_embeddings]    # every convention
    python -m scaling.flops ... --mfu 0.4 --device "NVIDIA H100 80GB HBM3" --dtype bfloat16
    python -m scaling.flops ... --peak-flops 312e12                          # any accelerator
    python -m scaling.flops --gpt3                                           # Brown et al. 2020, Table D.1

From a parameter count alone only C = 6·N·D is defined; a shape gives every convention of
scaling.flops.CONVENTIONS (Chinchilla App. F counts attention and logits as well). Device-hours are
FLOPs / (peak × MFU): the time the budget takes at that utilisation, summed over devices.
"""
from __future__ import annotations

import argparse
import dataclasses

from models.config import ConfigError, ModelConfig
from plumbing.cli import Parser
from scaling import flops

SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
# Brown et al. 2020, Table D.1: (model, parameters in millions as printed; all trained on 300B tokens).
GPT3_TABLE_D1 = (("GPT-3 Small", 125), ("GPT-3 Medium", 356), ("GPT-3 Large", 760), ("GPT-3 XL", 1320),
                 ("GPT-3 2.7B", 2650), ("GPT-3 6.7B", 6660), ("GPT-3 13B", 12850), ("GPT-3 175B", 174600))
GPT3_TOKENS = 300e9


def count(text: str) -> float:
    """'175B', '300e9', '1.3M' -> a number (k, M, B/G, T suffixes)."""
    t = text.strip().lower().replace(",", "").replace("_", "")
    scale = SUFFIX.get(t[-1:], None)
    try:
        value = float(t[:-1]) * scale if scale else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count like 175B, 3e11 or 1.3M, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {text!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Row:
    convention: str
    flops_per_token: float
    flops: float
    pf_days: float
    device_hours: float | None


def rows(per_token: dict[str, float], tokens: float, peak: float | None, mfu: float) -> list[Row]:
    return [Row(conv, k, k * tokens, flops.pf_days(k * tokens),
                flops.device_hours(k * tokens, peak, mfu) if peak else None) for conv, k in per_token.items()]


def gpt3_rows() -> list[tuple[str, float, float, float]]:
    """(model, N, C = 6 N D, PF-days) for every row of GPT-3's Table D.1."""
    out = []
    for name, millions in GPT3_TABLE_D1:
        c = flops.params_flops(millions * 1e6, GPT3_TOKENS)
        out.append((name, millions * 1e6, c, flops.pf_days(c)))
    return out


def build_parser() -> Parser:
    p = Parser(prog="python -m scaling.flops", description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=count, help="training tokens D (e.g. 300B)")
    p.add_argument("--params", type=count, help="total parameters N, when no shape is given (C = 6ND)")
    shape = p.add_argument_group("model shape (models.config.ModelConfig; gives every convention)")
    for name in ("n_layer", "d_model", "n_heads", "head_dim", "d_ff", "vocab_size", "seq_len"):
        shape.add_argument(f"--{name}", type=int, help=f"default: ModelConfig's ({getattr(ModelConfig, name)})"
                           if name in ("head_dim", "d_ff", "vocab_size", "seq_len") else None)
    shape.add_argument("--mlp", choices=("swiglu", "gelu"))
    shape.add_argument("--tie_embeddings", action="store_true")
    dev = p.add_argument_group("device-hours")
    dev.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation, 0-1 (default 0.4)")
    dev.add_argument("--device", default="NVIDIA H100 80GB HBM3",
                     help=f"device kind for the peak (known: {sorted({k for k, _ in flops.PEAK_FLOPS})})")
    dev.add_argument("--dtype", default="bfloat16", help="compute dtype for the peak (default bfloat16)")
    dev.add_argument("--peak-flops", type=float, help="peak FLOP/s per device (overrides --device/--dtype)")
    p.add_argument("--gpt3", action="store_true", help="print Brown et al. 2020 Table D.1 recomputed")
    return p


def model_config(args) -> ModelConfig | None:
    given = {k: getattr(args, k) for k in ("n_layer", "d_model", "n_heads", "head_dim", "d_ff", "vocab_size",
                                           "seq_len", "mlp") if getattr(args, k) is not None}
    if not given:
        return None
    missing = [k for k in ("n_layer", "d_model", "n_heads") if k not in given]
    if missing:
        raise ConfigError(f"--{missing[0]} is needed with a model shape (or give --params alone)")
    return ModelConfig(tie_embeddings=args.tie_embeddings, **given)


def format_rows(table: list[Row], peak_label: str) -> str:
    head = f"{'convention':<18}{'FLOPs/token':>14}{'FLOPs':>12}{'PF-days':>14}{'device-hours':>16}"
    lines = [head]
    for r in table:
        hours = f"{r.device_hours:>16,.4g}" if r.device_hours is not None else f"{'-':>16}"
        lines.append(f"{r.convention:<18}{r.flops_per_token:>14.4g}{r.flops:>12.3e}{r.pf_days:>14,.4g}{hours}")
    lines.append(f"device-hours: {peak_label}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.gpt3:
        print(f"{'model':<14}{'N':>10}{'tokens':>9}{'FLOPs (6ND)':>14}{'PF-days':>11}")
        for name, n, c, days in gpt3_rows():
            print(f"{name:<14}{n / 1e6:>9,.0f}M{GPT3_TOKENS:>9.3g}{c:>14.3e}{days:>11,.4g}")
        return 0
    if args.tokens is None:
        p.error("--tokens is required (e.g. --tokens 300B)")
    if not 0 < args.mfu <= 1:
        p.error(f"--mfu={args.mfu}: give a fraction in (0, 1], e.g. 0.4")
    try:
        cfg = model_config(args)
    except ConfigError as e:
        p.error(str(e))
    if cfg is None and args.params is None:
        p.error("give --params N or a model shape (--n_layer, --d_model, --n_heads, ...)")
    if cfg is not None and args.params is not None:
        p.error("give --params or a model shape, not both (the shape fixes N)")
    peak = args.peak_flops or flops.peak_flops(args.device, args.dtype)
    label = (f"{peak / 1e12:,.4g} TFLOP/s per device"
             f"{'' if args.peak_flops else f' ({args.device}, {args.dtype})'} at MFU {args.mfu:.0%}"
             if peak else f"no peak known for ({args.device!r}, {args.dtype}); pass --peak-flops")
    if cfg is None:
        print(f"N = {args.params:,.0f} parameters (size only: C = 6ND; give the shape for the other conventions), "
              f"D = {args.tokens:.4g} tokens")
        table = rows({"6n": 6.0 * args.params}, args.tokens, peak, args.mfu)
    else:
        pc = flops.count_params(cfg)
        print(f"N = {pc.total:,} parameters ({pc.non_embedding:,} non-embedding), seq_len {cfg.seq_len}, "
              f"D = {args.tokens:.4g} tokens")
        table = rows(flops.flops_per_token(cfg), args.tokens, peak, args.mfu)
    print(format_rows(table, label))
    return 0
