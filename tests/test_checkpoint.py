"""scaling.checkpoint: interval/keep policy, async durability, verified fallback, resharding, branching."""
import asyncio
import gc
import os
import pathlib
import signal
import subprocess
import sys
import threading
import warnings

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.checkpoint import Checkpointer, fingerprint

REPO = pathlib.Path(__file__).resolve().parents[1]

# A failed orbax read (the corruption tests) leaves asyncio coroutines behind whose teardown, at
# some later garbage collection, reports "Event loop is closed": noise from orbax, not a failure.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _mesh(shape, names):
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(shape))


def _state(seed: int, mesh, w_spec, *, rows: int = 64):
    """A train-state-like pytree: sharded f32 params, bf16 moment, int32 counter, Python int step."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, 32), dtype=np.float32)
    w.flat[:4] = [-0.0, np.inf, 1e-45, np.nan]  # signed zero, inf, denormal, NaN survive bit-exactly
    replicated = NamedSharding(mesh, P())
    return {
        "params": {
            "w": jax.device_put(w, NamedSharding(mesh, w_spec)),
            "b": jax.device_put(rng.standard_normal(32, dtype=np.float32), replicated),
        },
        "opt": {
            "mu": jax.device_put(rng.standard_normal((rows, 32)).astype(jax.numpy.bfloat16), NamedSharding(mesh, w_spec)),
            "count": jax.device_put(np.int32(seed * 7 + 1), replicated),
        },
        "step": seed,
    }


def _abstract_like(state, mesh, w_spec):
    def leaf(path, x):
        if not hasattr(x, "shape"):
            return 0
        spec = w_spec if x.ndim == 2 else P()
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(leaf, state)


def _host(state):
    return jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, state)


def _assert_bitwise_equal(got, want):
    got_leaves, got_def = jax.tree.flatten(got)
    want_leaves, want_def = jax.tree.flatten(want)
    assert got_def == want_def
    for g, w in zip(got_leaves, want_leaves):
        if isinstance(w, int):
            assert type(g) is int and g == w
            continue
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()


def test_interval_force_and_keep_policy(tmp_path):
    mesh = _mesh((8,), ("fsdp",))
    with Checkpointer(tmp_path, every_steps=3, keep=2, async_save=False) as ckpt:
        saved = [s for s in range(1, 11) if ckpt.maybe_save(s, _state(s, mesh, P("fsdp")))]
        assert saved == [3, 6, 9]
        assert ckpt.maybe_save(10, _state(10, mesh, P("fsdp")), force=True)  # end of run / SIGTERM
        # Already saved (e.g. the last step fell on the interval): a forced save is a no-op, not an error.
        assert not ckpt.maybe_save(10, _state(10, mesh, P("fsdp")), force=True)
        assert ckpt.all_steps() == [9, 10]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10", "9"]


def test_every_steps_zero_saves_only_when_forced(tmp_path):
    mesh = _mesh((8,), ("fsdp",))
    with Checkpointer(tmp_path, every_steps=0, keep=1, async_save=False) as ckpt:
        assert not any(ckpt.maybe_save(s, _state(s, mesh, P("fsdp"))) for s in range(1, 5))
        assert ckpt.maybe_save(5, _state(5, mesh, P("fsdp")), force=True)
        assert ckpt.all_steps() == [5]
    with pytest.raises(ValueError, match="checkpoint.every_steps"):
        Checkpointer(tmp_path, every_steps=-1, keep=1)
    with pytest.raises(ValueError, match="checkpoint.keep"):
        Checkpointer(tmp_path, every_steps=1, keep=0)


def test_bitwise_roundtrip_resharded_fsdp8_to_2x4(tmp_path):
    mesh8 = _mesh((8,), ("fsdp",))
    state = _state(5, mesh8, P("fsdp"))
    want = _host(state)
    with Checkpointer(tmp_path, every_steps=5, keep=1) as ckpt:
        assert ckpt.maybe_save(5, state)
    mesh24 = _mesh((2, 4), ("data", "fsdp"))
    with Checkpointer(tmp_path, every_steps=5, keep=1) as ckpt:
        assert ckpt.latest_step() == 5
        step, got = ckpt.restore(_abstract_like(state, mesh24, P("fsdp", "data")))
    assert step == 5
    _assert_bitwise_equal(_host(got), want)
    w = got["params"]["w"]
    assert w.sharding == NamedSharding(mesh24, P("fsdp", "data"))
    assert {s.data.shape for s in w.addressable_shards} == {(16, 16)}  # really split 4 x 2, not replicated


def test_bitwise_roundtrip_mesh_2x2x2_to_fsdp8(tmp_path):
    mesh222 = _mesh((2, 2, 2), ("data", "fsdp", "tensor"))
    spec = P(("data", "fsdp"), "tensor")
    state = _state(7, mesh222, spec)
    want = _host(state)
    with Checkpointer(tmp_path, every_steps=7, keep=1) as ckpt:
        ckpt.maybe_save(7, state)
    mesh8 = _mesh((8,), ("fsdp",))
    with Checkpointer(tmp_path, every_steps=7, keep=1) as ckpt:
        step, got = ckpt.restore(_abstract_like(state, mesh8, P(None, "fsdp")))
    assert step == 7
    _assert_bitwise_equal(_host(got), want)
    assert got["opt"]["mu"].sharding.spec == P(None, "fsdp")


def test_empty_directory_restores_none(tmp_path):
    mesh = _mesh((8,), ("fsdp",))
    with Checkpointer(tmp_path / "ckpt", every_steps=1, keep=1) as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.restore(_abstract_like(_state(0, mesh, P("fsdp")), mesh, P("fsdp"))) is None


def test_async_save_returns_before_write_and_survives_donation(tmp_path, monkeypatch):
    # The commit (orbax's rename of the tmp dir) is held until the test releases it, so "maybe_save
    # returned before the write was committed" is an ordering fact, not a race against the disk.
    from orbax.checkpoint._src.path import atomicity

    gate, reached = threading.Event(), threading.Event()
    commit = atomicity.AtomicRenameTemporaryPath.finalize

    async def held_commit(self, *args, **kwargs):
        reached.set()
        await asyncio.to_thread(gate.wait, 60)
        return await commit(self, *args, **kwargs)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", held_commit)
    mesh = _mesh((8,), ("fsdp",))
    state = _state(4, mesh, P("fsdp"), rows=32768)
    want = _host(state)
    ckpt = Checkpointer(tmp_path, every_steps=4, keep=1, async_save=True)
    assert ckpt.maybe_save(4, state)
    # The trainer donates the state to the next step right away: the save must not read it later.
    jax.tree.map(lambda x: x.delete() if isinstance(x, jax.Array) else None, state)
    assert reached.wait(60), "the background write never reached its commit"
    # Returned, and the write got as far as its commit, without the committed step being listed.
    assert not (tmp_path / "4").exists()
    assert any(p.name.startswith("4.") for p in tmp_path.iterdir())
    gate.set()
    ckpt.wait()
    assert (tmp_path / "4").is_dir()
    step, got = ckpt.restore(_abstract_like(want, mesh, P("fsdp")))
    ckpt.close()
    assert step == 4
    _assert_bitwise_equal(_host(got), want)


def test_sync_save_is_committed_on_return(tmp_path):
    mesh = _mesh((8,), ("fsdp",))
    with Checkpointer(tmp_path, every_steps=1, keep=1, async_save=False) as ckpt:
        assert ckpt.maybe_save(1, _state(1, mesh, P("fsdp"), rows=32768))
        assert (tmp_path / "1" / "commit_success.txt").exists()


def _save_two(tmp_path, mesh):
    states = {s: _state(s, mesh, P("fsdp"), rows=256) for s in (2, 4)}
    with Checkpointer(tmp_path, every_steps=2, keep=3) as ckpt:
        for s, st in states.items():
            ckpt.maybe_save(s, st)
    return {s: _host(st) for s, st in states.items()}


def _largest_file(step_dir: pathlib.Path) -> pathlib.Path:
    return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _corrupt_truncate(step_dir):
    f = _largest_file(step_dir)
    os.truncate(f, f.stat().st_size // 2)


def _corrupt_delete(step_dir):
    _largest_file(step_dir).unlink()


def _corrupt_flip(step_dir):
    # A flipped byte inside the array data: orbax reads it back without complaint; only the
    # fingerprint notices.
    f = _largest_file(step_dir)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_delete, _corrupt_flip], ids=["truncate", "delete", "flip"])
def test_corrupt_newest_falls_back_to_previous_with_warning(tmp_path, corrupt):
    mesh = _mesh((8,), ("fsdp",))
    saved = _save_two(tmp_path, mesh)
    corrupt(tmp_path / "4")
    abstract = _abstract_like(saved[2], mesh, P("fsdp"))
    with Checkpointer(tmp_path, every_steps=2, keep=3) as ckpt:
        with pytest.warns(RuntimeWarning, match=r"checkpoint step 4 .* falling back"):
            step, got = ckpt.restore(abstract)
        assert step == 2
        _assert_bitwise_equal(_host(got), saved[2])
        # The corrupt step is moved aside, so the resumed run can save step 4 again.
        assert ckpt.all_steps() == [2]
        assert [p.name.split("-")[0] for p in (tmp_path / "corrupt").iterdir()] == ["4"]
        assert ckpt.maybe_save(4, _state(4, mesh, P("fsdp"), rows=256))
        ckpt.wait()
        assert ckpt.all_steps() == [2, 4]
    gc.collect()  # release orbax's abandoned read coroutines here, not during another file's tests


def test_nothing_restorable_raises_and_moves_nothing(tmp_path):
    mesh = _mesh((8,), ("fsdp",))
    _save_two(tmp_path, mesh)
    wrong = {"params": {"w": jax.ShapeDtypeStruct((3, 3), np.float32, sharding=NamedSharding(mesh, P()))}}
    with Checkpointer(tmp_path, every_steps=2, keep=3) as ckpt:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(RuntimeError, match="no checkpoint .* can be restored"):
                ckpt.restore(wrong)
        assert ckpt.all_steps() == [2, 4]  # a wrong abstract state is not corruption
    assert not (tmp_path / "corrupt").exists()
    gc.collect()


def test_restore_step_branches_from_another_runs_directory(tmp_path):
    mesh = _mesh((8,), ("fsdp",))
    trunk = tmp_path / "trunk"
    saved = _save_two(trunk, mesh)
    abstract = _abstract_like(saved[2], mesh, P("fsdp"))
    with Checkpointer(tmp_path / "branch", every_steps=100, keep=1) as branch:
        got = branch.restore_step(2, abstract, directory=trunk)  # not the newest trunk step: exactly 2
        _assert_bitwise_equal(_host(got), saved[2])
        assert branch.latest_step() is None
        with pytest.raises(FileNotFoundError, match=r"step 3 .*available steps: \[2, 4\]"):
            branch.restore_step(3, abstract, directory=trunk)
        assert branch.maybe_save(3, got, force=True)
    assert sorted(p.name for p in trunk.iterdir()) == ["2", "4"]
    assert sorted(p.name for p in (tmp_path / "branch").iterdir()) == ["3"]


_KILLED_CHILD = """
import os, signal, sys, jax, numpy as np
jax.config.update("jax_num_cpu_devices", 8)
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
sys.path.insert(0, {repo!r})
from scaling.checkpoint import Checkpointer
mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(AxisType.Auto,))
put = lambda x: jax.device_put(x, NamedSharding(mesh, P("fsdp")))
ckpt = Checkpointer({d!r}, every_steps=1, keep=5)
ckpt.maybe_save(1, {{"w": put(np.full((64, 8), 1.0, np.float32))}})
ckpt.wait()
ckpt.maybe_save(2, {{"w": put(np.random.default_rng(0).standard_normal((1 << 20, 8), dtype=np.float32))}})
# The save runs in the background: kill once its tmp dir exists (mid-write of step 2), not at a moment
# that a loaded machine may reach before the writer has started (a test that failed under xdist).
while not any(n.startswith("2.") for n in os.listdir({d!r})):
    pass
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_save_killed_midway_is_ignored_and_cleaned(tmp_path):
    d = tmp_path / "ckpt"
    proc = subprocess.run([sys.executable, "-c", _KILLED_CHILD.format(repo=str(REPO), d=str(d))], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (d / "1").is_dir() and not (d / "2").exists()
    assert any(p.name.startswith("2.") for p in d.iterdir())  # the half-written tmp dir
    mesh = _mesh((8,), ("fsdp",))
    abstract = {"w": jax.ShapeDtypeStruct((64, 8), np.float32, sharding=NamedSharding(mesh, P("fsdp")))}
    with Checkpointer(d, every_steps=1, keep=5) as ckpt:
        # Opening must not delete tmp dirs: they may be a live trunk's save that a branch reads past.
        assert ckpt.latest_step() == 1 and any(p.name.startswith("2.") for p in d.iterdir())
        step, got = ckpt.restore(abstract)
        assert step == 1 and np.all(np.asarray(got["w"]) == 1.0)
    assert sorted(p.name for p in d.iterdir()) == ["1"]  # the owner's resume cleans the leftover


def test_fingerprint_sees_one_bit_and_swaps_and_ignores_sharding():
    mesh = _mesh((8,), ("fsdp",))
    x = np.random.default_rng(0).standard_normal((16, 8), dtype=np.float32)
    base = fingerprint({"x": jax.device_put(x, NamedSharding(mesh, P("fsdp")))})
    assert base == fingerprint({"x": jax.device_put(x, NamedSharding(mesh, P(None, "fsdp")))})
    assert base == fingerprint({"x": jax.numpy.asarray(x)})
    flipped = x.copy()
    flipped.view(np.uint32)[3, 5] ^= 1 << 31
    assert fingerprint({"x": jax.numpy.asarray(flipped)}) != base
    swapped = x[[1, 0] + list(range(2, 16))]
    fp = fingerprint({"x": jax.numpy.asarray(swapped)})["['x']"]
    assert fp[2] == base["['x']"][2]  # a plain sum cannot see the swap...
    assert fp[3] != base["['x']"][3]  # ...the position-weighted one does
    assert fingerprint({"n": 3, "x": jax.numpy.asarray(x)})["['n']"] == ["int", 3]


_TWO_PROCESS_CHILD = """
import sys, warnings, jax, numpy as np
pid, d, port, phase = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{{port}}", num_processes=2, process_id=pid)
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
sys.path.insert(0, {repo!r})
from scaling.checkpoint import Checkpointer
full = np.arange(64 * 8, dtype=np.float32).reshape(64, 8) * 0.37
ckpt = Checkpointer(d, every_steps=1, keep=3)
if phase == "save":
    mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(AxisType.Auto,))
    sh = NamedSharding(mesh, P("fsdp"))
    for k in (1, 2):  # each process writes only the shards it holds
        ckpt.maybe_save(k, {{"w": jax.make_array_from_callback((64, 8), sh, lambda i: full[i] + k), "step": k}})
else:
    mesh = jax.make_mesh((2, 4), ("a", "b"), axis_types=(AxisType.Auto,) * 2)
    abstract = {{"w": jax.ShapeDtypeStruct((64, 8), np.float32, sharding=NamedSharding(mesh, P("b", "a"))), "step": 0}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step, st = ckpt.restore(abstract)
    ok = all(np.array_equal(np.asarray(s.data), (full + step)[s.index]) for s in st["w"].addressable_shards)
    fell_back = any("checkpoint step 2" in str(w.message) for w in caught)
    print(f"RESULT step={{step}} saved_step={{st['step']}} values_ok={{ok}} warned={{fell_back}}", flush=True)
ckpt.close()
"""


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(d, phase):
    code = _TWO_PROCESS_CHILD.format(repo=str(REPO))
    port = str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(pid), str(d), port, phase],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for pid in (0, 1)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return [line for out in outs for line in out.splitlines() if line.startswith("RESULT")]


def test_two_processes_save_sharded_and_fall_back_together(tmp_path):
    d = tmp_path / "ckpt"
    _run_two_processes(d, "save")
    assert sorted(p.name for p in d.iterdir()) == ["1", "2"]
    assert {p.name for p in (d / "2" / "state").glob("ocdbt.process_*")} == {"ocdbt.process_0", "ocdbt.process_1"}
    _corrupt_truncate(d / "2")
    results = _run_two_processes(d, "restore")
    assert results == ["RESULT step=1 saved_step=1 values_ok=True warned=True"] * 2
    assert sorted(p.name for p in d.iterdir()) == ["1", "corrupt"]  # moved once, by process 0
