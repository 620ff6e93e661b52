"""A tiny IsoFLOP grid for CI: plan -> launch -> collect end to end in a few minutes on a 2-core CPU.

Same recipe, prior window and forecast as isoflop_cpu, made small: the ladder's rungs reaching at
least +-0.1 decades either side of the prior (4 and 5 sizes at its two budgets, 9 runs; a parabola
needs 3, the real preset keeps >= 7 over +-0.4 decades), one seed, 40-step minimum, and a 20-study
forecast so the planner's Monte Carlo runs in CI too.

    python -m experiments.plan --config=experiments/configs/isoflop_ci.py --study=/tmp/ci_study

The `study` fields are documented in isoflop_cpu.py; only what differs is set here.
"""
from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    c.model.seq_len = 64
    c.eval.every_steps = 0  # end of run only
    c.eval.tokens = 2048
    c.eval.batch = 8
    c.checkpoint.every_steps = 100
    c.log.every_steps = 10

    s = c.study
    s.name = "isoflop_ci"
    s.dir = "studies/isoflop_ci"
    s.budgets = (2e10, 6e10)
    s.ladder.min_params = 1e4
    s.ladder.max_params = 1e5
    s.ladder.growth = 1.3  # rungs <= 0.15 decades apart, as in every preset
    s.prior.source = "isoflop_ci: centred on its ladder (a CI grid, not a measurement)"
    s.prior.budget = 2e10
    s.prior.params = 1.72e4
    s.sizes.span = 0.1  # at least +-0.1 decades: 4-5 rungs of this ladder
    s.sizes.count = 3  # the fewest a parabola fit needs
    s.seeds = (0,)
    s.seed_points = 0
    s.simulations = 20
    s.tokens_per_param = (2.0, 500.0)
    s.min_steps = 40
    s.wsd.checkpoint_every = 20
    # A one-run validation (N* only) at the grid's smallest budget: CI tests the phase's plumbing (plan,
    # freeze, train, collect, report), not the extrapolation, and a run beyond the grid costs 40 s here.
    s.validation.decades = ()
    s.validation.budgets = (2e10,)
    s.validation.sizes = 1
    s.workers = 2
    s.slurm.time_minutes = 10
    return c
