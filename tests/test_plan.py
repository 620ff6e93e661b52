"""The size ladder, the IsoFLOP planner and its presets (no training here: planning only)."""
import json
import math
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from experiments import ladder, plan
from experiments.planning.build import make_plan
from experiments.planning.errors import StudyError
from experiments.planning.estimate import epoch_tokens
from experiments.planning.specs import run_config, wsd_cooldown_start
from experiments.planning.study import Study
from experiments.planning.table import format_table
from experiments.planning import grid
from experiments.configs import isoflop_ci, isoflop_cpu, isoflop_gpu
from experiments.spec import RunSpec
from models.config import ModelConfig
from models.transformer import Transformer
from scaling import flops, optim, validate
from scaling.data import stdlib_corpus

REPO = pathlib.Path(__file__).parents[1]
CI_FILE = str(REPO / "experiments/configs/isoflop_ci.py")
BIG_EPOCH = 10**12  # "the corpus never runs out", for tests about everything but the epoch bound


def _plan(config=None, epoch=BIG_EPOCH, prior=True, **study):
    """The CI preset's plan; prior=False plans every ladder size (no window around a prior N_opt),
    so a test of one drop reason is not also a test of the window's size count."""
    config = config or isoflop_ci.get_config()
    if not prior:
        config.study.prior.kind = "none"
    for key, value in study.items():
        config.study[key] = value
    return make_plan(config, CI_FILE, epoch=epoch)


def _counted_flops(config, spec: RunSpec) -> float:
    """Recount a run's FLOPs from the config the trainer will see, independently of the planner."""
    run_cfg = run_config(config, spec)
    model = validate.model_config(run_cfg)
    tokens = run_cfg.train.steps * run_cfg.train.global_batch * model.seq_len
    return flops.training_flops(model, tokens, spec.flop_convention)


# ---------------------------------------------------------------- ladder


@pytest.mark.parametrize("name,targets", [("small", (5e4, 1e5, 1e6, 1e7)),
                                          ("standard", (1e6, 1e7, 1e8, 1e9))])
def test_recipe_shape_rules(name, targets):
    recipe = ladder.RECIPES[name]
    base = ModelConfig(seq_len=128)
    for target in targets:
        m = recipe.shape(target, base)
        assert m.head_dim == recipe.head_dim and m.d_model == m.n_heads * recipe.head_dim
        assert m.d_ff == math.ceil(8 / 3 * m.d_model / recipe.ff_round) * recipe.ff_round
        assert m.n_layer == 1 or recipe.aspect / 2 <= m.d_model / m.n_layer <= 2 * recipe.aspect
        n = flops.count_params(m).total
        assert abs(n / target - 1) <= recipe.tolerance


def test_ladder_spans_50k_to_beyond_1b():
    small = ladder.RECIPES["small"].shape(5e4, ModelConfig(seq_len=128))
    big = ladder.RECIPES["standard"].shape(1.2e9, ModelConfig(seq_len=2048))
    assert flops.count_params(small).total <= 5e4 * 1.15
    assert flops.count_params(big).total > 1e9


def test_rung_counts_are_the_real_models():
    rungs = ladder.ladder(ladder.RECIPES["small"], ModelConfig(seq_len=32), 1e4, 1.5e5, 1.6)
    for r in rungs[:3]:
        state = nnx.state(Transformer(r.model, rngs=nnx.Rngs(0)), nnx.Param)
        assert r.params.total == sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))


def test_hyperparameter_rules():
    rungs = ladder.ladder(ladder.RECIPES["standard"], ModelConfig(seq_len=2048), 1e6, 2e9, 1.5)
    assert len(rungs) >= 10
    sizes = [r.params.total for r in rungs]
    assert sizes == sorted(sizes) and all(b >= 1.15 * a for a, b in zip(sizes, sizes[1:]))
    for r in rungs:
        assert r.lr == pytest.approx(0.003239 - 0.0001395 * math.log(r.params.non_embedding))
        assert r.global_batch & (r.global_batch - 1) == 0  # a power of two
        assert r.warmup_tokens == r.params.total
    batches, lrs = [r.global_batch for r in rungs], [r.lr for r in rungs]
    assert batches == sorted(batches) and batches[-1] > batches[0]
    assert lrs == sorted(lrs, reverse=True)
    # The batch rule is DeepSeek's B_opt at the size's own 20-tokens-per-parameter budget.
    r = rungs[-1]
    c_star = flops.training_flops(r.model, 20 * r.params.total, "chinchilla")
    tokens = 0.2920 * c_star**0.3271
    assert r.global_batch == min(2 ** round(math.log2(tokens / 2048)), ladder.RECIPES["standard"].max_batch)


