"""μP for Adam (Yang et al. 2022, "Tensor Programs V", Table 3): the multipliers that make a model's
activations, their updates and its best learning rate independent of width.

Widths are measured relative to a base model (`model.mup_base_width`): with m = d_model / base,
  hidden weights (matrix-like: two or more width-sized axes — wq/wk/wv/wo, the MLP's matrices)
      init std × m^-1/2 (variance ∝ 1/fan_in) and Adam lr × 1/m;
  input embedding and vector-like weights (norm scales; the model has no biases)
      init and lr unchanged;
  output (unembedding)
      the logits × 1/m, init and lr unchanged. This is Table 3's output row (init variance ∝ 1/fan_in²,
      Adam lr ∝ 1/fan_in) in its equivalent output-multiplier form, the one the `mup` package's
      MuReadout uses: the multiplier scales the effective weight by 1/m and, Adam being invariant to
      the gradient's scale, its effective update by 1/m too. It also works with tied embeddings.
  attention logits
      q·k / K instead of q·k / sqrt(K) (the paper's 1/d attention), as sqrt(K_base) / K so that
      the model at the base width is the standard one; K_base is the head width at the base model.
At m = 1 every multiplier is exactly 1: a μP model at its base width is the SP model, bit for bit.
Depth scaling (CompleteP, Dey et al. 2025: residual branches × 1/n_layer^α, lr by depth) is not
implemented: widths transfer, depths do not.

`models/` owns the multipliers; the optimiser (scaling/optim.py) applies `lr_multipliers`.
"""
from __future__ import annotations

import jax

from models.config import ModelConfig

# Logical axes whose size grows with width (mesh rules name the same axes). 'vocab' and 'layers'
# do not; 'norm' names vector-like weights, which μP treats like biases.
WIDTH_AXES = ("embed", "mlp", "heads", "head_dim")


def is_mup(cfg: ModelConfig) -> bool:
    return cfg.parametrization == "mup"


def width_mult(cfg: ModelConfig) -> float:
    """m = d_model / mup_base_width under μP; 1 under SP."""
    return cfg.d_model / cfg.mup_base_width if is_mup(cfg) else 1.0


def hidden_init_mult(cfg: ModelConfig) -> float:
    """Factor on the init std of hidden weights: m^-1/2 (variance ∝ 1/fan_in, Table 3)."""
    return width_mult(cfg) ** -0.5


def output_mult(cfg: ModelConfig) -> float:
    """Factor on the logits: 1/m (the `mup` package's MuReadout, output_mult = 1)."""
    return 1.0 / width_mult(cfg)


def query_mult(cfg: ModelConfig) -> float:
    """Factor on the queries turning the kernels' 1/sqrt(K) into μP's sqrt(K_base)/K."""
    if not is_mup(cfg):
        return 1.0
    base_head_dim = cfg.mup_base_head_dim or cfg.head_dim * cfg.mup_base_width / cfg.d_model
    return (base_head_dim / cfg.head_dim) ** 0.5


def is_hidden(axes: tuple[str | None, ...]) -> bool:
    """Matrix-like: at least two width-sized axes (the `mup` package's infshape.ninf() == 2)."""
    return sum(a in WIDTH_AXES for a in axes) >= 2


def lr_multipliers(cfg: ModelConfig, axes_tree: dict) -> dict:
    """Per-weight factor on Adam's learning rate: 1/m for hidden weights, 1 for the rest."""
    hidden = 1.0 / width_mult(cfg)
    return jax.tree.map(lambda axes: hidden if is_hidden(axes) else 1.0, axes_tree,
                        is_leaf=lambda x: isinstance(x, tuple))
