"""The ladder each preset trains is smooth in N: no depth or width jumps, rungs <= 0.15 decades apart."""
import math

import pytest

from experiments import ladder
from experiments.configs import isoflop_ci, isoflop_cpu, isoflop_gpu, lr_sweep_cpu
from models.config import ModelConfig
from scaling import flops, validate

MAX_GAP_DEX = 0.15


def _rungs(config):
    s = config.study
    return ladder.ladder(ladder.RECIPES[s.recipe], validate.model_config(config), s.ladder.min_params,
                         s.ladder.max_params, s.ladder.growth)


@pytest.mark.parametrize("preset", [isoflop_cpu, isoflop_ci, isoflop_gpu])
def test_preset_ladders_are_smooth(preset):
    rungs = _rungs(preset.get_config())
    assert len(rungs) >= 3
    for a, b in zip(rungs, rungs[1:]):
        gap = math.log10(b.params.total / a.params.total)
        assert 0 < gap <= MAX_GAP_DEX, (a.model, b.model)
        # Shapes only grow, one small step at a time: never a wider-but-shallower or deeper-but-narrower
        # neighbour (the old `small` ladder went widths 48, 48, 48 over depths 1, 2, 3).
        assert b.model.d_model >= a.model.d_model and b.model.n_layer >= a.model.n_layer
        assert b.model.n_layer / a.model.n_layer <= 1.25
        assert b.model.d_model / a.model.d_model <= 1.25
        assert b.model.d_ff >= a.model.d_ff
        # The optimiser recipe is a smooth function of N too.
        assert b.lr <= a.lr and b.b2 == a.b2


def test_cpu_recipe_is_width_only():
    rungs = _rungs(isoflop_cpu.get_config())
    recipe = ladder.RECIPES["cpu"]
    assert {r.model.n_layer for r in rungs} == {recipe.n_layer}
    assert {r.model.n_heads for r in rungs} == {recipe.n_heads}
    for r in rungs:
        m = r.model
        assert m.head_dim * m.n_heads == m.d_model and m.head_dim % 2 == 0
        assert m.d_ff == math.ceil(8 / 3 * m.d_model / recipe.ff_round) * recipe.ff_round
        assert r.global_batch == recipe.batch
    # Every width of the range is a rung when the targets are dense: nothing skipped.
    dense = ladder.ladder(recipe, ModelConfig(seq_len=128), 1e4, 1e5, 1.05)
    widths = [r.model.d_model for r in dense]
    assert widths == list(range(widths[0], widths[-1] + 1, 2 * recipe.n_heads))


@pytest.mark.parametrize("target", [9e3, 3e4, 1e5, 4e5])
def test_width_only_shape_is_the_nearest_count(target):
    recipe = ladder.RECIPES["cpu"]
    base = ModelConfig(seq_len=128)
    m = recipe.shape(target, base)
    n = flops.count_params(m).total
    for d in (m.d_model - 2, m.d_model + 2):
        other = flops.count_params(recipe.width_shape(d, base)).total
        assert abs(math.log(n / target)) <= abs(math.log(other / target))


def test_measured_lr_rule_replaces_kaplan():
    recipe = ladder.RECIPES["cpu"]
    counts = flops.ParamCounts(total=200_000, embedding=50_000, non_embedding=150_000)
    assert recipe.lr_at_1e5 > 0  # the cpu recipe's lr is the calibration's, not Kaplan's
    assert recipe.lr(counts) == pytest.approx(recipe.lr_at_1e5 * 2.0 ** -recipe.lr_exponent)
    assert ladder.RECIPES["small"].lr(counts) == pytest.approx(ladder.kaplan_lr(150_000))


def test_lr_sweep_preset_uses_the_grid_recipe_and_batch():
    sweep, grid = lr_sweep_cpu.get_config(), isoflop_cpu.get_config()
    assert sweep.study.recipe == grid.study.recipe
    for key in ("model.seq_len", "data.dataset"):
        assert sweep[key.split(".")[0]][key.split(".")[1]] == grid[key.split(".")[0]][key.split(".")[1]]
