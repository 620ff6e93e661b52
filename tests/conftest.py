"""Test-session setup: 8 CPU devices and the persistent compilation cache, before any JAX op."""
import os
import pathlib

import jax

from scaling import xla_flags

xla_flags.apply_defaults()  # the trainer's XLA flags, before XLA creates its backend
jax.config.update("jax_num_cpu_devices", 8)
_CACHE = pathlib.Path(os.environ.get("SCALING_TEST_JAX_CACHE", pathlib.Path(__file__).parent.parent / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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
