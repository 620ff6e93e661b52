"""Pack a split into one token stream and cut it into fixed-length training sequences, dropping nothing.

The stream is `EOD doc_0 EOD doc_1 EOD ... doc_n EOD`: the leading EOD means the first byte of every
document is a prediction target, conditioned on a document boundary like all the others. Sequence k
holds stream[k*L : k*L + L + 1] (inputs = [:-1], targets = [1:]), so consecutive sequences share one
token and every stream position after the first is the target of exactly one sequence. The last
sequence is padded with EOD and weight 0, so the tail is kept rather than dropped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pathlib

import grain
import numpy as np

from plumbing.atomic import atomic_open
from scaling.data.tokenizer import ByteTokenizer

_DTYPE = np.dtype("<u2")  # vocab 257 fits; half the memory of int32 for a memmapped stream
_HEADER_BYTES = 128  # a 1-D .npy v1.0 header is padded to 128 bytes for any length below 10**20
_CHUNK_TOKENS = 1 << 22


@dataclasses.dataclass(frozen=True)
class Packed:
    """One split as a token stream (memmapped uint16) viewed as sequences of `seq_len` targets."""

    tokens: np.ndarray
    seq_len: int

    @property
    def n_targets(self) -> int:
        return max(len(self.tokens) - 1, 0)

    @property
    def n_sequences(self) -> int:
        return -(-self.n_targets // self.seq_len)

    def rows(self, seq_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sequences `seq_idx` -> (inputs, targets) int32 and target weights float32, each [n, seq_len]."""
        pos_NxL1 = np.asarray(seq_idx, np.int64)[:, None] * self.seq_len + np.arange(self.seq_len + 1)
        valid_NxL1 = pos_NxL1 < len(self.tokens)
        tok_NxL1 = np.asarray(self.tokens[np.minimum(pos_NxL1, len(self.tokens) - 1)], np.int32)
        tok_NxL1[~valid_NxL1] = ByteTokenizer().eod_id
        return (np.ascontiguousarray(tok_NxL1[:, :-1]), np.ascontiguousarray(tok_NxL1[:, 1:]),
                valid_NxL1[:, 1:].astype(np.float32))


def cache_name(split_info_json: str, split: str, tokenizer: ByteTokenizer) -> str:
    """Keyed by split, tokenizer and the split's files, so a rebuilt dataset never reuses old tokens."""
    fingerprint = hashlib.sha256(split_info_json.encode()).hexdigest()[:12]
    safe_split = "".join(c if c.isalnum() or c in "-_" else "_" for c in split)
    return f"{safe_split}.{tokenizer.name}.{fingerprint}.npy"


def split_fingerprint(split_info) -> str:
    return json.dumps({"name": split_info.name, "num_examples": split_info.num_examples,
                       "num_bytes": split_info.num_bytes,
                       "shard_lengths": [int(n) for n in split_info.shard_lengths]}, sort_keys=True)


def documents(source, text_key: str, tokenizer: ByteTokenizer):
    """Token arrays of the split's documents in source order, read and tokenized by grain threads."""
    ds = grain.MapDataset.source(source).map(lambda rec: tokenizer.encode(rec[text_key]))
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=256))


def write_stream(path: pathlib.Path, docs, eod_id: int) -> int:
    """Writes the packed stream as a .npy atomically (temp file, fsync, rename); returns its length.

    The length is unknown until the end, so the header space is reserved and written last: memory
    stays bounded by one chunk, whatever the dataset's size.
    """
    with atomic_open(path, "wb") as f:
        f.seek(_HEADER_BYTES)
        eod = np.array([eod_id], _DTYPE)
        chunk, chunk_len, total = [eod], 1, 0
        for doc in docs:
            chunk += [doc.astype(_DTYPE, copy=False), eod]
            chunk_len += len(doc) + 1
            if chunk_len >= _CHUNK_TOKENS:
                f.write(np.concatenate(chunk).tobytes())
                total, chunk, chunk_len = total + chunk_len, [], 0
        f.write(np.concatenate(chunk).tobytes())
        total += chunk_len
        f.seek(0)
        f.write(_npy_header(total))
    return total


def _npy_header(length: int) -> bytes:
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(_DTYPE), "fortran_order": False, "shape": (length,)}
    np.lib.format.write_array_header_1_0(buf, header)
    assert len(buf.getvalue()) == _HEADER_BYTES, "npy header size changed; cannot write in place"
    return buf.getvalue()


def load_stream(path: pathlib.Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")
