"""synthetic:markov: the chain's exact entropies, the builder, E* of an eval set, errors, run.json.

The central check is Monte Carlo: the true model's realised log-loss on generated text (computed
token by token from the chain itself, markov.true_nll) must match the exact E* within its sampling
error, both for whole documents (the stream) and for the eval set's windows, where the first
positions of each row see less than k symbols.
"""
import dataclasses
import math

import numpy as np
import pytest

from scaling.config import default_config
from scaling.data import markov, pipeline
from scaling.data.errors import DataError
from scaling.data.markov_corpus import DATASET, MarkovConfig, MarkovParams, SyntheticMarkov
from scaling.data.tokenizer import EOD
from scaling.validate import ConfigError, check

# Short documents and a short window so the boundary terms are large against the sampling error.
SMALL = dict(order=2, alphabet=5, concentration=3.0, mean_doc_len=100.0, seed=3,
             train_tokens=4000, validation_tokens=60000)
SEQ = 4


def data_config(data_dir, **markov_fields):
    c = default_config().data
    c.dataset, c.data_dir = DATASET, str(data_dir)
    c.markov.update({**SMALL, **markov_fields})
    return c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def pipe(data_dir):
    return pipeline.load(data_config(data_dir), seq_len=SEQ, seed=0, global_batch=4,
                         eval_tokens=40000, eval_batch=50)


def _clustered_mean(loss_R, n_R):
    """Mean over targets and its standard error, rows as independent clusters."""
    mean = loss_R.sum() / n_R.sum()
    se = math.sqrt(len(n_R) / (len(n_R) - 1) * np.sum((loss_R - mean * n_R) ** 2)) / n_R.sum()
    return mean, se


def test_stationary_law_and_entropy_chain_rule():
    chain = markov.build_chain(markov.ChainSpec(order=3, alphabet=6, concentration=3.0, mean_doc_len=50, seed=1))
    pi = chain.stationary
    flow = (pi[:, None] * chain.transitions).reshape(6, 36, 6).sum(axis=0).reshape(-1)
    np.testing.assert_allclose(flow, pi, atol=1e-12)
    h = chain.entropies().conditional
    assert h[0] == pytest.approx(-(chain.marginal(1) * np.log(chain.marginal(1))).sum())
    assert all(a >= b - 1e-12 for a, b in zip(h, h[1:]))  # conditioning never raises entropy
    assert h[-1] < h[0] - 0.5  # sparse rows: far below the unigram entropy


def test_documents_are_stationary_with_geometric_lengths():
    chain = markov.build_chain(markov.ChainSpec(order=2, alphabet=4, concentration=3.0, mean_doc_len=8, seed=0))
    docs = markov.sample_documents(chain, 20000, np.random.default_rng(0))
    lengths = np.array([len(d) for d in docs])
    assert lengths.min() >= 1 and lengths.mean() == pytest.approx(8, rel=0.03)
    first = np.array([d[0] - markov.SYMBOLS[0] for d in docs])
    freq = np.bincount(first, minlength=4) / len(first)
    np.testing.assert_allclose(freq, chain.marginal(1), atol=0.015)  # a document starts stationary


def test_stream_loss_matches_monte_carlo():
    chain = markov.build_chain(markov.ChainSpec(**{k: SMALL[k] for k in ("order", "alphabet", "concentration",
                                                                          "mean_doc_len", "seed")}))
    docs = markov.sample_documents(chain, 600, np.random.default_rng(1))
    # Whole documents in context: one row per document, [EOD] doc -> doc [EOD].
    loss_R, n_R = [], []
    for d in docs:
        toks = np.r_[EOD, np.frombuffer(d, np.uint8).astype(np.int64), EOD][None]
        nll = markov.true_nll(chain, toks[:, :-1], toks[:, 1:], EOD)
        loss_R.append(nll.sum())
        n_R.append(nll.size)
    mean, se = _clustered_mean(np.array(loss_R), np.array(n_R, float))
    e_star = chain.entropies().stream_loss()
    assert abs(mean - e_star) < 4 * se, (mean, se, e_star)


