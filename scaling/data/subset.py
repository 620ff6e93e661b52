"""`data.unique_tokens`: train on a fixed subset of the training split, repeated for as many epochs as
the run needs (Muennighoff et al. 2023's data-constrained runs).

The subset is ceil(unique_tokens / seq_len) whole sequences of the packed split (never its padded
tail, so it holds exactly that many times seq_len targets), drawn by a Philox stream keyed by
(seed, SUBSET_STREAM): a pure function of the seed, as the batches are of (seed, step), so a resumed
run sees the same subset and the same batch at every step. SUBSET_STREAM is far above any epoch
number, so the subset's draw is independent of every epoch's order. The subset's sequences keep the
split's order; `batches` permutes them anew each epoch exactly as it does the whole split.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from scaling.data.errors import DataError
from scaling.data.packing import Packed

SUBSET_STREAM = 2**64 - 1  # the Philox key's second word; epochs use 0, 1, 2, ...


@dataclasses.dataclass(frozen=True)
class Subset:
    """A Packed split seen through `index`: sequence i of the subset is sequence index[i] of `base`."""
    base: Packed
    index: np.ndarray  # sorted base sequence ids, each a whole sequence of seq_len targets

    @property
    def seq_len(self) -> int:
        return self.base.seq_len

    @property
    def n_sequences(self) -> int:
        return len(self.index)

    @property
    def n_targets(self) -> int:
        return len(self.index) * self.base.seq_len

    def rows(self, seq_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.base.rows(self.index[np.asarray(seq_idx, np.int64)])


def subset(packed: Packed, unique_tokens: int, seed: int) -> Packed | Subset:
    """The split limited to `unique_tokens` targets (rounded up to whole sequences); 0 keeps it whole."""
    if not isinstance(unique_tokens, int) or unique_tokens < 0:
        raise DataError(f"data.unique_tokens={unique_tokens!r} must be an integer >= 0 (0: the whole split)")
    if unique_tokens == 0:
        return packed
    whole = packed.n_targets // packed.seq_len  # the padded last sequence is never drawn
    n = -(-unique_tokens // packed.seq_len)
    if n > whole:
        raise DataError(f"data.unique_tokens={unique_tokens} exceeds the {whole * packed.seq_len} tokens of "
                        "whole sequences in the training split; lower it (0: the whole split)")
    key = np.array([seed % 2**64, SUBSET_STREAM], dtype=np.uint64)
    chosen = np.random.Generator(np.random.Philox(key=key)).choice(whole, size=n, replace=False)
    index = np.sort(chosen).astype(np.int64)
    index.setflags(write=False)
    return Subset(packed, index)
