"""The trainer's one entry: `load(config.data, ...)` -> DataPipeline with batches as pure functions."""
from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np

from scaling.data import batches, markov, markov_corpus, packing, source, subset
from scaling.data.batches import Batch
from scaling.data.errors import DataError
from scaling.data.stdlib_corpus import StdlibConfig
from scaling.data.tokenizer import ByteTokenizer


@dataclasses.dataclass(frozen=True)
class DataPipeline:
    dataset: str
    tokenizer: ByteTokenizer
    train: packing.Packed | subset.Subset  # a Subset under data.unique_tokens (scaling/data/subset.py)
    eval: packing.Packed
    seed: int
    global_batch: int
    eval_set: tuple[Batch, ...]  # the global eval batches, identical on every call and process
    eval_bytes: int  # bytes of text the weighted eval targets encode (EOD counts 0 bytes)
    eval_tokens: int  # weighted eval targets; equals the config's eval.tokens
    # The exact optimal mean loss over these eval targets (nats/token) when the source knows it
    # (synthetic:markov): what an infinitely large, perfectly trained model would score. Else None.
    true_loss: float | None = None
    # Per eval batch, the document of each row's first target (-1 on filler rows): the clusters the
    # eval's standard error is computed over (eval_loss.evaluate), as rows of one document are correlated.
    eval_docs: tuple[np.ndarray, ...] = ()

    @property
    def train_tokens_per_epoch(self) -> int:
        """Target tokens in one pass over the training data (every byte and EOD once): the unique
        tokens a run sees, the whole split's or data.unique_tokens' subset's."""
        return self.train.n_targets

    def train_batch(self, step: int, process_index: int = 0, process_count: int = 1) -> Batch:
        """This process's rows of global step `step`: [p*b, (p+1)*b), b = global_batch/process_count."""
        return batches.train_batch(self.train, self.seed, self.global_batch, step, process_index, process_count)

    def eval_batches(self, process_index: int = 0, process_count: int = 1) -> list[Batch]:
        if not self.eval_set:
            return []
        start, stop = batches.process_rows(len(self.eval_set[0].inputs), process_index, process_count, "eval.batch")
        return [b.rows(start, stop) for b in self.eval_set]

    def bits_per_byte(self, eval_loss_nats_per_token: float) -> float:
        """Mean eval loss (nats per weighted target token) -> bits per byte of the same text.

        EOD targets count in the token mean but encode no bytes, so their loss is charged to the bytes
        of the documents they end: the total code length of the text, divided by its length in bytes.
        """
        if not self.eval_bytes:
            return float("nan")
        return eval_loss_nats_per_token * self.eval_tokens / self.eval_bytes / math.log(2)


