"""Calibrate the `cpu` recipe's optimiser on this 2-core CPU: sizes x peak lr x Adam beta2 at one budget.

    python -m experiments.plan --config=experiments/configs/lr_sweep_cpu.py
    python -m experiments.launch --study=studies/lr_sweep_cpu
    python -m experiments.collect --study=studies/lr_sweep_cpu
    python -m experiments.planning.lr_fit --study=studies/lr_sweep_cpu

Every run spends the same budget (6e11 FLOPs, inside isoflop_cpu's budgets) at the batch the grid
uses (8 x 128 tokens), so what it measures is the lr the grid's runs need. lr_fit fits, per size and
beta2, a parabola in log lr to the final eval loss (its vertex is lr*), then lr*(N) = lr* at 1e5 *
(N / 1e5)^-p across sizes; the recipe (experiments/ladder.py, RECIPES["cpu"]) carries the result with
the figures this command printed. The sizes straddle the compute-optimal size at this budget, so the
best loss per size also places the isoflop_cpu prior's N_opt (study.prior there).

Measured (2026-12-01, 2 workers, load 10-17 from other work on the machine): 30 runs in 25.3 minutes
(over the 20-minute target because of that load: the runs' own time sums to 46 minutes); lr_fit gives
b2 = 0.95 and lr*(N) = 0.00578 * (N / 1e5)^-0.42, figures in experiments/ladder.py's docstring.

The `study` fields are documented in isoflop_cpu.py; `lr_sweep` is the one section only this mode reads.
"""
import ml_collections

from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    # Run fields set here, not inherited, so later edits of isoflop_cpu's cannot change a calibration.
    c.model.seq_len = 128
    c.data.dataset = "stdlib"
    c.eval.every_steps = 0  # the final eval is all the fit reads
    c.eval.tokens = 65536
    c.eval.batch = 16
    c.checkpoint.every_steps = 500
    c.log.every_steps = 25
    s = c.study
    s.name = "lr_sweep_cpu"
    s.dir = "studies/lr_sweep_cpu"
    s.mode = "lr_sweep"
    s.lr_sweep = ml_collections.ConfigDict()
    s.lr_sweep.budget = 6e11  # FLOPs per run (chinchilla convention), inside isoflop_cpu's range
    s.lr_sweep.sizes = (1.4e4, 3.5e4, 9e4)  # ladder targets (total params), 0.4 decades apart
    s.lr_sweep.lrs = (1.5e-3, 3e-3, 6e-3, 1.2e-2, 2.4e-2)  # factor-2 steps: a parabola in log lr
    # Porian et al. 2024 (Sec. 3.4) find beta2 = 0.95 hurts at small batch (~1k tokens here): 0.99 vs 0.95.
    s.lr_sweep.beta2s = (0.95, 0.99)
    s.seeds = (0,)
    s.seed_points = 0
    s.simulations = 0
    return c
