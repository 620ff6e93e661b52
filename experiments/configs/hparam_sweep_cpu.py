"""lr x batch across scale on the 2-core CPU: the sweep hparam_fit turns into lr*(N, D) and B*(N, D) laws.

    python -m experiments.plan --config=experiments/configs/hparam_sweep_cpu.py
    python -m experiments.launch --study=studies/hparam_sweep_cpu
    python -m experiments.collect --study=studies/hparam_sweep_cpu
    python -m experiments.planning.hparam_fit --study studies/hparam_sweep_cpu --rule shared_valley  # DIR/hparam_fit.json
    (then any study: study.hparams = "studies/hparam_sweep_cpu/hparam_fit.json")

Design (issue 20; Step Law, Li et al. 2025, fits lr* and B* per (N, D) group): 5 sizes of the `cpu`
ladder 0.3 decades apart (4.9e3 ... 8.1e4, 1.2 decades: the exponents' intervals shrink with the
spread of log N) x 2 budgets 0.48 decades apart x batch 2, 4, 8 sequences (x 128 tokens) x lr 0.5,
1, 2 times the recipe's lr at that batch (lr*(N) of lr_sweep_cpu, times sqrt(B / 8)): 90 runs when
every batch keeps study.min_steps. The runs of one (C, N) train on the same tokens D at every batch
(planning.grid.sweep_grid), so each (N, D) is one group of 9 runs; 10 groups give lr and batch laws
with two exponents (N and D, D identified because the two budgets move it apart from N).
beta2 stays the recipe's (0.95; lr_sweep_cpu found no gain from 0.99): set study.hparam_sweep.beta2s
to sweep it too.

History: the first design (2026-12-03: sizes 8e3-5e4, budgets 1e11 and 2.7e11, batches 4, 8, 16; 87
runs in 23.0 min with 2 workers) found the smallest batch best in 8 of 10 groups, so B* lay below the
sweep and the laws were loose (lr exponent in N -0.85 [-1.72, -0.07]); hence batches 2-8 and the wider
size range here. Sized by `experiments.plan --probe=off`: 87 runs (batch 8 at 1e11 and 8.1e4 params has
too few steps), 1.77e13 FLOPs, 45 min one run at a time at assumed_flops_per_second = 6.5e9, the rate
one run of lr_sweep_cpu got with 2 workers; with 2 workers about half that. Run 2026-12-03 (2 workers,
load 5-9 from other work): 87 runs in 43.5 min; B* inside the sweep (3.4-5.5 sequences) for the 5
groups with D/N >= 30, at its lower edge (2) for the others; with --rule shared_valley
lr* = 149 N^-0.67 [-1.09, -0.38] D^-0.24 [-0.68, +0.03], B* = 0.59 N^-0.17 [-0.46, +0.17] D^0.25
[-0.01, +0.61] (README, "The sweep across scale").
The `study` fields are documented in isoflop_cpu.py; `hparam_sweep` is the one section only this mode reads.
"""
import ml_collections

from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    # Run fields set here, not inherited, so later edits of isoflop_cpu's cannot change the sweep.
    c.model.seq_len = 128
    c.data.dataset = "stdlib"
    c.eval.every_steps = 0  # the final eval is all the fit reads
    c.eval.tokens = 65536
    c.eval.batch = 16
    c.checkpoint.every_steps = 500
    c.log.every_steps = 25
    s = c.study
    s.name = "hparam_sweep_cpu"
    s.dir = "studies/hparam_sweep_cpu"
    s.mode = "hparam_sweep"
    s.hparam_sweep = ml_collections.ConfigDict()
    s.hparam_sweep.budgets = (1e11, 3e11)  # FLOPs per run (chinchilla convention), 0.48 decades apart
    s.hparam_sweep.sizes = (5e3, 1e4, 2e4, 4e4, 8e4)  # ladder targets (total params), 0.3 decades apart
    s.hparam_sweep.batches = (2, 4, 8)  # sequences per step (256 ... 1024 tokens)
    s.hparam_sweep.lr_multipliers = (0.5, 1.0, 2.0)  # x each run's base lr: factor-2 steps around the rule
    s.hparam_sweep.lrs = ()  # or absolute peak lrs, the same for every run (not both)
    s.hparam_sweep.beta2s = ()  # (): the recipe's beta2
    s.min_steps = 150  # fewer: that (C, N, batch) is dropped (batch 8 at 1e11 and 8.1e4 params: 138 steps)
    s.assumed_flops_per_second = 6.5e9  # one run's rate, 2 workers, lr_sweep_cpu measured (docstring)
    s.seeds = (0,)
    s.seed_points = 0
    s.simulations = 0
    return c
