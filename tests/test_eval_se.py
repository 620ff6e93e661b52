"""The eval loss's standard error: the estimator against simulated repeats, the document clusters the
pipeline assigns, and the fields a real run writes to run.json."""
import numpy as np
import pytest

import train_helpers as th
from scaling.data import batches, pipeline
from scaling.data.tokenizer import EOD
from scaling.eval_loss import eval_standard_error

SEQ = 32


def _simulate(rng, n_docs, rows_per_doc, doc_sd, token_sd=1.0):
    """Per-row NLL sums: every document has its own mean loss (a 'hard file'), tokens vary around it."""
    doc_mean = 2.0 + doc_sd * rng.standard_normal(n_docs)
    docs = np.repeat(np.arange(n_docs), rows_per_doc)
    w = np.full(len(docs), float(SEQ))
    w[-1] = 7.0  # a trimmed last row
    nll = doc_mean[docs] * w + token_sd * np.sqrt(w) * rng.standard_normal(len(docs))
    return nll, w, docs


@pytest.mark.parametrize("doc_sd", [0.0, 0.3])
def test_se_matches_the_spread_of_repeated_evals(doc_sd):
    rng = np.random.default_rng(0)
    losses, ses, row_ses = [], [], []
    for _ in range(400):
        nll, w, docs = _simulate(rng, n_docs=40, rows_per_doc=8, doc_sd=doc_sd)
        losses.append(nll.sum() / w.sum())
        ses.append(eval_standard_error(nll, w, docs))
        row_ses.append(eval_standard_error(nll, w, np.arange(len(w))))
    spread = np.std(losses, ddof=1)
    assert np.mean(ses) == pytest.approx(spread, rel=0.15)
    if doc_sd:  # rows of one document are correlated: treating rows as independent understates it
        assert np.mean(row_ses) < 0.5 * spread


def test_se_needs_two_documents():
    assert eval_standard_error(np.array([3.0, 4.0]), np.array([2.0, 2.0]), np.array([5, 5])) is None
    assert eval_standard_error(np.array([3.0, 4.0, 1.0]), np.array([2.0, 2.0, 0.0]), np.array([1, 2, 3])) > 0


def test_eval_rows_share_a_document_only_without_an_eod_between(tmp_path):
    cfg = pipeline.markov_corpus.MarkovParams(order=2, alphabet=5, concentration=3.0, mean_doc_len=40.0,
                                              train_tokens=2000, validation_tokens=20000)
    data = th_data_config(tmp_path, cfg)
    pipe = pipeline.load(data, seq_len=SEQ, seed=0, global_batch=4, eval_tokens=8000, eval_batch=16)
    docs = np.concatenate(pipe.eval_docs)
    seq = batches.eval_sequence_indices(pipe.eval.n_sequences, 8000, SEQ)
    stream = np.asarray(pipe.eval.tokens)
    assert (docs[len(seq):] == -1).all()
    for i in range(len(seq) - 1):
        between = stream[seq[i] * SEQ + 1: seq[i + 1] * SEQ + 1]
        assert (docs[i] == docs[i + 1]) == (EOD not in between)


def th_data_config(tmp_path, params):
    from scaling.config import default_config
    c = default_config().data
    c.dataset, c.data_dir = "synthetic:markov", str(tmp_path)
    c.markov.update({k: getattr(params, k) for k in c.markov})
    return c


def test_run_json_has_se_tokens_and_true_loss(tmp_path):
    out = th.train(tmp_path / "run", tmp_path / "tfds", "--config.data.dataset=synthetic:markov",
                   "--config.data.markov.train_tokens=20000", "--config.data.markov.validation_tokens=20000",
                   "--config.train.steps=20", "--config.eval.every_steps=0", "--config.eval.tokens=2048")
    assert out.returncode == 0, out.stderr[-2000:]
    r = th.run_json(tmp_path / "run")
    assert r["eval_tokens_used"] == 2048
    assert 0 < r["final_eval_loss_se"] < 0.2
    assert 0 < r["true_loss"] < r["final_eval_loss"]
