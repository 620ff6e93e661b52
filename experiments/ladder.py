"""The size ladder: one knob (a target parameter count) to a full model shape and its hyperparameters.

A `Recipe` is named and frozen; every rule below depends on the shape only, so a size keeps the same
shape, batch and learning rate at every compute budget of an IsoFLOP grid and only its number of steps
changes (Hoffmann et al. 2022 §3.2, Approach 2: "we vary the number of training steps" per size).

Shape rules (`Recipe.shape`)
  heads     head width fixed per recipe: 64 in `standard` (Kaplan et al. 2020; Chinchilla's models
            up to 1B use 64, Hoffmann et al. 2022 Table A4), 16 in `small`, so the ladder reaches
            ~30k parameters with at least one head; d_model = n_heads · head_dim.
  d_ff      SwiGLU, d_ff = 8/3 · d_model rounded up to a multiple of `ff_round` (Shazeer 2020;
            Touvron et al. 2023: three d×f matrices at the parameter cost of a 4·d GELU block).
  depth     the aspect ratio d_model/n_layer stays within a factor 2 of the recipe's `aspect`
            (64 for `standard`: Chinchilla's 73M model is 640/10, Hoffmann et al. 2022 Table A4;
            32 for `small`, deeper because tiny models are otherwise a single layer), a band inside
            the range over which Kaplan et al. 2020 §3.1, Fig. 5 find the loss changes by only a few %.
  knob      among those shapes, the ones whose exact total count is within `tolerance` (15%) of the
            target; of these the one with aspect closest to `aspect`; if none, the nearest count.
            Width and depth are integers, so tiny sizes need both to move (a width-only rule jumps 3x
            between 1-layer widths 32 and 64).

Hyperparameter rules (`rung`)
  lr        Kaplan et al. 2020 Appendix D.6, eq. D.1: lr(N) = 0.003239 − 0.0001395 · ln N, N the
            non-embedding count (fitted on models from ~1e3 to ~1e9 parameters: this whole ladder).
  batch     DeepSeek LLM (Bi et al. 2024) eq. 1, B_opt = 0.2920 · C^0.3271 tokens, evaluated at the
            size's own compute-optimal budget C*(N) = FLOPs/token · 20·N (Hoffmann et al. 2022's ~20
            tokens per parameter); rounded to a power of two in sequences, clamped to the recipe's
            [min_batch, max_batch]. Batch grows with size and stays fixed across budgets.
  warmup    N tokens (Porian et al. 2024 §3: Kaplan's fixed 3000-step warmup is far too long for small
            models and biases the fitted exponent; they warm up for as many tokens as parameters),
            capped by the planner at `warmup_cap` of a run so short runs spend most steps at peak.

The `cpu` recipe (isoflop_cpu, isoflop_ci, lr_sweep_cpu): loss smooth in N
  Below ~1e6 parameters the `small` rules above cannot be smooth: integer depth and 16-wide heads
  made the old CPU ladder go depth 1 -> 2 -> 3 between 52k and 108k parameters over widths
  16, 32, 48, 48, 48, 64, exactly where the optima were. `cpu` is a width-only family instead:
  depth    fixed, 4 layers (d_model/n_layer from 2.5 at 1e4 to 34 at 1e6 parameters).
  heads    one head of width d_model (head_dim = d_model, even for rotary), so d_model moves in
           steps of 2 channels: neighbouring rungs differ by <= 0.132 decades from 7.5e3 (d_model 8)
           up, and only in width (tests/test_ladder.py checks every preset's ladder).
  d_ff     8/3 * d_model rounded up to 4 (to 8 the d_model 8 -> 10 step would be 0.15 decades).
  ladder   from the shape nearest min_params, each rung the widest shape at most `growth` times the
           previous count (one width step where a step is larger): no width is skipped by rounding.
  batch    8 sequences (1,024 tokens at seq_len 128) for every rung; the planner halves it for one
           run (down to min_batch 4) where that run would otherwise have fewer than study.min_steps
           steps, and scales its lr by sqrt(B / 8) (Adam's square-root rule, Malladi et al. 2022).
  lr, b2   measured, not borrowed: lr*(N) = lr_at_1e5 * (N / 1e5)^-lr_exponent, N total, and b2, from
           the lr_sweep_cpu calibration (sizes x peak lr x beta2 at one budget, batch 8); see RECIPES.

Calibration of the `cpu` lr and b2 (measured 2026-12-01 on this 2-core CPU, load 10-17 from other work)
    python -m experiments.plan --config=experiments/configs/lr_sweep_cpu.py
    python -m experiments.launch --study=studies/lr_sweep_cpu        # 30 runs, 25.3 min, 2 workers
    python -m experiments.collect --study=studies/lr_sweep_cpu
    python -m experiments.planning.lr_fit --study=studies/lr_sweep_cpu
  3 sizes x 5 peak lrs (1.5e-3 ... 2.4e-2, factor 2) x b2 in {0.95, 0.99}, each run 6e11 FLOPs at
  batch 8 x 128 tokens, cosine to 10%, final eval on 65,536 validation tokens. Vertex of a parabola
  in log10 lr per size (final eval loss, nats/token):
        N      b2     lr*     loss@lr*        N      b2     lr*     loss@lr*
    13,188   0.95   0.0117    1.996       13,188   0.99   0.0095    1.978
    36,146   0.95   0.0120    1.872       36,146   0.99   0.0092    1.893
    90,402   0.95   0.0052    1.941       90,402   0.99   0.0044    1.950
  b2: 0.95 (mean loss at lr* 1.936 vs 1.940 for 0.99: no gain from 0.99 at this batch, within the
  runs' scatter); lr*(N) = 0.00578 * (N / 1e5)^-0.420 (fitted over the three sizes at b2 = 0.95;
  Kaplan's eq. D.1 gives 1.7e-3 at 9e4, 3.5x too low here). The same sweep's best loss per size
  has its IsoFLOP vertex at N = 3.97e4 (0.088 nats deep 0.4 decades out): isoflop_cpu's prior.
  The d_ff rounding moved from 8 to 4 after the sweep (36,146 had d_ff 64, now 60); lr* is a
  smooth function of N, so the rule carries over.

Parameter counts always come from `scaling.flops.count_params` on the exact shape, never 6N-style
formulas.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping

from models.config import ModelConfig
from scaling import flops

CHINCHILLA_TOKENS_PER_PARAM = 20.0


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    head_dim: int
    aspect: int  # target d_model / n_layer
    ff_round: int
    ff_ratio: float = 8.0 / 3.0
    mlp: str = "swiglu"
    tolerance: float = 0.15  # a shape within this relative distance of the target is "on target"
    min_batch: int = 8  # sequences; 8 keeps the batch divisible by 8 data shards
    max_batch: int = 1024
    warmup_cap: float = 0.1  # warmup at most this fraction of a run's steps
    # Width-only family (`n_layer` > 0): fixed depth and head count, d_model any multiple of
    # 2 * n_heads (head_dim = d_model / n_heads, even for rotary), so neighbouring rungs differ only
    # by a few channels of width and the loss is smooth in N (see the module docstring).
    n_layer: int = 0
    n_heads: int = 0
    # lr(N) = lr_at_1e5 * (N / 1e5)^-lr_exponent, N total parameters (a measured rule, see RECIPES);
    # lr_at_1e5 = 0: Kaplan et al. 2020 eq. D.1.
    lr_at_1e5: float = 0.0
    lr_exponent: float = 0.0
    b2: float = 0.95  # Adam beta2 of every run of this recipe
    batch: int = 0  # fixed batch of every rung (sequences); 0: DeepSeek's B_opt rule (see `rung`)

    def shape(self, target_params: float, base: ModelConfig) -> ModelConfig:
        """The model for `target_params` total parameters; vocab, seq_len, dtype... from `base`."""
        if self.n_layer:
            return self._width_only(target_params, base)
        shapes = _candidates(self, base, 4.0 * target_params)
        if not shapes:
            raise ValueError(f"recipe {self.name!r} has no shape below {4 * target_params:.3g} parameters")
        off = lambda n: abs(math.log(n / target_params))
        near = [(n, m) for n, m in shapes if off(n) <= math.log1p(self.tolerance)]
        if near:
            return min(near, key=lambda nm: (abs(math.log(nm[1].d_model / nm[1].n_layer / self.aspect)),
                                             off(nm[0])))[1]
        return min(shapes, key=lambda nm: off(nm[0]))[1]

    def width_shape(self, d_model: int, base: ModelConfig) -> ModelConfig:
        d_ff = math.ceil(self.ff_ratio * d_model / self.ff_round) * self.ff_round
        return dataclasses.replace(base, n_layer=self.n_layer, d_model=d_model, n_heads=self.n_heads,
                                   head_dim=d_model // self.n_heads, d_ff=d_ff, mlp=self.mlp)

    def _width_only(self, target_params: float, base: ModelConfig) -> ModelConfig:
        step = 2 * self.n_heads
        count = lambda d: flops.count_params(self.width_shape(d, base)).total
        d = step
        while count(d + step) <= target_params:
            d += step
        return min((self.width_shape(w, base) for w in (d, d + step)),
                   key=lambda m: abs(math.log(flops.count_params(m).total / target_params)))

    def lr(self, params: flops.ParamCounts) -> float:
        if self.lr_at_1e5:
            return self.lr_at_1e5 * (params.total / 1e5) ** -self.lr_exponent
        return kaplan_lr(params.non_embedding)


RECIPES: Mapping[str, Recipe] = {
    # max_batch 16 (2048 tokens at seq_len 128): on a 2-core CPU a bigger batch only pushes the
    # small budgets' runs below study.min_steps, it buys no throughput worth having.
    "small": Recipe(name="small", head_dim=16, aspect=32, ff_round=16, max_batch=16),
    "standard": Recipe(name="standard", head_dim=64, aspect=64, ff_round=64),
    # The CPU presets' ladder (module docstring, "The `cpu` recipe"): 4 layers, 1 head, width in
    # steps of 2 channels; batch 8 sequences (1024 tokens at seq_len 128), halved per run down to 4
    # where a run would otherwise have fewer than study.min_steps steps.
    # lr and b2 measured on this 2-core CPU (module docstring, "Calibration"):
    #   python -m experiments.plan --config=experiments/configs/lr_sweep_cpu.py   (then launch, collect)
    #   python -m experiments.planning.lr_fit --study=studies/lr_sweep_cpu
    "cpu": Recipe(name="cpu", head_dim=0, aspect=0, ff_round=4, n_layer=4, n_heads=1,
                  min_batch=4, max_batch=8, batch=8, lr_at_1e5=0.00578, lr_exponent=0.420, b2=0.95),
}


@functools.lru_cache(maxsize=64)
def _candidates(recipe: Recipe, base: ModelConfig, limit: float) -> tuple[tuple[int, ModelConfig], ...]:
    """Every shape of the recipe's family with at most `limit` total parameters."""
    out = []
    for heads in range(1, 1 << 20):
        d = heads * recipe.head_dim
        d_ff = math.ceil(recipe.ff_ratio * d / recipe.ff_round) * recipe.ff_round
        lo = max(1, math.ceil(d / (2 * recipe.aspect)))  # aspect <= 2x target
        hi = max(1, d * 2 // recipe.aspect)  # aspect >= target / 2; one layer always allowed
        first = None
        for n_layer in range(lo, hi + 1):
            model = dataclasses.replace(base, n_layer=n_layer, d_model=d, n_heads=heads,
                                        head_dim=recipe.head_dim, d_ff=d_ff, mlp=recipe.mlp)
            total = flops.count_params(model).total
            first = total if first is None else first
            if total > limit:
                break
            out.append((total, model))
        if first > limit:
            return tuple(sorted(out, key=lambda nm: nm[0]))
    raise AssertionError("unreachable")


@dataclasses.dataclass(frozen=True)
class Rung:
    """One ladder size: its shape, exact counts and shape-only hyperparameters."""
    model: ModelConfig
    params: flops.ParamCounts
    global_batch: int  # sequences
    lr: float
    warmup_tokens: int
    b2: float = 0.95

    @property
    def shape_overrides(self) -> dict[str, int | str]:
        m = self.model
        return {"model.n_layer": m.n_layer, "model.d_model": m.d_model, "model.n_heads": m.n_heads,
                "model.head_dim": m.head_dim, "model.d_ff": m.d_ff, "model.mlp": m.mlp}


def kaplan_lr(non_embedding: int) -> float:
    lr = 0.003239 - 0.0001395 * math.log(non_embedding)
    if lr <= 0:
        raise ValueError(f"Kaplan's eq. D.1 gives no positive lr for N={non_embedding:.3g} (> 1.2e10)")
    return lr


def deepseek_batch_tokens(compute: float) -> float:
    return 0.2920 * compute ** 0.3271


def rung(recipe: Recipe, model: ModelConfig, convention: str = "chinchilla") -> Rung:
    params = flops.count_params(model)
    optimal_budget = flops.training_flops(
        model, round(CHINCHILLA_TOKENS_PER_PARAM * params.total), convention)
    sequences = deepseek_batch_tokens(optimal_budget) / model.seq_len
    batch = recipe.batch or 2 ** round(math.log2(max(sequences, 1.0)))
    batch = min(max(batch, recipe.min_batch), recipe.max_batch)
    return Rung(model=model, params=params, global_batch=batch, lr=recipe.lr(params),
                warmup_tokens=params.total, b2=recipe.b2)


def ladder(recipe: Recipe, base: ModelConfig, min_params: float, max_params: float,
           growth: float, convention: str = "chinchilla") -> tuple[Rung, ...]:
    """Rungs for targets min_params · growth^i <= max_params, duplicates of a shape removed."""
    if growth <= 1.0:
        raise ValueError(f"study.ladder.growth={growth} must be > 1")
    if not 0 < min_params <= max_params:
        raise ValueError(f"study.ladder.min_params={min_params:.3g} must be positive and <= "
                         f"study.ladder.max_params={max_params:.3g}")
    if recipe.n_layer:
        return tuple(rung(recipe, m, convention) for m in _width_ladder(recipe, base, min_params, max_params, growth))
    rungs: list[Rung] = []
    for i in range(int(math.log(max_params / min_params) / math.log(growth) + 1e-9) + 1):
        model = recipe.shape(min_params * growth**i, base)
        if all(r.model != model for r in rungs):
            rungs.append(rung(recipe, model, convention))
    return tuple(sorted(rungs, key=lambda r: r.params.total))


def _width_ladder(recipe: Recipe, base: ModelConfig, min_params: float, max_params: float,
                  growth: float) -> list[ModelConfig]:
    """Width-only recipes: from the shape nearest min_params, each next rung the widest shape at most
    `growth` times the previous count (one width step where a step is larger), up to max_params, so
    neighbouring rungs are never further apart than growth or one width step."""
    step = 2 * recipe.n_heads
    count = lambda m: flops.count_params(m).total
    first, last = recipe.shape(min_params, base), recipe.shape(max_params, base)
    shapes = [recipe.width_shape(d, base) for d in range(first.d_model, last.d_model + 1, step)]
    kept = [shapes[0]]
    for i, m in enumerate(shapes[1:], 1):
        nxt = shapes[i + 1] if i + 1 < len(shapes) else None
        if nxt is None or count(nxt) > growth * count(kept[-1]) * (1 + 1e-12):
            if m != kept[-1] and (nxt is None or count(m) > count(kept[-1])):
                kept.append(m)
    return kept
