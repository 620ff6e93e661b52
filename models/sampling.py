"""Next-token logits -> a token: temperature, top-k (Fan et al. 2018), top-p (Holtzman et al. 2020).

Applied in the order of Hugging Face's and MaxText's samplers: divide by the temperature, keep the k
most likely tokens, then keep the smallest set of the most likely ones whose probability (under the
tempered, top-k renormalised distribution) reaches p. Temperature 0 is greedy decoding (argmax).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from models.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0: greedy
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1: no top-p filter

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ConfigError(f"temperature={self.temperature} must be >= 0 (0 decodes greedily)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"top_k={self.top_k!r} must be an integer >= 0 (0 keeps every token)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} must be in (0, 1] (1 keeps every token)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _keep(logits_BxV: jax.Array, keep_BxV: jax.Array) -> jax.Array:
    return jnp.where(keep_BxV, logits_BxV, -jnp.inf)


def _scatter_rows(order_BxV: jax.Array, values_BxV: jax.Array) -> jax.Array:
    """out[b, order[b, j]] = values[b, j]: undo a per-row permutation."""
    rows_Bx1 = jnp.arange(order_BxV.shape[0])[:, None]
    return jnp.zeros(values_BxV.shape, values_BxV.dtype).at[rows_Bx1, order_BxV].set(values_BxV)


def top_k_logits(logits_BxV: jax.Array, k: int) -> jax.Array:
    """-inf outside each row's k largest logits; exactly k survive (ties go to the lower id)."""
    if k <= 0 or k >= logits_BxV.shape[-1]:
        return logits_BxV
    _, ids_BxK = jax.lax.top_k(logits_BxV, k)
    rows_Bx1 = jnp.arange(logits_BxV.shape[0])[:, None]
    keep_BxV = jnp.zeros(logits_BxV.shape, bool).at[rows_Bx1, ids_BxK].set(True)
    return _keep(logits_BxV, keep_BxV)


def top_p_logits(logits_BxV: jax.Array, p: float) -> jax.Array:
    """-inf outside each row's nucleus: the smallest set of most likely tokens whose probability
    reaches p. A token is in it exactly when the tokens ranked above it hold less than p."""
    if isinstance(p, (int, float)) and p >= 1:  # a traced p (tests jit it) always filters
        return logits_BxV
    order_BxV = jnp.argsort(-logits_BxV, axis=-1, stable=True)
    probs_BxV = jax.nn.softmax(jnp.take_along_axis(logits_BxV, order_BxV, axis=-1), axis=-1)
    # Mass of the tokens ranked higher (an exclusive cumsum): 0 for the most likely, which stays.
    cum_BxV = jnp.cumsum(probs_BxV, axis=-1)
    above_BxV = jnp.concatenate([jnp.zeros_like(cum_BxV[:, :1]), cum_BxV[:, :-1]], axis=-1)
    keep_sorted_BxV = above_BxV < p
    return _keep(logits_BxV, _scatter_rows(order_BxV, keep_sorted_BxV))


def filtered_logits(logits_BxV: jax.Array, sampling: Sampling) -> jax.Array:
    """The logits a token is drawn from (temperature > 0): tempered, then top-k, then top-p."""
    logits_BxV = logits_BxV.astype(jnp.float32) / sampling.temperature
    return top_p_logits(top_k_logits(logits_BxV, sampling.top_k), sampling.top_p)


def next_token(logits_BxV: jax.Array, keys_B: jax.Array, sampling: Sampling) -> jax.Array:
    """One token per row, int32[B]; `keys_B` holds one PRNG key per row (rows draw independently)."""
    if sampling.greedy:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits_BxV = filtered_logits(logits_BxV, sampling)
    return jax.vmap(jax.random.categorical)(keys_B, logits_BxV).astype(jnp.int32)
