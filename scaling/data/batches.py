"""Batches as pure functions: the training batch at step i depends only on (seed, i).

Row r of global step i is global sequence draw j = i*global_batch + r; draw j lands in epoch
j // n and reads position j % n of that epoch's permutation, a Philox stream keyed by (seed, epoch).
Resuming at any step therefore needs no iterator state, and each process computes only its own rows
[p*b, (p+1)*b) with b = global_batch / process_count.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from scaling.data.errors import DataError
from scaling.data.packing import Packed


@dataclasses.dataclass(frozen=True)
class Batch:
    inputs: np.ndarray  # [b, L] int32
    targets: np.ndarray  # [b, L] int32
    weights: np.ndarray  # [b, L] float32: 0 on padding, which must not count in the loss

    @property
    def n_tokens(self) -> float:
        return float(self.weights.sum())

    def rows(self, start: int, stop: int) -> "Batch":
        return Batch(self.inputs[start:stop], self.targets[start:stop], self.weights[start:stop])


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n sequences in `epoch`; cached because consecutive steps share an epoch."""
    key = np.array([seed % 2**64, epoch], dtype=np.uint64)
    perm = np.random.Generator(np.random.Philox(key=key)).permutation(n)
    perm.setflags(write=False)  # shared through the cache
    return perm


def process_rows(batch_size: int, process_index: int, process_count: int, field: str) -> tuple[int, int]:
    """This process's row range [start, stop) of a global batch."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is outside [0, process_count={process_count})")
    if batch_size % process_count:
        raise DataError(f"{field}={batch_size} is not divisible by the {process_count} processes")
    b = batch_size // process_count
    return process_index * b, (process_index + 1) * b


def sequence_indices(n_sequences: int, seed: int, global_batch: int, step: int, start: int, stop: int) -> np.ndarray:
    """Sequence indices of rows [start, stop) of global step `step`."""
    draw = step * global_batch + np.arange(start, stop, dtype=np.int64)
    epoch, pos = np.divmod(draw, n_sequences)
    seq = np.empty_like(draw)
    for e in np.unique(epoch):  # at most two epochs per batch unless the batch exceeds an epoch
        sel = epoch == e
        seq[sel] = epoch_permutation(seed, int(e), n_sequences)[pos[sel]]
    return seq


def train_batch(packed: Packed, seed: int, global_batch: int, step: int,
                process_index: int = 0, process_count: int = 1) -> Batch:
    start, stop = process_rows(global_batch, process_index, process_count, "train.global_batch")
    return Batch(*packed.rows(sequence_indices(packed.n_sequences, seed, global_batch, step, start, stop)))


def eval_sequence_indices(n_sequences: int, eval_tokens: int, seq_len: int) -> np.ndarray:
    """Evenly spaced sequences over the whole split: the eval set samples every part of the split,
    not just its first documents, yet is the same on every call (no randomness at all)."""
    n_eval = -(-eval_tokens // seq_len)
    return np.arange(n_eval, dtype=np.int64) * n_sequences // max(n_eval, 1)


def eval_set(packed: Packed, eval_tokens: int, eval_batch: int) -> tuple[Batch, ...]:
    """Sequences weighted to exactly `eval_tokens` targets, as batches of `eval_batch` rows.

    Always the same tokens, so eval losses are comparable across steps and runs. The last batch is
    filled with zero-weight rows to keep shapes static for the compiled eval step.
    """
    seq = eval_sequence_indices(packed.n_sequences, eval_tokens, packed.seq_len)
    n_rows = -(-len(seq) // eval_batch) * eval_batch
    filler = np.full(n_rows - len(seq), seq[-1] if len(seq) else 0, np.int64)
    inputs, targets, weights = packed.rows(np.concatenate([seq, filler]))
    weights[len(seq):] = 0.0
    # Keep exactly eval_tokens weighted targets: trim the tail of the last real sequence.
    flat = weights.reshape(-1)
    flat[np.cumsum(flat) > eval_tokens] = 0.0
    return tuple(Batch(inputs[i:i + eval_batch], targets[i:i + eval_batch], weights[i:i + eval_batch])
                 for i in range(0, n_rows, eval_batch))
