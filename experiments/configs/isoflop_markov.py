"""IsoFLOP study on `synthetic:markov`, a source whose optimal loss E* is known exactly.

    python -m experiments.plan --config=experiments/configs/isoflop_markov.py
    python -m experiments.launch --study=studies/isoflop_markov
    python -m experiments.collect --study=studies/isoflop_markov
    python -m analysis.fit --results studies/isoflop_markov/results.csv --approach all --out studies/isoflop_markov

Every run's run.json carries `true_loss`, the exact optimal mean loss of its own eval set (the chain's
entropy rate, corrected for the first positions of each eval row, whose context is shorter than the
order, and for the end-of-document targets; scaling/data/markov.py); collect copies it into
results.csv and analysis.fit reports each fitted E against it (fits.json: extra.E_rel_error).

The source (data.markov.*, the defaults): an order-4 chain over 12 symbols whose rows come from a
hierarchical Dirichlet prior with concentration 6 (each longer context refines its suffix's row).
Stationary conditional entropies H_0..H_4 = 2.354, 1.844, 1.305, 1.040, 0.929 nats: every order adds
information, so small models learn bigrams and trigrams and larger ones keep storing 4-symbol
contexts (753 of the 20,736 hold 90% of the stationary mass, 1,676 hold 99%). E* of the eval set at
seq_len 128 is 0.960 (the stream's 0.947 plus the short contexts at each row's start). Geometric
documents of mean 512 symbols, 20M training and 1M validation symbols, built on first use (~1 min).
A pilot at C=6.5e11 (old `small` ladder) ended 0.17 nats above E* at N=1.2e4 and 5.2e4 (a tie:
the prior below) and 0.31 above at 1.1e5; the harder alphabet=16, concentration=8 ended 0.27-0.44
above its E* = 1.127 on the same three runs.

The grid is isoflop_cpu's (the `cpu` ladder, sizes in a window around a prior N_opt(C), min steps
by batch) with rungs 0.15 decades apart, on budgets a factor ~2 below it, one seed per point, so the
whole study fits in <= 45 minutes on this 2-core CPU; only what differs is set here (fields
documented in isoflop_cpu.py).
"""
from experiments.configs import isoflop_cpu


def get_config():
    c = isoflop_cpu.get_config()
    c.data.dataset = "synthetic:markov"
    m = c.data.markov
    m.order = 4
    m.alphabet = 12
    m.concentration = 6.0
    m.mean_doc_len = 512.0
    m.seed = 0
    m.train_tokens = 20_000_000
    m.validation_tokens = 1_000_000
    # SE of the final eval loss <= 0.002 nats: 65,536 tokens gave SE 0.0045 on this source (per-token
    # std ~1.15 nats, documents independent), so 5x that; end of run only (Approach 1 reads the
    # training curves), as a mid-run eval this size would cost as much as a small run's training.
    c.eval.tokens = 327_680
    c.eval.batch = 64
    c.eval.every_steps = 0

    s = c.study
    s.name = "isoflop_markov"
    s.dir = "studies/isoflop_markov"
    s.budgets = (1e11, 3e11, 1e12, 3e12)  # 1.48 decades
    s.prior.source = "pilot on this source: at C=6.5e11 N=1.2e4 and 5.2e4 tie (1.130, 1.127 nats), 1.1e5 worse"
    s.prior.budget = 6.5e11
    s.prior.params = 2.5e4
    s.prior.a = 0.5
    s.ladder.min_params = 4e3  # the prior puts the smallest budget's optimum near 1e4
    s.ladder.growth = 1.41  # 0.15 decades: 5-6 sizes per budget, so the study fits its 45 minutes
    s.sizes.count = 5
    s.sizes.span = 0.35
    s.seeds = (0,)
    s.seed_points = 0
    s.noise = 0.003
    return c
