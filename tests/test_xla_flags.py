"""The trainer's default XLA flags reach XLA, and a user's own XLA_FLAGS win."""
import subprocess
import sys
from pathlib import Path

from scaling import xla_flags

REPO = Path(__file__).resolve().parent.parent

# Imports everything the trainer imports, then sets the defaults (or not) and compiles a dot.
_PROBE = """
import os, sys
os.environ.pop("XLA_FLAGS", None)
import scaling.train
from scaling import xla_flags
if sys.argv[1] == "defaults":
    xla_flags.apply_defaults()
import jax, jax.numpy as jnp
x = jnp.ones((512, 256)); w = jnp.ones((256, 384))
print(jax.jit(lambda x, w: x @ w).lower(x, w).compile().as_text())
"""


def _compiled_dot(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout


def test_defaults_set_after_the_trainers_imports_still_reach_xla():
    # Without the flag this jaxlib hands the dot to YNNPACK; with it, to Eigen (17% faster step).
    assert "ynn" in _compiled_dot("plain")
    assert "ynn" not in _compiled_dot("defaults")


def test_user_flags_win_and_others_are_kept():
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot --xla_dump_to=/tmp/x"}
    assert xla_flags.apply_defaults(env) == env["XLA_FLAGS"]
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert xla_flags.apply_defaults(env) == "--xla_dump_to=/tmp/x --xla_cpu_experimental_ynn_fusion_type="
    assert xla_flags.apply_defaults({}) == "--xla_cpu_experimental_ynn_fusion_type="


def test_gpu_memory_fraction_is_set_unless_the_user_set_it():
    env = {}
    xla_flags.apply_defaults(env)
    assert float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) > 0.9  # above the planner's 90%, not JAX's 75%
    env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}
    xla_flags.apply_defaults(env)
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.5"


def test_a_planner_holds_no_gpu_and_its_trainers_preallocate_as_the_user_said():
    env = {}
    xla_flags.for_planner(env)
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and "XLA_FLAGS" in env
    trainer = xla_flags.for_trainer(env)
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in trainer and "XLA_FLAGS" in trainer
    user = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    xla_flags.for_planner(user)
    assert xla_flags.for_trainer(user)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    assert xla_flags.gpu_memory_fraction({}) == 0.75  # JAX's default share
    assert xla_flags.gpu_memory_fraction({"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.92"}) == 0.92
