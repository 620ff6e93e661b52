"""Exact parameter counts and training FLOPs per token, computed from a model's shape.

Parameters (`count_params`) follow Kaplan et al. 2020 §2.1: N, the *non-embedding* count, excludes
every vocabulary-sized matrix (the input embedding and, when untied, the output projection) and
keeps everything else, RMSNorm scales included. The counts equal the leaves of `models.transformer`
exactly (a test checks this against the initialised model), so scaling fits never rest on 6N-style
approximations of N.

FLOPs per *training* token under named conventions (`CONVENTIONS`), all returned at once by
`flops_per_token` so a run records every one and the analysis can choose later:

  6n                 6·N_total (the usual C = 6ND).
  6n_nonembed        6·N_non_embedding (Kaplan et al. 2020 §2.1, C ≈ 6N).
  chinchilla         Hoffmann et al. 2022, Appendix F: forward = embeddings 2·s·V·d
                     + n_layer·(QKV 2·3·s·d·(k·h) + logits 2·s²·(k·h) + softmax 3·h·s²
                     + softmax@values 2·s²·(k·h) + output 2·s·(k·h)·d + dense 2·s·(2·d·f))
                     + final logits 2·s·d·V; training = 3 × forward (backward = 2 × forward);
                     per token = per-sequence count / s. SwiGLU has three d×f matrices, so its dense
                     term is 2·s·(3·d·f).
  chinchilla_causal  the same with the three s² attention terms halved: a causal mask leaves half of
                     the score matrix to compute (what a fused causal kernel actually does).

Chinchilla Table A4 (ratio of their count to 6ND, s = 2048, V = 32000) is reproduced — see
`chinchilla_table_a4_ratio` — only with two facts the paper does not spell out, found by computing:
  * the count in the table is the per-layer terms alone: the embedding and final-logits terms of
    Appendix F are left out (with them the 73M row would be 1.60, not 1.03);
  * the N of its 6ND is the table's own "Parameters" column (73M, 305M, ...), which is neither the
    non-embedding N of the listed shapes (49.2M for the 73M row: ratio 1.54) nor the total with a
    32000-token embedding, tied or untied (69.6M / 90.1M: ratios 1.09 / 0.84).
With both, five rows match to 0.01; the 1.1B row (26, 1792, 7168, 14, 128) gives 1.085 against the
printed 1.04, and no choice of N from its shape gives 1.04 (1.0B non-embedding / 1.12B total would
give 1.19 / 1.07), so the printed value does not follow from the paper's own formula.
"""
from __future__ import annotations

import dataclasses

from models.config import ModelConfig

CONVENTIONS = ("6n", "6n_nonembed", "chinchilla", "chinchilla_causal")
MFU_CONVENTION = "chinchilla"  # PaLM's MFU counts attention as non-causal (Chowdhery et al. 2022 App. B)

