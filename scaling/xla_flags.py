"""XLA flags the trainer sets by default, each one measured; flags a user sets in XLA_FLAGS win.

XLA reads XLA_FLAGS when it creates its first backend, so `apply_defaults` must run before the
first JAX computation (importing jax is fine).
"""
from __future__ import annotations

import os
from typing import MutableMapping

DEFAULTS = {
    # XLA:CPU hands some dots to YNNPACK and the rest to Eigen; leaving all of them to Eigen made
    # the 10M-parameter f32 train step 17% faster on the 2-core CPU (bench/train_throughput.py,
    # alternating runs: 3.12/3.13 s -> 2.65/2.60 s per step). Ignored on GPUs.
    "xla_cpu_experimental_ynn_fusion_type": "",
}


# JAX's GPU client takes 75% of the device's memory unless told otherwise (bytes_limit 112.6 GB of
# an H200's 150.8 GB, measured 2026-12-04). The planner fits each run into 90% of
# study.device_memory_gb, so on an 80 GB H100 a run planned at 64-72 GB would run out of memory.
# 0.92 leaves ~6 GB of an H100 to the CUDA context and the libraries' handles. Ignored on CPUs.
ENVIRONMENT = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.92"}


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> str:
    """Append each default flag the user has not set to XLA_FLAGS and set each ENVIRONMENT variable
    the user has not set; returns XLA_FLAGS."""
    for name, value in ENVIRONMENT.items():
        environ.setdefault(name, value)
    flags = environ.get("XLA_FLAGS", "")
    for name, value in DEFAULTS.items():
        if f"--{name}=" not in flags:
            flags = f"{flags} --{name}={value}"
    environ["XLA_FLAGS"] = flags.strip()
    return environ["XLA_FLAGS"]


# A process that plans or launches runs but trains none (experiments.plan, experiments.study) must not
# hold a GPU: JAX's client preallocates its fraction of every visible device at the first jax.devices(),
# which a local study's trainers then cannot have.
PLANNER_ENVIRONMENT = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
_PLANNER_SET = "SCALING_PLANNER_SET"  # the names for_planner set, for for_trainer to take back


def for_planner(environ: MutableMapping[str, str] = os.environ) -> None:
    """The trainer's defaults (its XLA flags for a throughput probe) and no GPU memory taken up front;
    before the first JAX computation."""
    apply_defaults(environ)
    added = [name for name in PLANNER_ENVIRONMENT if name not in environ]
    for name in added:
        environ[name] = PLANNER_ENVIRONMENT[name]
    if added:
        environ[_PLANNER_SET] = ",".join(added)


def for_trainer(env: dict[str, str]) -> dict[str, str]:
    """A copy of a planner's environment without what for_planner added: trainers preallocate."""
    env = dict(env)
    for name in filter(None, env.pop(_PLANNER_SET, "").split(",")):
        env.pop(name, None)
    return env


def gpu_memory_fraction(environ: MutableMapping[str, str] = os.environ) -> float:
    """The share of each GPU JAX's client may use in a process with this environment (JAX's default
    0.75 unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise): a device's bytes_limit over its memory."""
    return float(environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", 0.75))
