"""Logical axis names for activations, as the weights have: `constrain(x_BxLxD, "batch", "length", "embed")`.

The model names what each activation's axes are and nothing more; whoever traces it may install a
rule for what a name means on a mesh (scaling/step.py does, through the same rules table as the
weights: scaling/sharding.py). Without one, `constrain` is the identity, so models/ stays free of
meshes. Pinning activations matters because XLA's propagation alone is free to pick, at each op,
whichever operand's layout it likes (e.g. a weight's FSDP-sharded embed axis for an activation),
and then has to reshard by replicating the whole tensor ("involuntary full rematerialization").
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import jax

Constrainer = Callable[[jax.Array, tuple], jax.Array]
_active = threading.local()


def constrain(x: jax.Array, *names: str | None) -> jax.Array:
    """x, with its axes named `names` (one per axis) for the installed constrainer, if any."""
    fn = getattr(_active, "fn", None)
    if fn is None:
        return x
    if len(names) != x.ndim:
        raise ValueError(f"constrain: {len(names)} names {names} for an array of shape {x.shape}")
    return fn(x, names)


@contextlib.contextmanager
def using(fn: Constrainer | None) -> Iterator[None]:
    """Install `fn(x, names) -> x` for what is traced inside the block (None: no constraints)."""
    previous = getattr(_active, "fn", None)
    _active.fn = fn
    try:
        yield
    finally:
        _active.fn = previous
