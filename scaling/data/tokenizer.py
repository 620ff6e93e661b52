"""Byte-level tokenizer: ids 0..255 are the raw bytes, 256 marks the end of a document (EOD).

Bytes rather than a learned vocabulary keep the embedded corpus self-contained (nothing to train or
download) and make bits/byte exact: every non-EOD target token is exactly one byte of text.
"""
from __future__ import annotations

import dataclasses

import numpy as np

EOD = 256
VOCAB_SIZE = 257


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
    """Stateless; `name` keys the token caches, so change it if the id mapping ever changes."""

    name: str = "bytes257"
    vocab_size: int = VOCAB_SIZE
    eod_id: int = EOD

    def encode(self, text: bytes | str) -> np.ndarray:
        """One document -> uint16 ids, without the EOD (packing adds it between documents)."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        return np.frombuffer(text, dtype=np.uint8).astype(np.uint16)

    def decode(self, ids: np.ndarray) -> bytes:
        """Ids -> bytes, EOD rendered as nothing (documents then simply run together)."""
        ids = np.asarray(ids)
        return ids[ids < 256].astype(np.uint8).tobytes()

    def count_bytes(self, ids: np.ndarray, weights: np.ndarray | None = None) -> int:
        """Bytes of text the (weighted) ids encode; EOD encodes 0 bytes."""
        is_byte = np.asarray(ids) < 256
        if weights is not None:
            is_byte &= np.asarray(weights) > 0
        return int(is_byte.sum())
