"""Sharded training equals single-device training; FSDP really shards the parameters."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from scaling import step as step_lib, validate
from scaling.config import default_config
from scaling.sharding import make_mesh, resolve_mesh_shape, sharded_fraction

MESHES = [(8, 1, 1), (1, 8, 1), (2, 2, 2), (1, 2, 4)]


def _config():
    c = default_config()
    c.model.update(n_layer=2, d_model=64, n_heads=4, seq_len=32, vocab_size=264)
    c.train.update(global_batch=16, warmup_steps=1, lr=1e-2)
    return c


def _losses(shape, steps=3):
    c = _config()
    c.mesh.shape = shape
    devices = jax.devices()[: int(np.prod(shape))]
    model_cfg = validate.check(c, len(devices))
    mesh = make_mesh(shape, devices)
    comp = step_lib.build(c, model_cfg, mesh)
    # One fixed batch, seen every step: the loss must fall as the model memorises it.
    tokens = np.random.default_rng(0).integers(0, 257, (16, 33)).astype(np.int32)
    losses = []
    with jax.set_mesh(mesh):
        state = comp.init()
        for _ in range(steps):
            local = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                     "weights": np.ones((16, 32), np.float32)}
            batch = step_lib.global_batch(local, comp.batch_sharding, 16, grad_accum=1)
            state, m = comp.train_step(state, batch, comp.schedule(0))
            losses.append(float(m["train_loss"]))
    return np.array(losses), comp


@pytest.fixture(scope="module")
def single_device():
    return _losses((1, 1, 1))[0]


@pytest.mark.parametrize("shape", MESHES)
def test_sharded_loss_equals_single_device(shape, single_device):
    losses, comp = _losses(shape)
    np.testing.assert_allclose(losses, single_device, rtol=1e-5)
    assert losses[-1] < losses[0]  # it trained
    if shape[1] >= 2:
        frac = sharded_fraction(comp.abstract_state["params"], comp.state_shardings["params"])
        assert frac >= 0.98, frac


def test_partition_specs_follow_rules_table():
    c = _config()
    c.mesh.shape = (1, 2, 4)
    comp = step_lib.build(c, validate.check(c, 8), make_mesh((1, 2, 4)))
    specs = jax.tree.map(lambda s: s.spec, comp.state_shardings["params"])
    assert specs["embed"] == P("tensor", "fsdp")  # vocab 264 divides by 4
    assert specs["blocks"][0]["attn"]["wq"] == P("fsdp", "tensor", None)
    assert specs["blocks"][0]["mlp"]["w_down"] == P("tensor", "fsdp")
    assert specs["blocks"][0]["attn_norm"]["scale"] == P(None)
    # Adam moments follow their parameter.
    mu = comp.state_shardings["opt_state"][1].mu  # chain(clip, adam, decay, scale)
    assert mu["embed"].spec == P("tensor", "fsdp")


def test_indivisible_dimension_stays_replicated():
    c = _config()
    c.model.vocab_size = 257
    comp = step_lib.build(c, validate.check(c, 8), make_mesh((1, 2, 4)))
    assert comp.state_shardings["params"]["embed"].spec == P(None, "fsdp")


@pytest.mark.parametrize("shape,devices,expect", [((-1, 1, 1), 8, (8, 1, 1)), ((2, -1, 2), 8, (2, 2, 2))])
def test_mesh_fill(shape, devices, expect):
    assert resolve_mesh_shape(shape, devices) == expect


@pytest.mark.parametrize("shape", [(2, 2, 1), (3, -1, 1), (-1, -1, 1), (8, 1)])
def test_bad_mesh_is_one_line_error(shape):
    with pytest.raises(validate.ConfigError, match="mesh.shape") as e:
        resolve_mesh_shape(shape, 8)
    assert "\n" not in str(e.value)


def test_init_takes_the_seed_as_an_argument_and_matches_eager_init():
    # A seed baked in as a constant lets XLA constant-fold the whole random init at compile time
    # (minutes for a 352M model on an H100); traced, it compiles like any other program.
    from flax import nnx

    from models.transformer import Transformer
    c = _config()
    c.mesh.shape = (1, 1, 1)
    model_cfg = validate.check(c, 1)
    comp = step_lib.build(c, model_cfg, make_mesh((1, 1, 1), jax.devices()[:1]))
    (seed,) = comp.init.args
    assert isinstance(seed, jax.Array) and int(seed) == c.seed
    with jax.set_mesh(comp.mesh):
        params = jax.device_get(comp.init()["params"])
        other = jax.device_get(comp.init.func(seed + 1)["params"])
    eager = nnx.to_pure_dict(nnx.split(Transformer(model_cfg, rngs=nnx.Rngs(c.seed)))[1])
    for a, b, o in zip(jax.tree.leaves(params), jax.tree.leaves(eager), jax.tree.leaves(other)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # jit fuses differently from eager
    assert any(not np.array_equal(a, o) for a, o in zip(jax.tree.leaves(params), jax.tree.leaves(other))
               if a.ndim > 1)


# ------------------------------------------------------------------ activation constraints
def _compiled_step(shape):
    c = _config()
    c.mesh.shape = shape
    comp = step_lib.build(c, validate.check(c, 8), make_mesh(shape))
    rows = c.train.global_batch
    batch = {k: jax.ShapeDtypeStruct((1, rows, c.model.seq_len), dt, sharding=comp.batch_sharding)
             for k, dt in (("inputs", np.int32), ("targets", np.int32), ("weights", np.float32))}
    with jax.set_mesh(comp.mesh):
        return comp.train_step.lower(comp.abstract_state, batch,
                                     jax.ShapeDtypeStruct((), np.float32)).compile(), comp


_REMAT_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import conftest  # noqa: F401  (8 CPU devices, the trainer's XLA flags)
import jax
from scaling import step as step_lib
import test_sharding as t
jax.config.update("jax_enable_compilation_cache", False)  # a cache hit would compile nothing
for label, shape, constrained in [("222", (2, 2, 2), True), ("124", (1, 2, 4), True), ("222-off", (2, 2, 2), False)]:
    if not constrained:  # activations left to XLA's propagation: the positive control
        step_lib.activation_constrainer = lambda mesh, rules: None
    print("compile " + label, file=sys.stderr, flush=True)
    t._compiled_step(shape)
"""


