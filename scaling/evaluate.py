"""Score a trained run's checkpoint on text: loss in nats/token, bits/byte and perplexity.

    python -m scaling.evaluate --workdir=RUN [--step=K] [--dataset=NAME [--split=S] | --text-file=PATH]
                               [--tokens=N] [--output=PATH]

Default: the run's own validation tokens, the very eval set the trainer scores, through the same
mesh, sharded eval step and averaging (`scaling.eval_loss.evaluate`), so at the final step it reproduces
run.json's `final_eval_loss`. `--dataset` scores a split of another dataset (or of the run's with
`--split`); `--text-file` one plain file as a single document. Prints one line and writes the result
atomically to RUN/evals/<source>-step<K>.json (or --output). Exit codes: 0 done, 2 bad input.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import re
import sys
import time

import jax
import numpy as np

from models.config import ConfigError
from plumbing import atomic
from plumbing.cli import Parser, one_line
from scaling import data as data_lib, eval_loss, trained as trained_lib, xla_flags
from scaling.data import batches, packing
from scaling.metrics import to_json_value

EXIT_OK, EXIT_INPUT = 0, 2
EVALS_DIR = "evals"


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "validation" (the run's own eval set) | "dataset" | "text_file"
    dataset: str | None = None
    split: str | None = None
    path: str | None = None

    @property
    def label(self) -> str:
        """File-name-safe name of the source: the JSON is RUN/evals/<label>-step<K>.json."""
        if self.kind == "validation":
            return "validation"
        raw = f"{self.dataset}-{self.split}" if self.kind == "dataset" else f"file-{pathlib.Path(self.path).name}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)

    def describe(self) -> str:
        if self.kind == "text_file":
            return self.path
        return f"{self.dataset} {self.split}"


@dataclasses.dataclass(frozen=True)
class Score:
    step: int
    source: Source
    tokens: int
    bytes: int
    loss: float  # nats per target token (EOD targets included, as in training)
    loss_se: float | None  # standard error, clustered by document (scaling.eval_loss.eval_standard_error)
    bits_per_byte: float
    perplexity: float  # exp(loss): per token, and with byte tokens nearly per byte
    true_loss: float | None  # the source's exact optimal loss, when it knows it (synthetic:markov)


def _positive_tokens(requested: int | None, available: int, default: int, what: str) -> int:
    if requested is None:
        return min(default, available)
    if requested > available:
        raise ConfigError(f"--tokens={requested} exceeds the {available} tokens of {what}: lower --tokens")
    return requested


def dataset_data(info: trained_lib.RunInfo, source: Source, tokens: int | None) -> data_lib.DataPipeline:
    """The eval set of `source` as the trainer builds it (evenly spaced sequences, fixed weights)."""
    config = info.config
    data_cfg = config.data.copy_and_resolve_references()
    if source.kind == "dataset":
        # Pack only the scored split: it stands in for the training split, which is never read.
        data_cfg.dataset, data_cfg.train_split, data_cfg.eval_split = source.dataset, source.split, source.split

    def load(eval_tokens):
        return data_lib.load(data_cfg, seq_len=info.model_cfg.seq_len, seed=config.seed,
                             global_batch=config.train.global_batch, eval_tokens=eval_tokens,
                             eval_batch=config.eval.batch, vocab_size=info.model_cfg.vocab_size)

    if source.kind == "validation" and tokens is None:
        return load(config.eval.tokens)  # exactly the trainer's call
    available = load(0).eval.n_targets
    return load(_positive_tokens(tokens, available, config.eval.tokens, source.describe()))


def text_file_data(path: str, seq_len: int, tokens: int | None, eval_batch: int) -> data_lib.DataPipeline:
    """One file as one document, packed as training packs text: EOD, its bytes, EOD."""
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"--text-file={path} does not exist or is not a file")
    tokenizer = data_lib.ByteTokenizer()
    ids = tokenizer.encode(file.read_bytes())
    if not len(ids):
        raise ConfigError(f"--text-file={path} is empty: nothing to score")
    eod = np.asarray([tokenizer.eod_id], np.uint16)
    packed = packing.Packed(np.concatenate([eod, ids, eod]), seq_len)
    n = _positive_tokens(tokens, packed.n_targets, packed.n_targets, path)
    eval_set = batches.eval_set(packed, n, eval_batch)
    # No eval_docs: eval_loss.evaluate then clusters the standard error by sequence (one document's
    # sequences taken as independent, which understates it for text whose difficulty drifts slowly).
    return data_lib.DataPipeline(
        dataset=f"file:{path}", tokenizer=tokenizer, train=packed, eval=packed, seed=0,
        global_batch=eval_batch, eval_set=eval_set,
        eval_bytes=sum(tokenizer.count_bytes(b.targets, b.weights) for b in eval_set),
        eval_tokens=n)


def score(model: trained_lib.Trained, source: Source, data: data_lib.DataPipeline) -> Score:
    eval_batches = data.eval_batches(jax.process_index(), jax.process_count())
    with jax.set_mesh(model.comp.mesh):
        ev = eval_loss.evaluate(model.comp, {"params": model.params}, data, eval_batches)
    loss = ev["eval_loss"]
    return Score(step=model.step, source=source, tokens=int(ev.get("eval_tokens", data.eval_tokens)),
                 bytes=int(data.eval_bytes), loss=loss, loss_se=ev.get("eval_loss_se"),
                 bits_per_byte=ev["eval_bits_per_byte"], perplexity=math.exp(loss) if loss < 700 else math.inf,
                 true_loss=data.true_loss)


def record(info: trained_lib.RunInfo, s: Score, elapsed_s: float) -> dict:
    out = {"workdir": str(info.workdir), **dataclasses.asdict(s), "elapsed_s": elapsed_s}
    if s.source.kind == "validation" and s.step == info.record.steps:
        out["run_final_eval_loss"] = info.record.final_eval_loss
    return to_json_value(out)


def line(info: trained_lib.RunInfo, s: Score, path: pathlib.Path) -> str:
    se = f" ± {s.loss_se:.4f}" if s.loss_se is not None else ""
    true = f" (E* {s.true_loss:.4f})" if s.true_loss is not None else ""
    return (f"step {s.step} of {info.workdir.name} | {s.source.describe()}, {s.tokens:,} tokens "
            f"({s.bytes:,} bytes) | loss {s.loss:.4f}{se} nats/token{true} | "
            f"{s.bits_per_byte:.4f} bits/byte | perplexity {s.perplexity:.3f} | {path}")


def parse(argv: list[str]) -> argparse.Namespace:
    p = Parser(raises=ConfigError, prog="python -m scaling.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="run directory (run.json, checkpoints/)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dataset", default=None, help="another dataset: stdlib, synthetic:markov, tfds:NAME")
    where.add_argument("--text-file", default=None, help="score one plain-text file")
    p.add_argument("--split", default=None, help="split of --dataset (default: the run's eval split)")
    p.add_argument("--tokens", type=int, default=None,
                   help="target tokens to score (default: the run's eval.tokens; a whole --text-file)")
    p.add_argument("--output", default=None, help="JSON path (default: RUN/evals/<source>-step<K>.json)")
    args = p.parse_args(argv)
    if args.tokens is not None and args.tokens < 1:
        raise ConfigError(f"--tokens={args.tokens} must be >= 1")
    if args.split is not None and args.text_file is not None:
        raise ConfigError("--split applies to a dataset, not to --text-file")
    return args


def source_of(args: argparse.Namespace, info: trained_lib.RunInfo) -> Source:
    if args.text_file is not None:
        return Source("text_file", path=args.text_file)
    if args.dataset is None and args.split is None:
        return Source("validation", dataset=info.config.data.dataset, split=info.config.data.eval_split)
    dataset = args.dataset or info.config.data.dataset
    data_lib.validate_dataset_name(dataset)
    return Source("dataset", dataset=dataset, split=args.split or info.config.data.eval_split)


def main(argv: list[str] | None = None) -> int:
    xla_flags.apply_defaults()  # the trainer's numerics
    argv = sys.argv[1:] if argv is None else argv
    t0 = time.time()
    try:
        args = parse(argv)
        info = trained_lib.read(args.workdir)
        source = source_of(args, info)
        step = trained_lib.checkpoint_step(info, args.step)
        if source.kind == "text_file":
            data = text_file_data(source.path, info.model_cfg.seq_len, args.tokens, info.config.eval.batch)
        else:
            data = dataset_data(info, source, args.tokens)
    except (ConfigError, trained_lib.RunError, data_lib.DataError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_INPUT
    result = score(trained_lib.load(info, step), source, data)
    path = pathlib.Path(args.output) if args.output else info.workdir / EVALS_DIR / f"{source.label}-step{step}.json"
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, record(info, result, time.time() - t0))
        print(line(info, result, path), flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