# Dense peak FLOP/s per device for MFU (float32 on Hopper is the TF32 tensor-core peak, which XLA's
# default matmul precision uses); devices not listed report MFU as null.
PEAK_FLOPS = {
    ("NVIDIA H100 80GB HBM3", "bfloat16"): 989.4e12, ("NVIDIA H100 80GB HBM3", "float32"): 494.7e12,
    ("NVIDIA H200", "bfloat16"): 989.4e12, ("NVIDIA H200", "float32"): 494.7e12,
    ("NVIDIA A100-SXM4-80GB", "bfloat16"): 312e12, ("NVIDIA A100-SXM4-40GB", "bfloat16"): 312e12,
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
    return PEAK_FLOPS.get((device_kind, dtype))


@dataclasses.dataclass(frozen=True)
class ParamCounts:
    total: int
    embedding: int  # every vocab-sized matrix: embed [V, D], plus unembed [D, V] when untied
    non_embedding: int  # Kaplan's N: everything else, norm scales included

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def count_params(cfg: ModelConfig) -> ParamCounts:
    """Parameters of `models.transformer.Transformer(cfg)`, leaf by leaf, without building it."""
    V, D, H, K, F = cfg.vocab_size, cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_ff
    attention = 3 * D * H * K + H * K * D  # wq, wk, wv [D, H, K]; wo [H, K, D]
    mlp = (3 if cfg.mlp == "swiglu" else 2) * D * F  # (w_gate,) w_up [D, F]; w_down [F, D]
    per_layer = attention + mlp + 2 * D  # + attention-norm and mlp-norm scales
    non_embedding = cfg.n_layer * per_layer + D  # + final norm scale
    embedding = V * D * (1 if cfg.tie_embeddings else 2)
    return ParamCounts(total=embedding + non_embedding, embedding=embedding,
                       non_embedding=non_embedding)


@dataclasses.dataclass(frozen=True)
class ChinchillaForward:
    """Forward FLOPs of one sequence of length s, by Appendix-F term (Hoffmann et al. 2022)."""
    embeddings: float
    attention_per_layer: float  # QKV + logits + softmax + softmax@values + output projection
    dense_per_layer: float
    final_logits: float
    n_layer: int

    @property
    def layers(self) -> float:
        return self.n_layer * (self.attention_per_layer + self.dense_per_layer)

    @property
    def total(self) -> float:
        return self.embeddings + self.layers + self.final_logits


def chinchilla_forward(cfg: ModelConfig, *, causal: bool) -> ChinchillaForward:
    s, V, d, h, f = cfg.seq_len, cfg.vocab_size, cfg.d_model, cfg.n_heads, cfg.d_ff
    kh = cfg.attn_dim
    # A causal mask means only the lower triangle of the s×s score matrix is ever needed.
    quadratic = 0.5 if causal else 1.0
    attention = (2 * 3 * s * d * kh  # Q, K, V projections
                 + quadratic * (2 * s * s * kh  # logits q·k
                                + 3 * h * s * s  # softmax
                                + 2 * s * s * kh)  # softmax @ values
                 + 2 * s * kh * d)  # output projection
    dense_mats = 3 if cfg.mlp == "swiglu" else 2
    return ChinchillaForward(embeddings=2.0 * s * V * d, attention_per_layer=float(attention),
                             dense_per_layer=2.0 * s * dense_mats * d * f,
                             final_logits=2.0 * s * d * V, n_layer=cfg.n_layer)


def flops_per_token(cfg: ModelConfig) -> dict[str, float]:
    """Training FLOPs per token (forward + backward) under every convention in `CONVENTIONS`."""
    params = count_params(cfg)
    s = cfg.seq_len
    # Backward costs twice the forward (Hoffmann et al. 2022 App. F; Kaplan et al. 2020 §2.1).
    return {
        "6n": 6.0 * params.total,
        "6n_nonembed": 6.0 * params.non_embedding,
        "chinchilla": 3.0 * chinchilla_forward(cfg, causal=False).total / s,
        "chinchilla_causal": 3.0 * chinchilla_forward(cfg, causal=True).total / s,
    }


def forward_flops_per_token(cfg: ModelConfig, convention: str = "chinchilla_causal") -> float:
    """Forward-only FLOPs per token (one third of training), e.g. for MFU of an inference pass."""
    return flops_per_token(cfg)[_check_convention(convention)] / 3.0


def training_flops(cfg: ModelConfig, tokens: int, convention: str) -> float:
    """C for a run of `tokens` training tokens under `convention`."""
    return flops_per_token(cfg)[_check_convention(convention)] * tokens


def chinchilla_table_a4_ratio(cfg: ModelConfig, n_params: float) -> float:
    """Table A4's ratio: Appendix-F per-layer count (no embedding/logits terms) over 6·N·s."""
    return 3.0 * chinchilla_forward(cfg, causal=False).layers / (6.0 * n_params * cfg.seq_len)


# --- compute budgets in the units papers and clusters use ------------------------------------------

PF_DAY = 1e15 * 86400  # one petaFLOP/s sustained for a day (Brown et al. 2020, Table D.1)


def pf_days(flops: float) -> float:
    return flops / PF_DAY


def device_hours(flops: float, peak_flops_per_s: float, mfu: float) -> float:
    """Device-hours to spend `flops` on devices of `peak_flops_per_s` each, running at `mfu` of peak."""
    if not (peak_flops_per_s > 0 and 0 < mfu <= 1):
        raise ValueError(f"device_hours needs peak > 0 and 0 < mfu <= 1 (got {peak_flops_per_s}, {mfu})")
    return flops / (peak_flops_per_s * mfu) / 3600.0


def params_flops(params: float, tokens: float, per_param_token: float = 6.0) -> float:
    """C = k·N·D from a parameter count alone (k = 6: forward 2, backward 4; Kaplan et al. 2020 §2.1)."""
    return per_param_token * params * tokens


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"flop convention {convention!r} is not one of {CONVENTIONS}")
    return convention
