"""Does the best learning rate move with width? muP against SP on the 2-core CPU (issue 20).

    python -m experiments.plan --config=experiments/configs/mup_transfer_cpu.py
    python -m experiments.launch --study=studies/mup_transfer_cpu
    python -m experiments.collect --study=studies/mup_transfer_cpu
    python -m experiments.planning.lr_transfer --study studies/mup_transfer_cpu   # lr_transfer.json, .png

Design (Yang et al. 2022, "Tensor Programs V", Fig. 1: the loss against lr at several widths, SP
beside muP): 4 widths, d_model 16, 32, 64, 128 (0.9 decades), of the cpu recipe's width-only family at
a FIXED depth of 2 layers and one head as wide as the model (study.lr_sweep.widths, n_layer), x 7 peak
lrs 1e-3 ... 6.4e-2 in factor-2 steps x model.parametrization sp and mup, one seed: 56 runs, role
lr_sweep, ids w<d_model>-lr<lr>-b0.95-<sp|mup>. Every run trains the same 229,376 tokens (224 steps
of 8 x 128, study.lr_sweep.tokens) with the same warmup (22 steps, the recipe's cap) and cosine
schedule: muP's claim is that the best lr of one schedule does not move with width, so the widths
must not also differ in steps (a fixed budget would give width 16 23x the steps of width 128). muP's
base width is 16, the smallest: there muP is SP bit for bit (the two w16 rows must agree), and the
wider models are muP's transfer of it. The grid is 1.8 decades wide so that SP's optimum, expected to
fall with width (lr_sweep_cpu's lr*(N) ~ N^-0.42 puts width 128 ~4x below width 16), and muP's,
expected to stay near width 16's, both have at least two swept lrs on each side at every width.
lr_transfer fits a parabola in log10 lr to the final eval loss over each (parametrization, width)'s
best run and its two neighbours either side; the spread of log10 lr* across widths is the result.

Why not widths 32 ... 256: at 2 layers their FLOPs per token sum to 1.55e7 (3.4x these), which at 40
run-minutes leaves ~70 steps per run, too few to mean anything.

Sized by the planner's own estimate: `experiments.plan --probe=off` says 56 runs, 1.49e13 FLOPs,
38m12s of training one run at a time at assumed_flops_per_second = 6.5e9 (hparam_sweep_cpu.py says
where that rate comes from), so about 19 minutes on 2 workers. These runs are small, so start-up
weighs more than in lr_sweep_cpu's: one run (w32, mup, lr 0.016) took 44 s in the trainer (19 s of
it compiling, load average 8 from other work) against the 13 s estimated; expect the wall time above
the estimate by up to ~30 s per run. Run 2026-12-03 (2 workers, load 5-6 from other work): 56 runs
in 12.4 min; muP's lr* moved 0.19 decades across the widths, SP's 1.15 (README).
The `study` fields are documented in isoflop_cpu.py; `lr_sweep` is the one section only this mode reads.
"""
import ml_collections

from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    # Run fields set here, not inherited, so later edits of isoflop_cpu's cannot change the sweep.
    c.model.seq_len = 128
    c.model.mup_base_width = 16  # muP's multipliers are 1 at the smallest width: muP = SP there, bit for bit
    c.model.mup_base_head_dim = 0  # one head, as wide as the model: the base head is as wide as the base
    c.data.dataset = "stdlib"
    c.eval.every_steps = 0  # the final eval is all the fit reads
    c.eval.tokens = 65536
    c.eval.batch = 16
    c.checkpoint.every_steps = 500
    c.log.every_steps = 25
    s = c.study
    s.name = "mup_transfer_cpu"
    s.dir = "studies/mup_transfer_cpu"
    s.mode = "lr_sweep"
    s.lr_sweep = ml_collections.ConfigDict()
    s.lr_sweep.widths = (16, 32, 64, 128)  # d_model, the cpu recipe's one head as wide as the model
    s.lr_sweep.n_layer = 2  # fixed depth: muP transfers across width, not depth (models/mup.py)
    s.lr_sweep.tokens = 229376  # every run: 224 steps of 8 x 128 tokens, at every width
    s.lr_sweep.lrs = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2)  # 1e-3 ... 6.4e-2, factor-2 steps (1.8 decades)
    s.lr_sweep.beta2s = (0.95,)  # the cpu recipe's
    s.lr_sweep.parametrizations = ("sp", "mup")
    s.tokens_per_param = (0.1, 1e4)  # D/N falls with width by design (fixed D): no band to keep
    s.min_steps = 200  # 224 steps at the recipe's batch 8: no halving
    s.assumed_flops_per_second = 6.5e9  # one run's rate, 2 workers, lr_sweep_cpu measured (hparam_sweep_cpu.py)
    s.seeds = (0,)
    s.seed_points = 0
    s.simulations = 0
    return c