def _remat_warnings_by_compile() -> dict[str, int]:
    """How many "Involuntary full rematerialization" warnings XLA's partitioner logs per compile.

    In a fresh process: within the test session, earlier compiles make later ones log nothing."""
    import pathlib
    import subprocess
    import sys
    tests = str(pathlib.Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", _REMAT_CHILD.format(tests=tests)], capture_output=True,
                         text=True, timeout=600, cwd=pathlib.Path(tests).parent)
    assert out.returncode == 0, out.stderr[-2000:]
    counts, label = {}, None
    for line in out.stderr.splitlines():
        if line.startswith("compile "):
            label = line.split()[1]
            counts[label] = 0
        elif "Involuntary full rematerialization" in line and label:
            counts[label] += 1
    return counts


def test_constraints_remove_involuntary_full_rematerialization():
    counts = _remat_warnings_by_compile()
    assert counts["222"] == 0 and counts["124"] == 0, counts
    # The same compile with the activations unconstrained warns, so the check above can see it.
    assert counts["222-off"] >= 1, counts


_DTYPE_BYTES = {"f32": 4, "bf16": 2, "s32": 4, "f16": 2, "u32": 4, "pred": 1}


def _collective_bytes(hlo: str) -> dict[str, int]:
    """Bytes of the whole arrays each collective gathers or reduces, summed by kind.

    all-gather and all-reduce: their result; reduce-scatter: its operand (the result is one shard).
    """
    import re
    out: dict[str, int] = {}
    for line in hlo.splitlines():
        m = re.search(r"= (\(?[^=]*?\)?) (all-gather|reduce-scatter|all-reduce|all-to-all|"
                      r"collective-permute)(?:-start)?\((.*)", line)
        if not m:
            continue
        shapes = m.group(1) if m.group(2) != "reduce-scatter" else m.group(3)
        n = sum(_DTYPE_BYTES[d] * int(np.prod([int(x) for x in dims.split(",") if x] or [1]))
                for d, dims in re.findall(r"(f32|bf16|s32|f16|u32|pred)\[([\d,]*)\]", shapes))
        out[m.group(2)] = out.get(m.group(2), 0) + n
    return out


def test_fsdp_step_moves_what_the_parameter_count_implies():
    """FSDP over 8 devices (ZeRO-3, Rajbhandari et al. 2020): each weight all-gathered for use and
    its gradient reduce-scattered, 2 x the parameter bytes; activations never leave their device.
    Unrolled layers: a scanned body's collectives appear once in the HLO for all layers."""
    from scaling import flops
    compiled, comp = _compiled_step((1, 8, 1))
    moved = _collective_bytes(compiled.as_text())
    param_bytes = 4 * flops.count_params(validate.model_config(_config())).total
    implied = 2 * param_bytes
    assert set(moved) <= {"all-gather", "reduce-scatter", "all-reduce"}, moved
    assert implied / 1.25 <= sum(moved.values()) <= implied * 1.25, (moved, implied)
    assert moved["all-gather"] <= 1.25 * param_bytes, moved
