"""Loss curves under three learning-rate schedules for the annealing law (Tissue et al. 2024) on a
2-core CPU: one size, one budget, constant, cosine and WSD; the law is fitted on the constant and
cosine curves and predicts the WSD curve (held out: role annealing_heldout).

    python -m experiments.study --config=experiments/configs/annealing_cpu.py    # plan ... report (the law's fit)
    (or step by step:)
    python -m experiments.plan --config=experiments/configs/annealing_cpu.py
    python -m experiments.launch --study=studies/annealing_cpu
    python -m experiments.collect --study=studies/annealing_cpu
    cd studies/annealing_cpu && grep -v -- '-wsd,' curves.csv > fit.csv && \
        { head -1 curves.csv; grep -- '-wsd,' curves.csv; } > wsd.csv
    python -m analysis.fit --results fit.csv --law annealing --loss-col eval_loss --predict wsd.csv --out laws

Design: N ~ 6e4 (the `cpu` ladder's rung nearest isoflop_cpu's N_opt at 1.5e12) at C = 3e12 FLOPs,
twice its compute-optimal budget so the curves are long (thousands of steps); the three runs share
steps, batch, peak lr and warmup (the recipe's), so they differ only in the schedule: constant at the
peak, cosine to train.final_lr_frac of it, WSD with a train.cooldown_frac cooldown of shape
train.cooldown_shape. Every logged step carries its lr (curves.csv `lr`); the eval loss is measured
every 100 steps on 65,536 tokens (the law's loss; the train loss of one 1,024-token batch is noisier).

Fields: isoflop_cpu.py documents the `study` section; this mode reads study.annealing:
    sizes      ladder targets (total parameters); one run per size and schedule at every budget
    schedules  train.schedule of each run (scaling.config.SCHEDULES)
    held_out   schedules predicted rather than fitted: their runs have role annealing_heldout
"""
import ml_collections

from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    c.eval.every_steps = 100
    c.eval.tokens = 65536
    c.log.every_steps = 10  # the lr between logged steps is interpolated: keep the cooldown resolved
    c.train.final_lr_frac = 0.1  # cosine: 10x decay (Hoffmann et al. 2022)
    c.train.cooldown_frac = 0.2  # wsd: the last 20% of steps (Hägele et al. 2024)
    c.train.cooldown_shape = "1-sqrt"
    s = c.study
    s.name = "annealing_cpu"
    s.dir = "studies/annealing_cpu"
    s.mode = "annealing"
    s.budgets = (3e12,)
    s.annealing = ml_collections.ConfigDict()
    s.annealing.sizes = (6e4,)
    s.annealing.schedules = ("constant", "cosine", "wsd")
    s.annealing.held_out = ("wsd",)
    s.seeds = (0,)
    s.seed_points = 0
    s.simulations = 0
    s.validation.decades = ()
    s.validation.budgets = ()
    return c
