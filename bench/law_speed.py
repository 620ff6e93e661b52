"""Time `python -m analysis.fit --law NAME` (default 200 resamples, diagnostics with leave-one-out and
rolling origin) on a 300-row synthetic table per law (issue 19's target: <= 10 s each on the 2-core CPU).

.venv/bin/python bench/law_speed.py [--laws chinchilla,kaplan,...] [--rows 300] [--cache cold|off]

Tables: N in [1e7, 3e9], D/N in [2, 500], unique tokens in {1e8, 1e9, 1e10, 1e13}, 1% log-normal
noise, drawn from the law at the parameters of tests/test_analysis_laws.py; annealing: constant,
cosine and WSD curves of 1,000 steps with the loss every 10 steps (300 rows).
--cache cold (default) gives each law a fresh persistent compilation cache and runs it twice: the
first run compiles (a first use), the second reads the cache (every later use). --cache off runs
once with the cache off (SCALING_JAX_CACHE=off). Wall and CPU (user + sys) seconds per run; the
machine is shared: the load average is printed before and after, and only same-run times compare.
The machine's speed (float32 2048^3 matmul GFLOP/s, before and after) is printed too: these CPUs
range 120-340 GFLOP/s from hour to hour, and the fits' times scale with it.
"""
import argparse
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.laws import registry, schedule

TRUTH = {
    "chinchilla": dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36),
    "broken_power": dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36, gamma=0.03),
    "overtraining": dict(E=1.7, a=2000.0, b=9000.0, eta=0.17),
    "data_constrained": dict(E=1.87, A=521.0, B=1488.0, alpha=0.353, R_D_star=15.4, R_N_star=5.3),
    "kaplan": dict(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103),
}
ANNEAL = dict(L0=2.0, A=0.6, alpha=0.5, C=0.3)


def table(name: str, rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    if name == "annealing":
        return curves(rng)
    law = registry.get(name)
    n = np.exp(rng.uniform(np.log(1e7), np.log(3e9), rows))
    d = n * np.exp(rng.uniform(np.log(2), np.log(500), rows))
    u = np.exp(rng.choice(np.log([1e8, 1e9, 1e10, 1e13]), rows))
    logs = {"log_n": np.log(n), "log_d": np.log(d), "log_u": np.log(u)}
    with jax.enable_x64(True):
        x = {p.name: jnp.full((1, 1), p.to_search(TRUTH[name][p.name])) for p in law.params}
        consts = {k: jnp.float64(v) for k, v in law.constants(logs).items()}
        log_l = np.asarray(law.predict_log(x, {k: jnp.asarray(v) for k, v in logs.items()}, consts))[0]
    return pd.DataFrame({"params": n, "tokens": d, "unique_tokens": u, "loss": np.exp(log_l + 0.01 * rng.standard_normal(rows))})


def curves(rng, steps: int = 1000) -> pd.DataFrame:
    step = np.arange(1, steps + 1, dtype=float)
    warm = np.minimum(1.0, step / 100)
    shapes = {"constant": np.ones(steps), "cosine": 0.5 * (1 + np.cos(np.pi * step / steps)),
              "wsd": np.clip((steps - step) / (0.2 * steps), 0, 1)}
    frames = []
    for kind, shape in shapes.items():
        lr = 1e-3 * warm * shape
        s1, s2 = schedule.areas(step, lr)
        loss = (ANNEAL["L0"] + ANNEAL["A"] * s1 ** -ANNEAL["alpha"] - ANNEAL["C"] * s2) * np.exp(0.01 * rng.standard_normal(steps))
        frames.append(pd.DataFrame({"run_id": kind, "step": step, "lr": lr, "loss": np.where(step % 10 == 0, loss, np.nan)}))
    return pd.concat(frames, ignore_index=True)


def timed(cmd, env) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc.returncode:
        print(rc.stderr[-2000:], file=sys.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), rc.returncode


def machine_speed() -> str:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train_throughput import matmul_flops_per_s
    return f"{matmul_flops_per_s(2048, jnp.float32, repeats=5) / 1e9:.0f} GFLOP/s (float32 2048^3 matmul)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--laws", default="chinchilla,kaplan,overtraining,broken_power,data_constrained,annealing")
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--cache", choices=("cold", "off"), default="cold")
    a = p.parse_args()
    print(f"load average before: {os.getloadavg()}; machine speed {machine_speed()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.laws.split(","):
            path = pathlib.Path(tmp) / f"{name}.csv"
            table(name, a.rows).to_csv(path, index=False)
            cmd = [sys.executable, "-m", "analysis.fit", "--results", str(path), "--law", name, "--out", f"{tmp}/{name}"]
            env = dict(os.environ)
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
            env["SCALING_JAX_CACHE"] = f"{tmp}/cache_{name}" if a.cache == "cold" else "off"
            runs = [timed(cmd, env) for _ in range(2 if a.cache == "cold" else 1)]
            text = "  ".join(f"{label} {w:5.1f} s wall {c:5.1f} s CPU{' FAILED' if rc else ''}"
                             for label, (w, c, rc) in zip(("first", "cached") if a.cache == "cold" else ("off",), runs))
            print(f"{name:<17}{text}", flush=True)
    print(f"load average after: {os.getloadavg()}; machine speed {machine_speed()}")


if __name__ == "__main__":
    main()
