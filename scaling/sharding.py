"""The device mesh and the map from logical axis names to it.

Weights name their dimensions (`logical_axes` metadata set in `models/`); `DEFAULT_RULES` in
`scaling/config.py` maps each name to mesh axes. A dimension whose size the mesh axes do not divide
stays replicated rather than failing (e.g. a 257-entry byte vocabulary under tensor parallelism).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from models.config import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH = "batch"


def resolve_mesh_shape(shape: Sequence[int], device_count: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(MESH_AXES):
        raise ConfigError(f"mesh.shape={shape} must have {len(MESH_AXES)} entries {MESH_AXES}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ConfigError(f"mesh.shape={shape}: sizes must be positive, with at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if device_count % known:
            raise ConfigError(f"mesh.shape={shape}: {device_count} devices do not divide into it")
        shape = tuple(device_count // known if s == -1 else s for s in shape)
    if math.prod(shape) != device_count:
        raise ConfigError(f"mesh.shape={shape} uses {math.prod(shape)} devices but {device_count} "
                          "are available: make the product match or use -1 for one axis")
    return shape


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(shape, len(devices))
    # Auto axes: under the Explicit default an embedding gather fails to shard.
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def rules_dict(rules: Iterable[tuple[str, Any]]) -> dict[str, tuple[str, ...]]:
    out = {}
    for name, axes in rules:
        if axes is None:
            out[name] = ()
        else:
            out[name] = (axes,) if isinstance(axes, str) else tuple(axes)
    return out


def logical_to_spec(logical: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: Mapping[str, tuple[str, ...]]) -> P:
    """PartitionSpec for one array: each mesh axis used at most once, only where it divides."""
    used: set[str] = set()
    spec = []
    for name, size in zip(logical, shape):
        if name is not None and name not in rules:
            raise ConfigError(f"mesh.rules has no entry for logical axis {name!r}: add one")
        axes = []
        for axis in rules.get(name, ()) if name is not None else ():
            n = mesh.shape[axis]
            if axis in used or n == 1 or size % (n * math.prod(mesh.shape[a] for a in axes)):
                continue
            axes.append(axis)
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    return P(*spec)


def logical_axes_tree(abstract_params: nnx.State) -> dict:
    """Pure-dict tree (the structure of `nnx.to_pure_dict`) of each weight's logical axis names."""
    tree: dict = {}
    for path, variable in nnx.to_flat_state(abstract_params):
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = tuple(variable.get_metadata()["logical_axes"])
    return tree


def param_specs(abstract_params: dict, axes: dict, mesh: Mesh, rules) -> dict:
    rules = rules_dict(rules)
    return jax.tree.map(lambda a, names: logical_to_spec(names, a.shape, mesh, rules),
                        abstract_params, axes, is_leaf=lambda x: isinstance(x, tuple))


def activation_constrainer(mesh: Mesh, rules):
    """For models.constraints: pin an activation to the spec its logical names give under `rules`
    (the weights' table; a name the table lacks, e.g. in an older config, stays unconstrained)."""
    table = rules_dict(rules)

    def constrain(x: jax.Array, names: tuple) -> jax.Array:
        names = tuple(n if n in table else None for n in names)
        spec = logical_to_spec(names, x.shape, mesh, table)
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    return constrain


def batch_sharding(mesh: Mesh, rules, leading: int = 0) -> NamedSharding:
    """Sharding of a [*leading, B, L] batch: B over the mesh axes the 'batch' rule names."""
    axes = rules_dict(rules)[BATCH]
    batch_axes = tuple(a for a in axes if mesh.shape[a] > 1) or None
    return NamedSharding(mesh, P(*([None] * leading), batch_axes, None))


def batch_shards(mesh: Mesh, rules) -> int:
    return math.prod(mesh.shape[a] for a in rules_dict(rules)[BATCH])


def sharded_fraction(abstract: Any, shardings: Any) -> float:
    """Fraction of the bytes of `abstract` whose sharding splits them over more than one device."""
    total = split = 0
    for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
        nbytes = int(np.prod(a.shape)) * a.dtype.itemsize
        total += nbytes
        if s.num_devices > 1 and any(ax is not None for ax in s.spec):
            split += nbytes
    return split / max(total, 1)