def test_ladder_rejects_bad_range():
    with pytest.raises(ValueError, match="growth"):
        ladder.ladder(ladder.RECIPES["small"], ModelConfig(), 1e4, 1e5, 1.0)


# ---------------------------------------------------------------- planner


def test_every_run_lands_within_one_percent_and_is_trainable():
    config = isoflop_ci.get_config()
    p = _plan(config)
    assert len(p.runs) >= 5
    for spec in p.runs:
        counted = _counted_flops(config, spec)
        assert counted == pytest.approx(spec.flops, rel=1e-12)
        assert abs(counted / spec.budget - 1) <= 0.01
        assert isinstance(spec.steps, int) and spec.steps >= config.study.min_steps
        assert spec.tokens == spec.steps * spec.global_batch * spec.seq_len
        assert 0 <= spec.warmup_steps <= 0.1 * spec.steps
        run_cfg = run_config(config, spec)
        model = validate.check(run_cfg, device_count=1)
        assert flops.count_params(model).total == spec.params
        assert run_cfg.train.schedule == spec.schedule == "cosine"
        assert spec.config_file == CI_FILE
        assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("prior", [True, False])
def test_every_candidate_is_planned_or_dropped_with_a_reason(prior):
    config = isoflop_ci.get_config()
    p = _plan(config, prior=prior)
    s = config.study
    study = Study.from_config(s)
    rungs = ladder.ladder(ladder.RECIPES[s.recipe], validate.model_config(config), s.ladder.min_params,
                          s.ladder.max_params, s.ladder.growth)
    planned = {(r.budget, r.params) for r in p.runs}
    dropped = {(d.C, d.N) for d in p.dropped}
    assert planned.isdisjoint(dropped)
    # Candidates: every rung without a prior; with one, the rungs of each budget's window.
    assert planned | dropped == {(C, r.params.total) for C in s.budgets for r in grid.window(C, rungs, study)}
    if prior:
        assert len(planned | dropped) < len(s.budgets) * len(rungs)
    assert all(d.reason for d in p.dropped)


@pytest.mark.parametrize("field,value,kind", [
    ("min_steps", 400, "too few steps"),
    ("tokens_per_param", (5.0, 500.0), "tokens/param"),
])
def test_drop_reasons(field, value, kind):
    p = _plan(prior=False, **{field: value})
    assert any(d.reason.startswith(kind) for d in p.dropped)
    for spec in p.runs:
        assert spec.steps >= p.study.min_steps
        lo, hi = p.study.tokens_per_param
        assert lo <= spec.tokens_per_param <= hi


