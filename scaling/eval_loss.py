"""The eval loss of a state over a fixed eval set, and its standard error clustered by document:
what the trainer logs at eval steps and at the end, and what scaling.evaluate recomputes from a
checkpoint (the same code, so the two agree to the bit)."""
from __future__ import annotations

import jax
import numpy as np

from scaling import data as data_lib
from scaling import step as step_lib


def arrays(batch: data_lib.Batch) -> dict[str, np.ndarray]:
    return {"inputs": batch.inputs, "targets": batch.targets, "weights": batch.weights}


def evaluate(comp: step_lib.Compiled, state, data, eval_batches,
             stop=lambda: False) -> dict | None:
    """Mean eval loss over the fixed eval set, and its standard error (see `eval_standard_error`);
    None if `stop()` turned true before the last batch (a SIGTERM must not wait out a long eval)."""
    nll_rows, w_rows = [], []
    for local in map(arrays, eval_batches):
        if stop():
            return None
        rows = local["inputs"].shape[0] * jax.process_count()
        batch = step_lib.global_batch(local, comp.eval_batch_sharding, rows)
        n_B, w_B = comp.eval_step(state["params"], batch)  # global rows, replicated
        nll_rows.append(n_B)
        w_rows.append(w_B)
    nll_R = np.concatenate([np.asarray(jax.device_get(n), np.float64) for n in nll_rows])
    w_R = np.concatenate([np.asarray(jax.device_get(w), np.float64) for w in w_rows])
    loss = float(nll_R.sum() / w_R.sum())
    docs_R = np.concatenate(data.eval_docs) if data.eval_docs else np.arange(len(w_R))
    return {"eval_loss": loss, "eval_bits_per_byte": data.bits_per_byte(loss),
            "eval_loss_se": eval_standard_error(nll_R, w_R, docs_R), "eval_tokens": float(w_R.sum())}


def eval_standard_error(nll_R: np.ndarray, w_R: np.ndarray, cluster_R: np.ndarray) -> float | None:
    """Standard error of the ratio mean sum(nll)/sum(w), clustered by document.

    Tokens of one sequence, and sequences of one document, are correlated (a hard file is hard
    throughout), so the eval's rows are grouped by the document their first target is in and the
    groups treated as independent draws: the cluster-robust (linearised) variance of a ratio
    estimator, G/(G-1) * sum_g (NLL_g - L*W_g)^2 / W^2 (Cameron & Miller 2015, eq. 12). With one
    document per row this is the per-sequence estimator. None when fewer than 2 groups.
    """
    keep = w_R > 0
    groups, inverse = np.unique(cluster_R[keep], return_inverse=True)
    if len(groups) < 2:
        return None
    nll_G = np.bincount(inverse, nll_R[keep])
    w_G = np.bincount(inverse, w_R[keep])
    loss = nll_G.sum() / w_G.sum()
    var = len(groups) / (len(groups) - 1) * np.sum((nll_G - loss * w_G) ** 2) / w_G.sum() ** 2
    return float(np.sqrt(var))
