"""The shape of a decoder-only transformer, validated when it is built.

Letters used for tensor shapes throughout `models/` (as in nanodo):
  B batch, L sequence length, D d_model, H heads, K head_dim, F d_ff, V vocab, N layers.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

MLP_KINDS = ("swiglu", "gelu")
CUDNN_DTYPES = ("bfloat16", "float16")  # what cuDNN's flash attention takes
CUDNN_MAX_HEAD_DIM = 128
ATTENTION_KINDS = ("auto", "cudnn", "dot_product", "einsum")
DTYPES = ("float32", "bfloat16")
PARAMETRIZATIONS = ("sp", "mup")


class ConfigError(ValueError):
    """An impossible configuration; the message is one line naming the field and the fix."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    n_layer: int = 2
    d_model: int = 64
    n_heads: int = 4
    head_dim: int = 0  # 0: d_model // n_heads
    d_ff: int = 0  # 0: 4 * d_model (gelu) or the 8/3 * d_model rounded up to 8 of LLaMA (swiglu)
    vocab_size: int = 257
    seq_len: int = 128
    mlp: str = "swiglu"
    tie_embeddings: bool = False
    dtype: str = "float32"  # compute dtype; parameters always stay float32
    remat: bool = False  # rematerialise each block in the backward pass
    scan_layers: bool = False  # one compiled block scanned over layers
    # "cudnn": jax.nn.dot_product_attention's cuDNN flash kernel (GPU, bf16/fp16, head_dim <= 128);
    # "dot_product": the same call left to XLA (it materialises the L x L scores); "einsum": explicit
    # softmax(QK^T)V in blocks of queries that skip the hidden keys (models/causal_attention.py),
    # faster on CPU; "auto": cudnn on a GPU where it applies, else dot_product on a GPU, einsum
    # elsewhere.
    attention: str = "auto"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    # "sp": every weight at init_std, one lr. "mup": μP for Adam (Yang et al. 2022), relative to a
    # model of d_model = mup_base_width, where both agree exactly (models/mup.py has the rules).
    parametrization: str = "sp"
    mup_base_width: int = 64
    # The base model's head width, for μP's 1/K attention. 0: head_dim · mup_base_width / d_model
    # (wider models have wider heads, as the cpu recipe's one head); set it to head_dim where wider
    # models have more heads of a fixed width (the standard recipe).
    mup_base_head_dim: int = 0

    def __post_init__(self):
        for name in ("n_layer", "d_model", "n_heads", "vocab_size", "seq_len", "mup_base_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{name}={value!r} must be a positive integer")
        if self.head_dim == 0:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"model.n_heads={self.n_heads} does not divide model.d_model={self.d_model}: "
                    "choose n_heads dividing d_model or set model.head_dim explicitly")
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        if self.head_dim < 0:
            raise ConfigError(f"model.head_dim={self.head_dim} must be positive (0 means d_model // n_heads)")
        if self.head_dim % 2:
            raise ConfigError(f"model.head_dim={self.head_dim} must be even for rotary embeddings")
        if self.mlp not in MLP_KINDS:
            raise ConfigError(f"model.mlp={self.mlp!r} is not one of {MLP_KINDS}")
        if self.d_ff == 0:
            d_ff = 4 * self.d_model if self.mlp == "gelu" else -(-8 * self.d_model // 3 // 8) * 8
            object.__setattr__(self, "d_ff", d_ff)
        if self.d_ff < 0:
            raise ConfigError(f"model.d_ff={self.d_ff} must be positive (0 picks the default)")
        if self.attention not in ATTENTION_KINDS:
            raise ConfigError(f"model.attention={self.attention!r} is not one of {ATTENTION_KINDS}")
        if self.attention == "cudnn" and not self.cudnn_attention_fits:
            raise ConfigError(f"model.attention='cudnn' needs dtype in {CUDNN_DTYPES} and head_dim <= "
                              f"{CUDNN_MAX_HEAD_DIM} "
                              f"(got {self.dtype}, {self.head_dim}): use attention='auto' or 'dot_product'")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype={self.dtype!r} is not one of {DTYPES}")
        if self.parametrization not in PARAMETRIZATIONS:
            raise ConfigError(f"model.parametrization={self.parametrization!r} is not one of "
                              f"{PARAMETRIZATIONS}")
        if not isinstance(self.mup_base_head_dim, int) or self.mup_base_head_dim < 0:
            raise ConfigError(f"model.mup_base_head_dim={self.mup_base_head_dim!r} must be an integer "
                              ">= 0 (0: head_dim scaled with the width)")

    @property
    def cudnn_attention_fits(self) -> bool:
        """Whether cuDNN's flash attention takes this shape and dtype ('auto' then picks it on GPUs)."""
        return self.dtype in CUDNN_DTYPES and self.head_dim <= CUDNN_MAX_HEAD_DIM

    @property
    def attn_dim(self) -> int:
        """k·h in Chinchilla's notation: the width of Q, K and V."""
        return self.n_heads * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"model.{unknown[0]} is not a model field; known fields: {sorted(known)}")
        return cls(**dict(values))
