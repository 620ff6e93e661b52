"""Study design mechanisms on the CI grid (planning only): prior window, batch for min steps, seeds,
WSD trunk role, lr_sweep mode and the lr rule fitted from it."""
import math

import numpy as np
import pytest

from experiments import ladder
from experiments.planning.build import make_plan
from experiments.planning.errors import StudyError
from experiments.planning.specs import run_config
from experiments.planning.study import Study
from experiments.planning.table import format_table
from experiments.configs import isoflop_ci, lr_sweep_cpu
from experiments.planning import grid, lr_fit, specs
from scaling import validate

CI_FILE = "experiments/configs/isoflop_ci.py"
BIG_EPOCH = 10**12


def _plan(config=None, **study):
    config = config or isoflop_ci.get_config()
    for key, value in study.items():
        target = config.study
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    return make_plan(config, CI_FILE, epoch=BIG_EPOCH)


def test_sizes_straddle_the_prior_optimum_of_every_budget():
    config = isoflop_ci.get_config()
    p = _plan(config, **{"sizes.span": 0.2, "ladder.min_params": 1e4,
                         "tokens_per_param": (0.5, 5000.0)})
    prior = Study.from_config(config.study).prior
    for C in config.study.budgets:
        logs = sorted(math.log10(r.params / prior.n_opt(C)) for r in p.runs if r.budget == C)
        assert logs[0] <= -0.2 and logs[-1] >= 0.2  # reaches the span on both sides
        assert all(b - a <= 0.15 for a, b in zip(logs, logs[1:]))
    # Moving the prior moves the window.
    shifted = _plan(**{"sizes.span": 0.2, "ladder.min_params": 1e4, "tokens_per_param": (0.5, 5000.0),
                       "prior.params": 2 * config.study.prior.params})
    assert np.mean([r.params for r in shifted.runs]) > np.mean([r.params for r in p.runs])


def test_too_few_sizes_in_the_window_is_an_error_naming_the_field():
    with pytest.raises(StudyError, match="study.sizes.count"):
        _plan(**{"sizes.count": 12})


def test_prior_kinds():
    config = isoflop_ci.get_config()
    config.study.prior.kind = "tokens_per_param"
    config.study.prior.tokens_per_param = 20.0
    prior = Study.from_config(config.study).prior
    assert prior.n_opt(1.2e11) == pytest.approx(math.sqrt(1.2e11 / 120))
    config.study.prior.kind = "chinchilla"
    with pytest.raises(StudyError, match="study.prior.kind"):
        Study.from_config(config.study)


def test_batch_is_halved_until_min_steps_with_sqrt_lr():
    config = isoflop_ci.get_config()
    p = _plan(config, min_steps=400)
    halved = [r for r in p.runs if r.global_batch < ladder.RECIPES["cpu"].batch]
    assert halved, "the CI grid at min_steps=400 needs some halved batches"
    rungs = {r.params.total: r for r in ladder.ladder(
        ladder.RECIPES["cpu"], validate.model_config(config), 1e3, 1e6, 1.1)}
    for r in p.runs:
        assert r.steps >= 400
        rung = rungs[r.params]
        # Adam's square-root rule from the rung's lr at the rung's batch (Malladi et al. 2022).
        assert r.lr == pytest.approx(rung.lr * math.sqrt(r.global_batch / rung.global_batch))
        if r.global_batch < rung.global_batch:  # halved only where the full batch is step-starved
            assert r.steps * r.global_batch / rung.global_batch < 400
        assert r.overrides["train.global_batch"] == r.global_batch and r.overrides["train.lr"] == r.lr


def test_seed_repeats_at_the_points_nearest_the_prior_optimum():
    config = isoflop_ci.get_config()
    p = _plan(config, seeds=(0, 3), seed_points=1)
    prior = Study.from_config(config.study).prior
    for C in config.study.budgets:
        mine = [r for r in p.runs if r.budget == C]
        repeats = [r for r in mine if r.seed == 3]
        assert len(repeats) == 1
        nearest = min({r.params for r in mine}, key=lambda n: abs(math.log10(n / prior.n_opt(C))))
        rep = repeats[0]
        assert rep.params == nearest and rep.run_id == specs.run_id(C, nearest) + "-s3"
        assert rep.overrides["seed"] == 3 and run_config(config, rep).seed == 3
        twin = next(r for r in mine if r.params == nearest and r.seed == 0)
        assert "seed" not in twin.overrides and twin.run_id == specs.run_id(C, nearest)
        assert {k: v for k, v in rep.overrides.items() if k != "seed"} == dict(twin.overrides)
    assert "seed repeats: 2 runs" in format_table(p)


