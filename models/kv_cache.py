"""The key/value cache of autoregressive decoding: each layer's keys and values of every token seen.

Decoding one token then costs one token's projections plus attention over the cache, instead of a
forward pass over the whole prefix (the cache of MaxText's decode and of Pope et al. 2022, §2).
`Transformer.extend(tokens_BxL, cache)` writes L new tokens' keys and values at slots
[index, index + L) and attends over the cache; a prefill is one `extend` with the whole prompt, a
decode step one with L = 1.

Shapes are static (S slots, fixed when the cache is made), so one compiled decode step serves every
position; slots not yet written are masked out. Rows of a batch may hold prompts of different
lengths, left-padded to a common length: row b's real tokens start at slot `start_B[b]`, slots before
it are masked, and its rotary positions count from there, so a padded row computes what the same
prompt alone would (rotary attention depends on relative positions only, and these are the same).

S is the slot axis (the cache's length); other letters as in `models/config.py`.
"""
from __future__ import annotations

from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

from models.config import ConfigError, ModelConfig

# Logical axis names of one layer's [B, H, S, K] cache (the slot axis is never split); a scanned
# model's stacked cache adds 'layers' in front, as its weights do.
LAYER_AXES = ("batch", "heads", None, "head_dim")


class LayerCache(NamedTuple):
    k_BxHxSxK: jax.Array
    v_BxHxSxK: jax.Array


class KVCache(NamedTuple):
    # One LayerCache whose arrays carry a leading N axis when layers are scanned, else N of them.
    layers: Union[LayerCache, tuple[LayerCache, ...]]
    index: jax.Array  # int32[]: slots written so far, the same for every row
    start_B: jax.Array  # int32[B]: the first real slot of each row (left padding before it)

    @property
    def length(self) -> int:
        """S: the number of slots, the most tokens this cache can hold."""
        first = self.layers if isinstance(self.layers, LayerCache) else self.layers[0]
        return first.k_BxHxSxK.shape[-2]


class Where(NamedTuple):
    """Where L new tokens go and what they see; computed once per forward pass, shared by every layer.

    New tokens attend over the cache as it was before them (slots [start, index)) and over each
    other (causally), and are written to slots [index, index + L) only afterwards (see
    `Attention.extend`).
    """
    index: jax.Array  # int32[]: the slot of the first new token
    positions_BxL: jax.Array  # int32: rotary positions, counted from each row's first real slot
    cached_Bx1x1xS: jax.Array  # bool: cache slot s holds a real token written before these
    new_Bx1xLxL: jax.Array  # bool: new token m is visible to new token l (m <= l, m not padding)


def init(cfg: ModelConfig, batch: int, length: int, start_B: jax.Array | None = None) -> KVCache:
    """An empty cache of `length` slots for `batch` rows (`start_B`: each row's left padding)."""
    if not 0 < length <= cfg.seq_len:
        raise ConfigError(f"a cache of {length} slots does not fit the model's seq_len={cfg.seq_len}: "
                          f"use between 1 and {cfg.seq_len} slots")
    shape = (batch, cfg.n_heads, length, cfg.head_dim)
    if cfg.scan_layers:
        shape = (cfg.n_layer, *shape)
    zeros = lambda: jnp.zeros(shape, cfg.dtype)  # noqa: E731
    layers = (LayerCache(zeros(), zeros()) if cfg.scan_layers
              else tuple(LayerCache(zeros(), zeros()) for _ in range(cfg.n_layer)))
    if start_B is None:
        start_B = jnp.zeros((batch,), jnp.int32)
    return KVCache(layers, jnp.zeros((), jnp.int32), jnp.asarray(start_B, jnp.int32))


def where(cache: KVCache, L: int) -> Where:
    slots_L = cache.index + jnp.arange(L, dtype=jnp.int32)
    positions_BxL = slots_L[None, :] - cache.start_B[:, None]
    slot_S = jnp.arange(cache.length, dtype=jnp.int32)
    cached_BxS = (slot_S[None, :] < cache.index) & (slot_S[None, :] >= cache.start_B[:, None])
    # A new token is padding exactly when its position is negative (it precedes its row's start).
    new_BxLxL = jnp.tril(jnp.ones((L, L), dtype=bool))[None] & (positions_BxL >= 0)[:, None, :]
    return Where(cache.index, positions_BxL, cached_BxS[:, None, None, :], new_BxLxL[:, None])


def write(layer: LayerCache, k_BxHxLxK: jax.Array, v_BxHxLxK: jax.Array, index: jax.Array) -> LayerCache:
    """The layer's cache with L new keys and values at slots [index, index + L)."""
    at = (0, 0, index, 0)
    return LayerCache(jax.lax.dynamic_update_slice(layer.k_BxHxSxK, k_BxHxLxK.astype(layer.k_BxHxSxK.dtype), at),
                      jax.lax.dynamic_update_slice(layer.v_BxHxSxK, v_BxHxLxK.astype(layer.v_BxHxSxK.dtype), at))


def advance(cache: KVCache, layers, L: int) -> KVCache:
    return cache._replace(layers=layers, index=cache.index + L)


def nbytes(cache: KVCache) -> int:
    """Bytes the cache holds (what a decode step reads, besides the weights)."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache.layers))
