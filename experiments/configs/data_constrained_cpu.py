"""Data-constrained study on the embedded stdlib corpus for a 2-core CPU: sizes x unique-token limits
at fixed compute, so the runs repeat their data for 1 to ~60 epochs (Muennighoff et al. 2023).

    python -m experiments.study --config=experiments/configs/data_constrained_cpu.py    # plan ... report (the law's fit)
    (or step by step:)
    python -m experiments.plan --config=experiments/configs/data_constrained_cpu.py
    python -m experiments.launch --study=studies/data_constrained_cpu
    python -m experiments.collect --study=studies/data_constrained_cpu
    python -m analysis.fit --results studies/data_constrained_cpu/results.csv --law data_constrained \
        --unique-col unique_tokens --out studies/data_constrained_cpu/laws

Design: 2 budgets (4.8e11, 1.5e12: isoflop_cpu's middle) x 3 sizes of the `cpu` ladder around
isoflop_cpu's measured optimum (N_opt(1.5e12) ~ 6e4) x 4 limits on unique tokens (the whole split,
and 1e6, 2.5e5, 6e4 tokens): each run spends its budget, so D is fixed by (C, N) and the limit sets
the epochs D / U. Every run has role data_constrained (never an IsoFLOP point: a (C, N) has one run
per limit); results.csv carries unique_tokens and epochs, which the law reads directly. The runs with
the whole split (-Uall) see each token at most once, so they anchor E, A, B, alpha; the limited ones
measure how fast repeated tokens lose their worth (R_D*) and excess parameters theirs (R_N*).

Fields: isoflop_cpu.py documents the `study` section; this mode reads study.data_constrained:
    sizes          ladder targets (total parameters), each mapped to the recipe's shape
    unique_tokens  data.unique_tokens of each run (0: the whole training split); each is rounded up
                   to whole sequences of model.seq_len and recorded exactly in run.json
The subset is drawn from the run's seed (scaling/data/subset.py), so runs of one seed share it.
"""
import ml_collections

from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    c.eval.every_steps = 0  # the final eval is all the law reads
    c.eval.tokens = 65536
    s = c.study
    s.name = "data_constrained_cpu"
    s.dir = "studies/data_constrained_cpu"
    s.mode = "data_constrained"
    s.budgets = (4.8e11, 1.5e12)
    s.data_constrained = ml_collections.ConfigDict()
    s.data_constrained.sizes = (2e4, 6e4, 1.8e5)  # 0.5 decades apart around N_opt(1.5e12)
    s.data_constrained.unique_tokens = (0, 1_000_000, 250_000, 60_000)
    s.seeds = (0,)
    s.seed_points = 0
    s.simulations = 0
    s.validation.decades = ()  # no prediction test beyond the grid in this mode
    s.validation.budgets = ()
    return c