def test_wsd_trunks_carry_the_trunk_role():
    p = _plan(mode="wsd_branches", schedule="wsd")
    roles = {r.run_id: r.role for r in p.runs}
    assert {roles[r.branch_from] for r in p.runs if r.branch_from} == {"trunk"}
    assert all(role == "isoflop" for rid, role in roles.items() if not rid.startswith("trunk-"))


def test_lr_sweep_is_sizes_by_lrs_by_beta2_at_one_budget():
    config = lr_sweep_cpu.get_config()
    sw = config.study.lr_sweep
    p = make_plan(config, "experiments/configs/lr_sweep_cpu.py", epoch=BIG_EPOCH)
    sizes = {r.params for r in p.runs}
    assert len(p.runs) == len(sizes) * len(sw.lrs) * len(sw.beta2s) and len(sizes) == len(sw.sizes)
    assert {r.budget for r in p.runs} == {sw.budget} and {r.role for r in p.runs} == {"lr_sweep"}
    assert {(r.lr, r.beta2) for r in p.runs} == {(lr, b) for lr in sw.lrs for b in sw.beta2s}
    for r in p.runs:
        run_cfg = run_config(config, r)
        assert run_cfg.train.lr == r.lr and run_cfg.train.b2 == r.beta2
        assert r.steps >= config.study.min_steps
        validate.check(run_cfg, device_count=1)
    assert len({r.run_id for r in p.runs}) == len(p.runs)


def test_lr_fit_recovers_a_known_rule():
    # Losses from a known optimum lr*(N) = 4e-3 (N/1e5)^-0.3, parabolic in log lr, beta2 0.99 better.
    rows = []
    for n in (1.3e4, 3.6e4, 9e4):
        star = 4e-3 * (n / 1e5) ** -0.3
        for b2, offset in ((0.95, 0.01), (0.99, 0.0)):
            for lr in (1.5e-3, 3e-3, 6e-3, 1.2e-2, 2.4e-2):
                loss = 2.0 + 0.1 * (math.log10(n) - 4.6) ** 2 + 0.3 * math.log10(lr / star) ** 2 + offset
                rows.append({"params": n, "beta2": b2, "lr": lr, "final_eval_loss": loss, "budget": 6e11})
    f = lr_fit.fit(rows)
    assert f.beta2 == 0.99
    assert f.lr_at_1e5 == pytest.approx(4e-3, rel=1e-6) and f.exponent == pytest.approx(0.3, rel=1e-6)
    assert f.n_opt == pytest.approx(10**4.6, rel=1e-6) and f.depth == pytest.approx(0.1 * 0.16)
    assert not any(s.edge for s in f.sizes) and f.noise == pytest.approx(0.0, abs=1e-9)
    assert "lr*(N) = 0.004" in lr_fit.report(f)


def test_lr_fit_flags_an_optimum_outside_the_swept_lrs():
    lrs = (1e-3, 2e-3, 4e-3)
    assert lr_fit.fit_size(lrs, [3.0, 2.5, 2.2])[2]  # still falling at the largest lr: edge
    lr, _, edge, _ = lr_fit.fit_size(lrs, [2.5, 2.2, 2.4])
    assert not edge and 1e-3 < lr < 4e-3


def test_wsd_seed_repeats_branch_from_a_trunk_of_their_own_seed():
    p = _plan(mode="wsd_branches", schedule="wsd", seeds=(0, 2), seed_points=1)
    by_id = {r.run_id: r for r in p.runs}
    repeats = [r for r in p.runs if r.seed == 2 and r.role == "isoflop"]
    assert len(repeats) == len(isoflop_ci.get_config().study.budgets)
    for r in repeats:
        assert r.run_id.endswith("-s2")
        if r.branch_from:
            trunk = by_id[r.branch_from]
            assert trunk.role == "trunk" and trunk.seed == 2 and trunk.run_id.endswith("-s2")
            assert trunk.overrides["seed"] == 2 and trunk.params == r.params
    assert any(r.branch_from for r in repeats)  # else the loop above checked no trunk at all
    assert {by_id[r.branch_from].seed for r in p.runs if r.branch_from and r.seed == 0} <= {0}
