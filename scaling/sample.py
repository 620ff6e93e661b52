"""Sample text from a trained run's checkpoint.

    python -m scaling.sample --workdir=RUN --prompt="def " [--prompt=... | --prompt-file=PATH]
        [--max-new-tokens=200] [--temperature=0.8] [--top-k=40] [--top-p=0.95] [--seed=0]
        [--num-samples=4] [--step=K] [--output=PATH]

Every prompt is a document start (the end-of-document token, then its bytes), as in training; with
no prompt the model writes a document from nothing. All prompts x samples run as one batch on the
run's mesh: one prefill, then a compiled decode step over the key/value cache (`models/decode.py`),
until every row has ended its document or produced --max-new-tokens. Temperature 0 is greedy.
Prints each sample, then one summary line; --output also writes them as JSON (atomically).
Exit codes: 0 done, 2 bad input (a prompt longer than the model's seq_len, no checkpoint, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from models import decode
from models.config import ConfigError
from models.sampling import Sampling
from plumbing import atomic
from plumbing.cli import Parser, one_line
from scaling import trained as trained_lib, xla_flags
from scaling.data import ByteTokenizer

EXIT_OK, EXIT_INPUT = 0, 2
DEFAULT_MAX_NEW = 200


@dataclasses.dataclass(frozen=True)
class Sample:
    prompt: str
    completion: str
    new_tokens: int  # the end-of-document token included when it ended the sample
    stop: str  # "eod" (the model ended the document) | "length" (--max-new-tokens reached)


@dataclasses.dataclass(frozen=True)
class Request:
    prompts: tuple[str, ...]
    num_samples: int
    max_new: int | None  # None: DEFAULT_MAX_NEW, or fewer if the model's seq_len leaves fewer
    sampling: Sampling
    seed: int


def encode_prompt(text: str, tokenizer: ByteTokenizer) -> np.ndarray:
    return np.concatenate([[tokenizer.eod_id], tokenizer.encode(text)]).astype(np.int32)


def run(model: trained_lib.Trained, req: Request) -> tuple[list[Sample], dict]:
    """All prompts x samples as one batch; returns the samples and timings."""
    tokenizer = ByteTokenizer()
    rows = [encode_prompt(p, tokenizer) for p in req.prompts for _ in range(req.num_samples)]
    padded = decode.left_pad(rows, pad_id=tokenizer.eod_id)
    gen = decode.compiled_generate(max_new=req.max_new, sampling=req.sampling, eod_id=tokenizer.eod_id)
    args = (model.comp.graphdef, model.params, jnp.asarray(padded.tokens_BxP),
            jnp.asarray(padded.start_B), jax.random.key(req.seed))
    with jax.set_mesh(model.comp.mesh):
        t0 = time.perf_counter()
        compiled = gen.lower(*args).compile()
        t1 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args[1:]))
        t2 = time.perf_counter()
    tokens_BxN, n_new_B = np.asarray(jax.device_get(out.tokens_BxN)), np.asarray(jax.device_get(out.n_new_B))
    samples = []
    for r, prompt in enumerate(p for p in req.prompts for _ in range(req.num_samples)):
        new = tokens_BxN[r, :n_new_B[r]]
        ended = len(new) > 0 and new[-1] == tokenizer.eod_id
        completion = tokenizer.decode(new).decode("utf-8", errors="replace")
        samples.append(Sample(prompt, completion, int(n_new_B[r]), "eod" if ended else "length"))
    return samples, {"compile_s": t1 - t0, "generate_s": t2 - t1, "new_tokens": int(n_new_B.sum())}


def parse(argv: list[str]) -> argparse.Namespace:
    p = Parser(raises=ConfigError, prog="python -m scaling.sample", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="run directory (run.json, checkpoints/)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for several)")
    p.add_argument("--prompt-file", action="append", default=[], help="a file whose text is one prompt")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"limit per sample (default: {DEFAULT_MAX_NEW}, or what the model's seq_len leaves)")
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy (argmax)")
    p.add_argument("--top-k", type=int, default=40, help="0: off")
    p.add_argument("--top-p", type=float, default=0.95, help="1: off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=4, help="samples per prompt")
    p.add_argument("--output", default=None, help="also write the samples to this JSON file")
    return p.parse_args(argv)


def request_of(args: argparse.Namespace) -> Request:
    prompts = list(args.prompt)
    for path in args.prompt_file:
        file = pathlib.Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"--prompt-file={path} does not exist or is not a file")
        prompts.append(file.read_text(encoding="utf-8", errors="replace"))
    if args.num_samples < 1:
        raise ConfigError(f"--num-samples={args.num_samples} must be >= 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens={args.max_new_tokens} must be >= 1")
    try:
        sampling = Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    except ConfigError as e:  # name the flag, not the field: 'top_k=-1 ...' -> '--top-k=-1 ...'
        field, rest = str(e).split("=", 1)
        raise ConfigError(f"--{field.replace('_', '-')}={rest}") from None
    return Request(tuple(prompts or [""]), args.num_samples, args.max_new_tokens, sampling, args.seed)


def check_fits(info: trained_lib.RunInfo, req: Request) -> Request:
    """The request with its token limit set (an unset one: the default, or what the model leaves)."""
    longest = max(len(encode_prompt(p, ByteTokenizer())) for p in req.prompts)
    if req.max_new is None:
        room = info.model_cfg.seq_len - longest + 1
        req = dataclasses.replace(req, max_new=min(DEFAULT_MAX_NEW, room) if room >= 1 else DEFAULT_MAX_NEW)
    try:
        decode.check_fits(info.model_cfg, longest, req.max_new)
    except ConfigError as e:
        raise ConfigError(f"{e}".replace("max_new_tokens", "--max-new-tokens")) from None
    return req


def show(samples: list[Sample], req: Request, timing: dict, model: trained_lib.Trained) -> str:
    lines = []
    for i, s in enumerate(samples):
        prompt_no = i // req.num_samples + 1
        stop = "ended its document" if s.stop == "eod" else "reached --max-new-tokens"
        lines.append(f"--- sample {i % req.num_samples + 1}/{req.num_samples} of prompt {prompt_no} "
                     f"| {s.new_tokens} new tokens, {stop} ---")
        lines.append(s.prompt + s.completion)
    sp = req.sampling
    how = "greedy" if sp.greedy else f"temperature {sp.temperature:g}, top-k {sp.top_k}, top-p {sp.top_p:g}"
    rate = timing["new_tokens"] / max(timing["generate_s"], 1e-9)
    lines.append(f"{len(samples)} samples from step {model.step} of {model.info.workdir.name} | "
                 f"{timing['new_tokens']:,} new tokens in {timing['generate_s']:.2f} s "
                 f"({rate:,.0f} tok/s; compile {timing['compile_s']:.1f} s) | {how}, seed {req.seed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    xla_flags.apply_defaults()
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv)
        req = request_of(args)
        info = trained_lib.read(args.workdir)
        req = check_fits(info, req)
        step = trained_lib.checkpoint_step(info, args.step)
    except (ConfigError, trained_lib.RunError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_INPUT
    model = trained_lib.load(info, step)
    samples, timing = run(model, req)
    if jax.process_index() == 0:
        print(show(samples, req, timing, model), flush=True)
        if args.output:
            atomic.write_json(args.output, {
                "workdir": str(info.workdir), "step": step, "seed": req.seed,
                "sampling": dataclasses.asdict(req.sampling), "max_new_tokens": req.max_new,
                "samples": [dataclasses.asdict(s) for s in samples], **timing})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
