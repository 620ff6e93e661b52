"""Test-session setup: 8 CPU devices and the persistent compilation cache, before any JAX op."""
import os
import pathlib

import jax

from scaling import xla_flags

# The suite compiles hundreds of small programs and runs each for a few steps, so compilation is most
# of its time: LLVM at -O0 halves it (tests/test_sharding.py's loss tests: 48 -> 21 s CPU). Every
# comparison in the suite is between runs under the same flags; the trainer's own default stays -O2.
# SCALING_TEST_XLA_OPT=default runs the suite as the trainer compiles. Subprocesses inherit XLA_FLAGS.
if os.environ.get("SCALING_TEST_XLA_OPT") != "default" and "xla_backend_optimization_level" not in os.environ.get(
        "XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
xla_flags.apply_defaults()  # the trainer's XLA flags, before XLA creates its backend
jax.config.update("jax_num_cpu_devices", 8)
_CACHE = pathlib.Path(os.environ.get("SCALING_TEST_JAX_CACHE", pathlib.Path(__file__).parent.parent / ".jax_cache"))
# Every program is cached, however fast it compiled: at -O0 most of the suite's compile in under the
# default 1 s, so each of the ~80 trainer and CLI subprocesses compiled them again (a 40-step tiny
# run: 6.9 -> 4.9 CPU s). The subprocesses (trainers, studies, analysis CLIs) inherit the same cache
# through the environment, so the suite never reads or fills the user's ~/.cache/scaling/jax.
os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_CACHE)
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


# The trainer's end-to-end tests share one data directory and one uninterrupted reference run
# (a module that needs its own data directory defines its own `data_dir`, which wins).
import pytest  # noqa: E402

import train_helpers as th  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def reference(tmp_path_factory, data_dir):
    workdir = tmp_path_factory.mktemp("reference")
    result = th.train(workdir, data_dir, *th.STEPS)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session", autouse=True)
def _png_figures_only():
    """Figures drawn in this process as PNG alone (analysis.output.figures.FORMATS): the PDF of a figure
    costs about as much again as its PNG (one draw of the study's figures: ~4.5 of ~9.6 CPU s), no test
    but tests/test_analysis_cli.py's png-and-pdf one reads it, and that one asks for both. Subprocesses
    (the CLIs and studies run end to end) keep writing both."""
    from analysis.output import figures
    with pytest.MonkeyPatch.context() as mp:  # session-wide, so module fixtures that draw see it too
        mp.setattr(figures, "FORMATS", ("png",))
        yield


def pytest_collection_modifyitems(items):
    """pytest.ini runs the suite on 2 xdist workers with `--dist loadfile`: each file runs whole on one
    worker, files handed out in collection order (`--no-loadscope-reorder`: xdist otherwise hands out
    the files with the most tests first, and the CI study started 5 minutes into a 10-minute suite).
    Files with end-to-end (`slow`) tests go first, so the three-minute study does not start last and
    leave one core idle while it finishes (stable: the order within a file is kept)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
