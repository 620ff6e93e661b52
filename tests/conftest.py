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