def test_eval_true_loss_matches_monte_carlo_and_needs_the_boundary_terms(pipe, data_dir):
    chain = markov.build_chain(MarkovParams(**SMALL).spec)
    loss_R, n_R = [], []
    for b in pipe.eval_set:
        nll = markov.true_nll(chain, b.inputs, b.targets, EOD) * b.weights
        loss_R += list(nll.sum(axis=1))
        n_R += list(b.weights.sum(axis=1))
    n_R = np.array(n_R)
    mean, se = _clustered_mean(np.array(loss_R)[n_R > 0], n_R[n_R > 0])
    assert abs(mean - pipe.true_loss) < 4 * se, (mean, se, pipe.true_loss)
    # Without the short-context terms (every row a full window of whole documents) E* is off by
    # many standard errors: the test would catch an E* that ignores how the eval averages.
    assert abs(mean - chain.entropies().stream_loss()) > 6 * se
    assert abs(mean - chain.entropies().entropy_rate) > 6 * se


def test_dataset_info_carries_parameters_and_entropies(pipe, data_dir):
    builder = SyntheticMarkov(config=MarkovConfig.create(MarkovParams(**SMALL)), data_dir=str(data_dir))
    meta = builder.info.metadata
    assert builder.info.file_format.value == "array_record"
    assert meta["params"] == dataclasses.asdict(MarkovParams(**SMALL))
    ent = markov.build_chain(MarkovParams(**SMALL).spec).entropies()
    assert meta["entropy_rate"] == pytest.approx(ent.entropy_rate)
    assert meta["true_loss_stream"] == pytest.approx(ent.stream_loss())
    assert builder.builder_config.name.endswith(MarkovParams(**SMALL).digest[:12])


def test_different_parameters_never_share_a_dataset():
    names = {MarkovConfig.create(MarkovParams(**{**SMALL, k: v})).name
             for k, v in [("seed", 4), ("concentration", 0.31), ("mean_doc_len", 101.0),
                          ("validation_tokens", 60001)]}
    names.add(MarkovConfig.create(MarkovParams(**SMALL)).name)
    assert len(names) == 5


@pytest.mark.parametrize("field,value,needle", [
    ("order", 0, "data.markov.order=0"), ("alphabet", 200, "data.markov.alphabet=200"),
    ("concentration", -1.0, "data.markov.concentration"), ("mean_doc_len", 1.0, "data.markov.mean_doc_len"),
    ("order", 12, "contexts"),
])
def test_bad_parameters_are_one_line_errors(field, value, needle):
    c = default_config()
    c.data.dataset = DATASET
    c.data.markov[field] = value
    with pytest.raises(ConfigError, match=needle) as e:
        check(c, 1, 1)
    assert "\n" not in str(e.value)


def test_unknown_field_is_named():
    with pytest.raises(DataError, match="data.markov.orderr"):
        MarkovParams.from_config({"orderr": 3})


def test_markov_preset_plans_a_grid_on_its_own_source():
    from experiments.planning.build import make_plan
    from experiments.configs import isoflop_markov

    config = isoflop_markov.get_config()
    assert config.data.dataset == DATASET
    MarkovParams.from_config(config.data.markov)  # a valid chain
    p = make_plan(config, "isoflop_markov.py", epoch=config.data.markov.train_tokens)
    budgets = config.study.budgets
    assert len(budgets) >= 4 and math.log10(max(budgets) / min(budgets)) >= 1.45
    for C in budgets:
        mine = [r for r in p.runs if r.budget == C]
        assert len({r.params for r in mine}) >= 5 and all(r.steps >= 500 for r in mine)
        assert max(r.tokens for r in mine) <= config.data.markov.train_tokens  # one epoch: fresh text
    # Eval precision: the measured study's worst run had SE 0.00232 at 327,680 eval tokens.
    assert 0.00232 * math.sqrt(327_680 / config.eval.tokens) <= 0.002
    assert config.eval.tokens <= config.data.markov.validation_tokens
