"""AdamW with global-norm clipping (and μP's per-weight lr multipliers), and the learning-rate
schedules of scaling studies.

Step t (0-based) applies the update with `schedule(t)`; the last update is t = steps - 1, where a
cosine schedule reaches exactly `final_lr_frac · peak` (Hoffmann et al. 2022 §3.1: the cosine cycle
matches the run's length, a 10x decay) and WSD reaches 0 (Hägele et al. 2024).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from models import mup
from models.config import ModelConfig

Schedule = Callable[[int], float]


def schedule(train: ml_collections.ConfigDict) -> Schedule:
    """lr for update t, computed on the host in float32 and fed to the compiled step, so runs that
    differ only in length or warmup share one compiled step (and the persistent compilation cache)."""
    fn = _schedule(train)
    return lambda t: np.float32(fn(np.float64(t)))


def _schedule(train: ml_collections.ConfigDict):
    peak, steps, warmup = float(train.lr), int(train.steps), int(train.warmup_steps)
    last = max(steps - 1, 1)

    def warm(t):
        # (t + 1) / warmup: the first update is not wasted at lr 0.
        return peak * np.minimum(1.0, (t + 1.0) / max(warmup, 1))

    if train.schedule == "constant":
        return lambda t: warm(t) if warmup else peak
    if train.schedule == "cosine":
        floor = float(train.final_lr_frac) * peak

        def cosine(t):
            progress = np.clip((t - warmup) / max(last - warmup, 1), 0.0, 1.0)
            decayed = floor + (peak - floor) * 0.5 * (1.0 + np.cos(np.pi * progress))
            return np.where(t < warmup, warm(t), decayed)

        return cosine
    if train.schedule == "wsd":
        cooldown = max(int(round(float(train.cooldown_frac) * steps)), 1)
        start = steps - cooldown  # first cooldown step; the last step (steps-1) reaches 0

        def wsd(t):
            progress = np.clip((t - start + 1.0) / cooldown, 0.0, 1.0)
            if train.cooldown_shape == "linear":
                factor = 1.0 - progress
            else:  # "1-sqrt", the better shape in Hägele et al. 2024 Fig. 4
                factor = 1.0 - np.sqrt(progress)
            return np.where(t < warmup, warm(t), peak * factor)

        return wsd
    raise ValueError(f"train.schedule={train.schedule!r} is not one of cosine, wsd, constant")


def decay_mask(axes_tree: dict, exclude: tuple[str, ...]) -> dict:
    """True where weight decay applies: weights with no excluded logical axis (norm scales by default)."""
    return jax.tree.map(lambda names: not any(n in exclude for n in names), axes_tree,
                        is_leaf=lambda x: isinstance(x, tuple))


def scale_by_tree(factors: dict) -> optax.GradientTransformation:
    """Multiplies each update by its weight's constant factor (a tree shaped like the params)."""
    return optax.stateless(lambda updates, params=None: jax.tree.map(jnp.multiply, updates, factors))


def optimizer(train: ml_collections.ConfigDict, axes_tree: dict,
              model: ModelConfig | None = None) -> optax.GradientTransformation:
    """AdamW (Loshchilov & Hutter 2019) without its learning rate: the step multiplies the update by
    the lr it is given. Same arithmetic as `optax.adamw(lr)`, whose last stage is `-lr * update`.

    Under μP (`model.parametrization = "mup"`) each weight's update, decay included, is scaled by its
    lr multiplier from models/mup.py (hidden weights 1/m), as the `mup` package's MuAdamW scales each
    group's lr; under SP the chain is unchanged.
    """
    parts = []
    if train.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(train.clip_norm))
    parts += [optax.scale_by_adam(b1=train.b1, b2=train.b2, eps=train.eps),
              optax.add_decayed_weights(train.weight_decay,
                                        mask=decay_mask(axes_tree, tuple(train.wd_exclude)))]
    if model is not None and mup.is_mup(model):
        parts.append(scale_by_tree(mup.lr_multipliers(model, axes_tree)))
    parts.append(optax.scale(-1.0))
    return optax.chain(*parts)
