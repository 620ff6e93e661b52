"""Kaplan et al. 2020 laws and Chinchilla Approach 1 on synthetic data from known laws."""
import numpy as np
import pandas as pd
import pytest

from analysis.laws import allocation, approach1, kaplan
from analysis.tables import tables
from analysis.uncertainty.synthetic import curves_table


def test_single_laws_recover_power_laws():
    n = np.logspace(6, 9, 12)
    law = kaplan.SingleLaw(8.8e13, 0.076)
    got = kaplan.fit_single(n, law(n))
    assert got.exponent == pytest.approx(0.076, rel=1e-6)
    assert got.scale == pytest.approx(8.8e13, rel=1e-4)


def test_envelope_keeps_only_improving_runs():
    x = np.array([1, 2, 2, 3, 4.0])
    loss = np.array([3.0, 2.5, 2.8, 2.9, 2.0])
    assert list(kaplan.envelope(x, loss)) == [0, 1, 4]


def test_joint_law_recovered_and_nonembedding_n_used(tmp_path):
    truth = kaplan.JointLaw(N_c=8.8e13, D_c=5.4e13, alpha_N=0.076, alpha_D=0.095)
    n = np.repeat(np.logspace(6, 9, 6), 6)
    d = np.tile(np.logspace(8, 11, 6), 6)
    df = pd.DataFrame({"params": n * 1.2, "non_embedding_params": n, "tokens": d, "loss": truth(n, d)})
    df.to_csv(tmp_path / "k.csv", index=False)
    k = kaplan.fit_kaplan(tables.load_runs(tmp_path / "k.csv"))
    assert k.nonembedding
    assert k.joint.alpha_N == pytest.approx(0.076, rel=1e-4)
    assert k.joint.alpha_D == pytest.approx(0.095, rel=1e-4)
    assert k.joint.N_c == pytest.approx(8.8e13, rel=1e-3)


def test_approach1_envelope_recovers_eq4_exponents(tmp_path):
    law = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)
    sizes = np.logspace(7, 10, 31)
    curves_table(tmp_path / "c.csv", law, sizes, max_flops=1e22, points=80)
    res = approach1.fit_approach1(tables.load_curves(tmp_path / "c.csv"), n_points=300)
    a, b, _ = allocation.exponents(law)
    assert res.n_law.exponent == pytest.approx(a, abs=0.02)
    assert res.d_law.exponent == pytest.approx(b, abs=0.02)
    assert res.used.sum() > 20


def test_curves_skip_rows_without_the_loss(tmp_path):
    df = pd.DataFrame({"run_id": ["a"] * 3, "params": [1e7] * 3, "step": [0, 1, 2], "tokens": [0, 1e6, 2e6],
                       "train_loss": [9.0, 5.0, 4.0], "eval_loss": [np.nan, 5.1, np.nan]})
    df.to_csv(tmp_path / "c.csv", index=False)
    c = tables.load_curves(tmp_path / "c.csv", "eval_loss")
    assert list(c.loss) == [5.1]
    assert list(tables.load_curves(tmp_path / "c.csv").loss) == [5.0, 4.0]  # default: train_loss
    np.testing.assert_allclose(c.flops, [6 * 1e7 * 1e6])
