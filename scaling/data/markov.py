"""A random order-k Markov chain over a small byte alphabet, and its exact entropies.

The chain's state is the last k symbols (a context c in [0, A^k)); its transition rows P[c] are drawn
from a hierarchical Dirichlet prior (`build_chain`): a small concentration alpha puts most of a row's
mass on a few successors and makes each longer context differ from its suffix, so a model has to
store many sparse rows, of every order up to k, to reach the entropy rate; the stationary context
frequencies are uneven, so rare contexts keep being learned as data grows.

Documents are independent stretches of the stationary chain: the first k symbols are one draw of the
stationary k-gram distribution pi_k, the rest follow P; after every symbol the document ends with
probability q (geometric length >= 1, independent of the content). Hence the exact optimal loss of
any target depends only on what precedes it within its document and within the model's window:
    a document's first symbol                 H_0
    a symbol with j visible predecessors      -log(1-q) + H_min(j,k)
    the end of a document (EOD)               -log q
where H_j = H(X_j | X_0..X_{j-1}) under the stationary chain = H(pi_{j+1}) - H(pi_j) (chain rule;
pi_j, the stationary j-gram law, is a marginal of pi_k) and H_k is the entropy rate
h = sum_c pi_k(c) H(P[c]) (Cover & Thomas 2006, Thm. 4.2.4).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

# Printable, so a document reads as text in a debugger; byte values are otherwise arbitrary.
SYMBOLS = bytes(range(33, 127))
MAX_STATES = 1 << 22  # A^k contexts: 4M rows of float64 is already 32 MB per symbol


@dataclasses.dataclass(frozen=True)
class ChainSpec:
    order: int  # k
    alphabet: int  # A
    concentration: float  # alpha of the hierarchical Dirichlet prior (build_chain)
    mean_doc_len: float  # 1/q: mean document length in symbols
    seed: int


@dataclasses.dataclass(frozen=True)
class Entropies:
    """Everything the exact optimal loss needs (nats)."""

    conditional: tuple[float, ...]  # H_0..H_k; H_k is the entropy rate
    stop_prob: float  # q

    @property
    def order(self) -> int:
        return len(self.conditional) - 1

    @property
    def entropy_rate(self) -> float:
        return self.conditional[-1]

    def byte_loss(self, visible: np.ndarray) -> np.ndarray:
        """Expected optimal loss of a symbol target with `visible` same-document predecessors."""
        h = np.asarray(self.conditional)[np.minimum(visible, self.order)]
        return np.where(visible > 0, h - math.log1p(-self.stop_prob), h)

    def stream_loss(self) -> float:
        """Mean optimal loss per target of the packed stream with whole documents in context.

        A document of length l has l symbol targets and one EOD target; with l ~ Geometric(q) on
        {1, 2, ...}, P(l > j) = (1-q)^j, so the j-th symbol (j >= 1) exists with that probability.
        """
        q, k = self.stop_prob, self.order
        h = self.conditional
        doc = h[0] - math.log(q)  # the first symbol and the EOD: every document has both
        doc += sum((1 - q) ** j * (h[j] - math.log1p(-q)) for j in range(1, k))
        doc += (1 - q) ** k / q * (h[k] - math.log1p(-q))  # sum_{j>=k} (1-q)^j
        return doc / (1.0 / q + 1.0)


@dataclasses.dataclass(frozen=True)
class Chain:
    spec: ChainSpec
    transitions: np.ndarray  # [A^k, A] float64, rows sum to 1
    stationary: np.ndarray  # [A^k] float64: pi_k, the stationary law of the context

    @property
    def n_states(self) -> int:
        return self.transitions.shape[0]

    def successor(self, context: np.ndarray, symbol: np.ndarray) -> np.ndarray:
        return (context * self.spec.alphabet + symbol) % self.n_states

    def marginal(self, j: int) -> np.ndarray:
        """pi_j over the last j symbols of the context, indexed like a j-symbol context."""
        a, k = self.spec.alphabet, self.spec.order
        return self.stationary.reshape(a ** (k - j), a ** j).sum(axis=0)

    def entropies(self) -> Entropies:
        joint = [_entropy(self.marginal(j)) for j in range(self.spec.order + 1)]
        cond = [joint[j + 1] - joint[j] for j in range(self.spec.order)]
        cond.append(float(np.dot(self.stationary, _row_entropies(self.transitions))))
        return Entropies(conditional=tuple(float(x) for x in cond), stop_prob=1.0 / self.spec.mean_doc_len)


def build_chain(spec: ChainSpec) -> Chain:
    """Rows from a hierarchical Dirichlet prior over context length (MacKay & Peto 1995; Teh 2006):

        G_0 = uniform,   G_j(.|x_1..x_j) ~ Dir(alpha * G_{j-1}(.|x_2..x_j)),   P = G_k.

    Each longer context refines its suffix's distribution, so every order carries information of its
    own (H_0 > H_1 > ... > H_k): a model improves by degrees as it stores more and longer contexts,
    instead of having to find the order-k table at once (with independent rows the lower-order
    marginals are uniform and small models learn nothing beyond unigrams).
    """
    a, k = spec.alphabet, spec.order
    rng = np.random.Generator(np.random.Philox(key=[spec.seed, 0x6D61726B]))
    rows = np.full((1, a), 1.0 / a)
    for j in range(1, k + 1):
        parent = rows[np.arange(a ** j) % a ** (j - 1)]  # the row of each context's (j-1)-suffix
        rows = _dirichlet_rows(rng, spec.concentration * parent)
    return Chain(spec=spec, transitions=rows, stationary=stationary_law(rows, a))


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    # Normalised Gamma draws = Dirichlet. A draw can underflow to 0 in float64 for tiny shapes; such
    # a transition simply never happens, consistently in sampling and in the entropies.
    g = rng.standard_gamma(np.maximum(alpha, 1e-300))
    empty = g.sum(axis=1) == 0
    g[empty, np.argmax(alpha[empty], axis=1)] = 1.0  # a row that underflowed entirely keeps its likeliest
    return g / g.sum(axis=1, keepdims=True)


def stationary_law(transitions: np.ndarray, alphabet: int, tol: float = 1e-14,
                   max_iter: int = 100_000) -> np.ndarray:
    """pi with pi = pi T by power iteration on the context chain (c -> (c*A + x) mod A^k).

    Averaging each iterate with the previous one (a lazy chain) removes periodicity without
    changing the fixed point.
    """
    n, a = transitions.shape
    pi = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        flow = (pi[:, None] * transitions).reshape(a, n // a, a).sum(axis=0).reshape(n)
        new = 0.5 * (pi + flow)
        if np.abs(new - pi).sum() < tol:
            return new / new.sum()
        pi = new
    raise RuntimeError(f"the stationary law did not converge in {max_iter} iterations; "
                       "raise data.markov.concentration (rows this sparse barely mix)")


def sample_documents(chain: Chain, n_docs: int, rng: np.random.Generator, slots: int = 512) -> list[bytes]:
    """`n_docs` independent documents with i.i.d. Geometric(q) lengths on {1, 2, ...}.

    Lengths are drawn first; documents i, i+slots, i+2*slots... are then written back to back in
    slot i % slots, all slots advancing together (one vectorised step per symbol position).
    """
    spec = chain.spec
    a, k = spec.alphabet, spec.order
    lengths = rng.geometric(1.0 / spec.mean_doc_len, size=n_docs)
    slots = max(1, min(slots, n_docs))
    per_slot = [lengths[s::slots] for s in range(slots)]
    steps = max(int(x.sum()) for x in per_slot)
    ends = np.zeros((steps + 1, slots), bool)  # ends[t, s]: the symbol at t ends a document
    for s, ls in enumerate(per_slot):
        ends[np.cumsum(ls) - 1, s] = True
    cdf_k = np.cumsum(chain.stationary)
    cdf_rows = np.cumsum(chain.transitions, axis=1)
    powers = a ** np.arange(k - 1, -1, -1)

    def draw_start(n):
        return np.minimum(np.searchsorted(cdf_k, rng.random(n) * cdf_k[-1], side="right"), chain.n_states - 1)

    start, pos, ctx = draw_start(slots), np.zeros(slots, np.int64), np.zeros(slots, np.int64)
    out = np.zeros((steps, slots), np.uint8)
    for t in range(steps):
        in_prefix = pos < k
        sym = np.where(in_prefix, (start // powers[np.minimum(pos, k - 1)]) % a, 0)
        rest = np.flatnonzero(~in_prefix)
        if len(rest):
            cdf = cdf_rows[ctx[rest]]
            u = rng.random(len(rest))[:, None] * cdf[:, -1:]
            sym[rest] = np.minimum((u >= cdf).sum(axis=1), a - 1)
        out[t] = sym
        ctx = np.where(in_prefix, np.where(pos == k - 1, start, ctx), chain.successor(ctx, sym))
        pos += 1
        restart = np.flatnonzero(ends[t])
        if len(restart):
            start[restart], pos[restart] = draw_start(len(restart)), 0
    symbols = np.frombuffer(SYMBOLS, np.uint8)
    docs: list[bytes | None] = [None] * n_docs
    for s, ls in enumerate(per_slot):
        offsets = np.r_[0, np.cumsum(ls)]
        text = symbols[out[:, s]]
        for j in range(len(ls)):
            docs[s + j * slots] = text[offsets[j]:offsets[j + 1]].tobytes()
    return docs


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _row_entropies(rows: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(rows > 0, rows * np.log(rows), 0.0).sum(axis=1)


def optimal_losses(entropies: Entropies, inputs: np.ndarray, targets: np.ndarray, eod_id: int) -> np.ndarray:
    """[n, L] expected loss of the true model at each target, given where the EODs are.

    The model sees inputs[:i+1] of its row; its context is what follows the last EOD among them, or
    the whole row prefix when there is none (the row started inside a document). Lengths are
    independent of content, so conditioning on the EOD layout leaves the symbol laws stationary.
    """
    n, length = inputs.shape
    i_L = np.arange(length)
    last_eod_NxL = np.maximum.accumulate(np.where(inputs == eod_id, i_L, -1), axis=1)
    visible_NxL = np.where(last_eod_NxL >= 0, i_L - last_eod_NxL, i_L + 1)
    return np.where(targets == eod_id, -math.log(entropies.stop_prob), entropies.byte_loss(visible_NxL))


def true_nll(chain: Chain, inputs: np.ndarray, targets: np.ndarray, eod_id: int) -> np.ndarray:
    """[n, L] realised -log p(target | visible context) of the true model (for Monte Carlo checks)."""
    a, k = chain.spec.alphabet, chain.spec.order
    q = 1.0 / chain.spec.mean_doc_len
    marginals = [chain.marginal(j) for j in range(k + 1)]
    out = np.empty(inputs.shape, np.float64)
    for r in range(inputs.shape[0]):
        ctx: list[int] = []
        for i in range(inputs.shape[1]):
            x = int(inputs[r, i])
            ctx = [] if x == eod_id else (ctx + [x - SYMBOLS[0]])[-k:]
            t = int(targets[r, i])
            if t == eod_id:
                out[r, i] = -math.log(q)
                continue
            y, c = t - SYMBOLS[0], len(ctx)
            stop = 0.0 if x == eod_id else -math.log1p(-q)  # a document's first symbol is never an EOD
            if c == k:
                p = chain.transitions[_index(ctx, a), y]
            else:
                p = marginals[c + 1][_index(ctx + [y], a)] / marginals[c][_index(ctx, a)]
            out[r, i] = stop - math.log(p)
    return out


def _index(symbols: list[int], a: int) -> int:
    c = 0
    for s in symbols:
        c = c * a + s
    return c
