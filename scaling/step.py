"""The compiled pieces of a run: sharded state init, the train step and the eval step.

Read top to bottom as nanodo does: build the abstract state with `jax.eval_shape`, derive its
shardings from the weights' logical axes, jit init with `out_shardings`, jit the step with
`in_shardings`/`out_shardings` and the state donated.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from models.config import ModelConfig
from models import constraints
from models.transformer import Transformer
from scaling import optim
from scaling.sharding import activation_constrainer, batch_sharding, logical_axes_tree, param_specs

State = dict  # {"step": int32[], "params": pure dict, "opt_state": optax state}


@dataclasses.dataclass(frozen=True)
class Compiled:
    """What the loop needs: shardings to place data and the jitted functions."""
    mesh: Mesh
    graphdef: Any
    abstract_state: State  # ShapeDtypeStructs carrying their shardings (for restore)
    state_shardings: State
    batch_sharding: NamedSharding  # of a [grad_accum, micro_batch, L] array
    eval_batch_sharding: NamedSharding  # of a [eval_batch, L] array
    init: Callable[[], State]
    train_step: Callable[[State, dict, jax.Array], tuple[State, dict]]  # (state, batch, lr)
    eval_step: Callable[[dict, dict], tuple[jax.Array, jax.Array]]  # per-row (NLL sum, weight sum), [B] each
    schedule: optim.Schedule


def _weighted_nll(params: dict, graphdef, batch: dict) -> tuple[jax.Array, jax.Array]:
    """(weighted NLL, log Z), each [B, L]."""
    logits_BxLxV = nnx.merge(graphdef, params)(batch["inputs"])
    logz_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
    target_logit_BxL = jnp.take_along_axis(logits_BxLxV, batch["targets"][..., None], axis=-1)[..., 0]
    return (logz_BxL - target_logit_BxL) * batch["weights"], logz_BxL


def token_losses(params: dict, graphdef, batch: dict, z_loss: float):
    """(objective, sum of weighted NLL) over a [B, L] batch; the caller divides by the weight sum."""
    nll_BxL, logz_BxL = _weighted_nll(params, graphdef, batch)
    weights_BxL = batch["weights"]
    nll_sum = jnp.sum(nll_BxL)
    objective = nll_sum
    if z_loss:  # PaLM (Chowdhery et al. 2022 §5): keeps log Z near 0 for stability.
        objective = objective + z_loss * jnp.sum(jnp.square(logz_BxL) * weights_BxL)
    return objective, nll_sum


def build(config: ml_collections.ConfigDict, model_cfg: ModelConfig, mesh: Mesh) -> Compiled:
    rules = config.mesh.rules
    abstract_model = nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(config.seed)))
    graphdef, abstract_vars = nnx.split(abstract_model)
    axes = logical_axes_tree(abstract_vars)
    abstract_params = nnx.to_pure_dict(abstract_vars)
    tx = optim.optimizer(config.train, axes, model_cfg)
    schedule = optim.schedule(config.train)

    p_specs = param_specs(abstract_params, axes, mesh, rules)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    # Optimiser moments share their parameter's sharding; counters are replicated.
    o_specs = optax.tree_map_params(tx, lambda _, spec: spec, abstract_opt, p_specs,
                                    transform_non_params=lambda _: P(),
                                    is_leaf=lambda x: isinstance(x, P))
    specs = {"step": P(), "params": p_specs, "opt_state": o_specs}
    state_shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                                   is_leaf=lambda x: isinstance(x, P))
    abstract_state = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": abstract_params,
                      "opt_state": abstract_opt}
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract_state, state_shardings)

    def init_from_seed(seed: jax.Array) -> State:
        # The seed is traced, not a constant: with a constant key XLA constant-folds the whole
        # random init at compile time (a 352M model's init did not compile in 170 s on an H100).
        _, variables = nnx.split(Transformer(model_cfg, rngs=nnx.Rngs(jax.random.key(seed))))
        params = nnx.to_pure_dict(variables)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    z_loss = float(config.train.z_loss)
    grad_fn = jax.value_and_grad(lambda p, b: token_losses(p, graphdef, b, z_loss), has_aux=True)

    def train_step(state: State, batch_AxBxL: dict, lr: jax.Array) -> tuple[State, dict]:
        params = state["params"]
        accum = batch_AxBxL["inputs"].shape[0]
        if accum == 1:
            (_, nll_sum), grads = grad_fn(params, jax.tree.map(lambda x: x[0], batch_AxBxL))
        else:
            def micro(carry, mb):
                (_, nll), g = grad_fn(params, mb)
                return jax.tree.map(jnp.add, carry, (nll, g)), None

            zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
            (nll_sum, grads), _ = jax.lax.scan(micro, zeros, batch_AxBxL)
        # Sum over micro-batches then divide once: the same mean as one big batch.
        n_tokens = jnp.maximum(jnp.sum(batch_AxBxL["weights"]), 1.0)
        grads = jax.tree.map(lambda g: g / n_tokens, grads)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        updates = jax.tree.map(lambda u: lr * u, updates)
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                     "opt_state": opt_state}
        metrics = {"train_loss": nll_sum / n_tokens, "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    def eval_step(params: dict, batch_BxL: dict):
        # Per row, not summed: the eval's standard error is measured across sequences (eval_loss.evaluate).
        nll_BxL, _ = _weighted_nll(params, graphdef, batch_BxL)
        return jnp.sum(nll_BxL, axis=1), jnp.sum(batch_BxL["weights"], axis=1)

    # Activations pinned through the weights' rules table while the steps are traced.
    constrainer = activation_constrainer(mesh, rules)

    def pinned(f):
        @functools.wraps(f)
        def traced(*args):
            with constraints.using(constrainer):
                return f(*args)
        return traced

    replicated = NamedSharding(mesh, P())
    b_sharding = batch_sharding(mesh, rules, leading=1)
    e_sharding = batch_sharding(mesh, rules)
    batch_tree = {k: b_sharding for k in ("inputs", "targets", "weights")}
    eval_tree = {k: e_sharding for k in ("inputs", "targets", "weights")}
    return Compiled(
        mesh=mesh, graphdef=graphdef, abstract_state=abstract_state,
        state_shardings=state_shardings, batch_sharding=b_sharding, eval_batch_sharding=e_sharding,
        init=functools.partial(jax.jit(init_from_seed, out_shardings=state_shardings),
                               jnp.asarray(config.seed, jnp.int32)),
        train_step=jax.jit(pinned(train_step), in_shardings=(state_shardings, batch_tree, replicated),
                           out_shardings=(state_shardings, replicated), donate_argnums=0),
        eval_step=jax.jit(pinned(eval_step), in_shardings=(state_shardings["params"], eval_tree),
                          out_shardings=replicated),
        schedule=schedule,
    )


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding, global_rows: int,
                 grad_accum: int | None = None) -> dict[str, jax.Array]:
    """Assemble each process's rows into one global array (multi-host: no process holds it all)."""
    out = {}
    for key, x in local.items():
        if grad_accum is not None:
            x = x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:])
            shape = (grad_accum, global_rows // grad_accum, *x.shape[2:])
        else:
            shape = (global_rows, *x.shape[1:])
        out[key] = jax.make_array_from_process_local_data(sharding, x, shape)
    return out