def _positive(value: int, field: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or value < minimum:
        raise DataError(f"{field}={value!r} must be an integer >= {minimum}")
    return value


def packed_split(opened: source.OpenedDataset, split: str, field: str, tokenizer: ByteTokenizer,
                 seq_len: int) -> packing.Packed:
    """The split's packed token stream, tokenized once and cached next to the dataset's files."""
    src = source.split_source(opened, split, field)
    base_info = opened.builder.info.splits[split.split("[")[0]]
    cache_dir = pathlib.Path(str(opened.builder.data_path)) / "tokens"
    path = cache_dir / packing.cache_name(split + packing.split_fingerprint(base_info), split, tokenizer)
    if not path.exists():
        try:
            cache_dir.mkdir(exist_ok=True)
        except OSError as e:
            raise DataError(f"data.data_dir: cannot write the token cache in {cache_dir} ({e.strerror}); "
                            "point data.data_dir at a writable copy of the data") from None
        with source.file_lock(cache_dir / (path.name + ".lock")):
            if not path.exists():  # a parallel run may have written it while we waited
                packing.write_stream(path, packing.documents(src, opened.text_key, tokenizer), tokenizer.eod_id)
    return packing.Packed(packing.load_stream(path), seq_len)


def load(config_data, seq_len: int, seed: int, global_batch: int, eval_tokens: int, eval_batch: int, *,
         vocab_size: int | None = None, stdlib: StdlibConfig | None = None) -> DataPipeline:
    """Opens (building `stdlib` on first use) and packs both splits; cheap once the caches exist.

    `config_data` is the run config's `data` block; `stdlib` overrides the embedded corpus (tests).
    """
    source.validate_dataset_name(config_data.dataset)
    _positive(seq_len, "model.seq_len")
    _positive(global_batch, "train.global_batch")
    _positive(eval_batch, "eval.batch")
    _positive(eval_tokens, "eval.tokens", minimum=0)
    tokenizer = ByteTokenizer()
    if vocab_size is not None and vocab_size < tokenizer.vocab_size:
        raise DataError(f"model.vocab_size={vocab_size} is below the tokenizer's {tokenizer.vocab_size}; "
                        f"set model.vocab_size={tokenizer.vocab_size}")
    chain = None
    if config_data.dataset == markov_corpus.DATASET:
        chain = markov_corpus.MarkovParams.from_config(config_data.get("markov"))
    opened = source.open_dataset(config_data.dataset, config_data.data_dir, config_data.text_key, stdlib,
                                 markov=chain)
    train = packed_split(opened, config_data.train_split, "data.train_split", tokenizer, seq_len)
    if train.n_sequences == 0:
        raise DataError(f"data.train_split={config_data.train_split!r} of {config_data.dataset} has no text")
    train = subset.subset(train, config_data.get("unique_tokens", 0), seed)
    held_out = packed_split(opened, config_data.eval_split, "data.eval_split", tokenizer, seq_len)
    if eval_tokens > held_out.n_targets:
        raise DataError(f"eval.tokens={eval_tokens} exceeds the {held_out.n_targets} tokens of "
                        f"data.eval_split={config_data.eval_split!r}; lower eval.tokens")
    eval_set = batches.eval_set(held_out, eval_tokens, eval_batch)
    eval_bytes = sum(tokenizer.count_bytes(b.targets, b.weights) for b in eval_set)
    return DataPipeline(dataset=config_data.dataset, tokenizer=tokenizer, train=train, eval=held_out,
                        seed=seed, global_batch=global_batch, eval_set=eval_set, eval_bytes=eval_bytes,
                        eval_tokens=eval_tokens, true_loss=_true_loss(opened, eval_set, tokenizer),
                        eval_docs=_eval_docs(held_out, eval_tokens, eval_batch, tokenizer.eod_id))


def _eval_docs(packed: packing.Packed, eval_tokens: int, eval_batch: int, eod_id: int) -> tuple[np.ndarray, ...]:
    """Document index of each eval row's first target: EODs in the stream before that target."""
    seq = batches.eval_sequence_indices(packed.n_sequences, eval_tokens, packed.seq_len)
    eod_count = np.cumsum(np.asarray(packed.tokens) == eod_id)
    doc = eod_count[np.minimum(seq * packed.seq_len, len(packed.tokens) - 1)].astype(np.int64)
    n_rows = -(-len(seq) // eval_batch) * eval_batch
    doc = np.concatenate([doc, np.full(n_rows - len(seq), -1, np.int64)])
    return tuple(doc[i:i + eval_batch] for i in range(0, n_rows, eval_batch))


def _true_loss(opened: source.OpenedDataset, eval_set, tokenizer: ByteTokenizer) -> float | None:
    """Weighted exactly as the eval averages: every weighted target once, EODs included."""
    if opened.entropies is None or not eval_set:
        return None
    total = weight = 0.0
    for b in eval_set:
        loss = markov.optimal_losses(opened.entropies, b.inputs, b.targets, tokenizer.eod_id)
        total += float((loss * b.weights).sum())
        weight += float(b.weights.sum())
    return total / weight if weight else None