def test_more_tokens_than_one_epoch_is_dropped():
    full = _plan(prior=False)
    epoch = sorted(r.tokens for r in full.runs)[len(full.runs) // 2]
    p = _plan(epoch=epoch, prior=False)
    assert all(r.tokens <= epoch for r in p.runs)
    assert any(d.reason.startswith("epoch") for d in p.dropped)


def test_epoch_from_the_study_field_and_a_clear_error_without_data():
    config = isoflop_ci.get_config()
    config.study.train_tokens_per_epoch = 123
    assert epoch_tokens(config, Study.from_config(config.study)) == 123
    config.study.train_tokens_per_epoch = 0
    config.data.dataset = "tfds:no_such_dataset_here"
    config.data.data_dir = "/nonexistent/tfds"
    with pytest.raises(StudyError, match="study.train_tokens_per_epoch"):
        epoch_tokens(config, Study.from_config(config.study))


def test_wall_time_from_assumed_throughput():
    p = _plan()
    assert p.seconds_source.startswith("assumed")
    for spec in p.runs:
        assert p.seconds[spec.run_id] == pytest.approx(spec.flops / p.study.assumed_flops_per_second)


def test_table_has_every_run_and_column():
    p = _plan()
    table = format_table(p)
    header = table.splitlines()[0].split()
    assert header == ["run", "C", "N", "N_nonemb", "D", "D/N", "steps", "batch", "lr", "warmup", "wall"]
    for spec in p.runs:
        assert spec.run_id in table
    assert sum(line.startswith("dropped") for line in table.splitlines()) == len(p.dropped)


def test_hash_changes_with_the_plan():
    a, b = _plan(), _plan(min_steps=60)
    assert a.section["hash"] == _plan().section["hash"]
    assert a.section["hash"] != b.section["hash"]


def test_plan_json_reads_back_as_the_record_and_partial_sections_take_defaults(tmp_path):
    from experiments import study_dir as st
    p = _plan()
    (tmp_path / "plan.json").write_text(json.dumps(p.to_json()))
    back = st.load_plan(tmp_path)
    assert back.study == p.study and back.hash == p.hash
    # A hand-written section: what it lacks is the record's default (None: the launcher's).
    (tmp_path / "plan.json").write_text(json.dumps({"study": {"name": "tiny", "flop_convention": "6n"}, "runs": []}))
    s = st.load_plan(tmp_path).study
    assert (s.name, s.flop_convention, s.executor, s.workers, s.max_retries, s.slurm.array_parallelism) == \
        ("tiny", "6n", None, None, None, 0)
    for bad, field in (({"workers": "two"}, "study.workers"), ({"slurm": {"time_minutes": 0}}, "study.slurm"),
                       ({"executor": "k8s"}, "study.executor")):
        (tmp_path / "plan.json").write_text(json.dumps({"study": bad, "runs": []}))
        with pytest.raises(st.StudyError, match=field) as e:
            st.load_plan(tmp_path)
        assert len(str(e.value).splitlines()) == 1


# ---------------------------------------------------------------- WSD cooldown branches


def test_wsd_branches_share_a_trunk_and_match_from_scratch_schedules():
    config = isoflop_ci.get_config()
    p = _plan(config, mode="wsd_branches", schedule="wsd")
    trunks = {r.run_id: r for r in p.runs if r.run_id.startswith("trunk-")}
    branches = [r for r in p.runs if r.branch_from]
    assert trunks and branches
    first_branch = min(i for i, r in enumerate(p.runs) if r.branch_from)
    assert all(not r.branch_from for r in p.runs[:first_branch])  # trunks come first
    every = config.study.wsd.checkpoint_every
    trained = sum(t.flops for t in trunks.values())
    for b in branches:
        trunk = trunks[b.branch_from]
        assert trunk.params == b.params and trunk.schedule == "constant"
        assert b.branch_step % every == 0 and b.branch_step <= trunk.steps
        assert b.branch_step <= wsd_cooldown_start(b.steps, config.study.wsd.cooldown_frac)
        assert abs(_counted_flops(config, b) / b.budget - 1) <= 0.01
        trunk_cfg, branch_cfg = run_config(config, trunk), run_config(config, b)
        assert trunk_cfg.checkpoint.keep * every > trunk.steps  # the branch step's checkpoint survives
        t = np.arange(b.branch_step, dtype=np.float32)
        np.testing.assert_array_equal(optim.schedule(trunk_cfg.train)(t), optim.schedule(branch_cfg.train)(t))
        late = np.arange(b.branch_step, b.steps, dtype=np.float32)
        assert float(optim.schedule(branch_cfg.train)(late)[-1]) < 0.1 * b.lr  # it does cool down
        trained += b.flops * (b.steps - b.branch_step) / b.steps
    trained += sum(r.flops for r in p.runs if not r.branch_from and r.run_id not in trunks)
    assert p.total_flops == pytest.approx(trained)
    points = [r for r in p.runs if r.run_id not in trunks]
    assert p.cosine_equivalent_flops == pytest.approx(sum(r.flops for r in points))
    assert p.total_flops < p.cosine_equivalent_flops
    assert "of the compute saved" in format_table(p)


def test_wsd_mode_needs_the_wsd_schedule():
    with pytest.raises(StudyError, match="study.schedule"):
        _plan(mode="wsd_branches", schedule="cosine")


# ---------------------------------------------------------------- presets


def test_cpu_preset_grid():
    config = isoflop_cpu.get_config()
    manifest = stdlib_corpus.scan(stdlib_corpus.stdlib_root())
    train_bytes = sum(size for rel, size in manifest.files
                      if not stdlib_corpus.is_validation(rel, stdlib_corpus.DEFAULT_VAL_PER_MILLE))
    p = make_plan(config, "isoflop_cpu.py", epoch=train_bytes)
    budgets = config.study.budgets
    assert len(budgets) >= 4 and math.log10(max(budgets) / min(budgets)) >= 1.5
    assert config.data.dataset == "stdlib"
    for C in budgets:
        mine = [r for r in p.runs if r.budget == C]
        sizes = sorted({r.params for r in mine})
        centre = Study.from_config(config.study).prior.n_opt(C)
        # >= 7 sizes spanning at least +-0.4 decades around the prior optimum: minima interior by design.
        assert len(sizes) >= 7
        assert math.log10(sizes[0] / centre) <= -0.4 and math.log10(sizes[-1] / centre) >= 0.4
        assert all(r.steps >= 500 for r in mine)  # no step-starved point
        assert sum(r.seed != 0 for r in mine) >= 2  # repeats at the points nearest the optimum
    # Within the hour at the planning throughput (60 GFLOP/s) with room left for overheads.
    assert p.total_flops / 6e10 < 0.75 * 3600


def test_gpu_preset_starts_at_chinchilla_budgets():
    config = isoflop_gpu.get_config()
    p = _plan(config)
    assert min(config.study.budgets) == 6e18
    assert max(r.params for r in p.runs) > 1e9
    assert {r.budget for r in p.runs} == set(config.study.budgets)


# ---------------------------------------------------------------- CLI


def _main(tmp_path, *flags, study_dir=None, dir_flag="--study"):
    argv = ["plan", f"--config={CI_FILE}", f"{dir_flag}={study_dir or tmp_path / 'study'}", "--probe=off",
            f"--config.study.train_tokens_per_epoch={BIG_EPOCH}", *flags]
    return plan.main(argv)


@pytest.mark.parametrize("dir_flag", ["--study", "--study_dir"])  # --study_dir: the older name, kept
def test_cli_writes_plan_json_and_prints_the_table(tmp_path, capsys, dir_flag):
    assert _main(tmp_path, "--config.model.seq_len=32", dir_flag=dir_flag) == 0
    out = capsys.readouterr().out
    written = json.loads((tmp_path / "study/plan.json").read_text())
    assert set(written) == {"study", "runs", "dropped"}
    assert written["study"]["name"] == "isoflop_ci" and len(written["study"]["hash"]) == 64
    runs = [RunSpec.from_dict(r) for r in written["runs"]]
    assert runs and all(r.run_id in out for r in runs)
    # A run-config change on the planner's command line travels with every run.
    assert all(r.overrides["model.seq_len"] == 32 and r.seq_len == 32 for r in runs)
    assert all(set(d) == {"C", "N", "reason"} for d in written["dropped"])
    assert not [f for f in (tmp_path / "study").iterdir() if f.name != "plan.json"]  # no temp files left


@pytest.mark.parametrize("flags,message", [
    (["--config.study.budgets=(1e6,)"], "too small for the smallest ladder model"),
    (["--config.study.tokens_per_param=(3000.0,4000.0)"], "no ladder size fits budget"),
    (["--config.study.flop_convention=kaplan"], "study.flop_convention"),
    (["--config.study.recipe=huge"], "study.recipe"),
    (["--config.study.mode=wsd_branches"], "study.schedule"),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, flags, message):
    assert _main(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "study/plan.json").exists()


def test_cli_unwritable_study_dir_exits_2_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "-m", "experiments.plan", f"--config={CI_FILE}",
                           f"--study_dir={blocker / 'study'}", "--probe=off"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "study.dir" in proc.stderr and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        proc.stderr.strip().splitlines()[-1]]


@pytest.mark.skipif(not pathlib.Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_cli_study_dir_that_refuses_files_is_one_line_exit_2(capsys):
    # /proc passes the os.access check (always, for root) yet refuses mkdir: the write itself fails.
    assert _main(None, study_dir="/proc/no_write_here") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: study.dir=/proc/no_write_here cannot be written")
    assert not pathlib.Path("/proc/no_write_here").exists()
