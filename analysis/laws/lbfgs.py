"""Batched L-BFGS in JAX: many independent starts of one small smooth problem, all at once.

Chinchilla's Approach 3 runs L-BFGS from 4,500 starts (Hoffmann et al. 2022, App. D.2). A Python
loop over scipy calls spends its time in interpreter overhead on a 5-parameter problem; here every
start is one row of a (starts x params) array and each step is one fused pass over a
(starts x runs) array inside one jitted while-loop. Choices, each measured on the 2-core CPU:
- One function evaluation per step: the Armijo backtracking is a per-slot state machine, not an
  inner loop that re-evaluates the whole batch whenever one slot backtracks (that cost ~5x).
- The batch is written out by hand instead of with vmap, and the two-loop recursion is a scan,
  not unrolled: compilation, not arithmetic, dominates a 4,500-start fit (~1 s per program).
- A pool of slots is refilled as starts stop, so cost follows the total iteration count; when every
  start has a slot the pool bookkeeping is left out of the program.
- Compilation can start on a worker thread (`precompile`) so two programs compile at once.
Call inside `jax.enable_x64(True)`: the Huber objective sits near 1e-3 and its last digits decide
which start wins. float32 (`dtype=np.float32`) is for screening only.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class LbfgsOptions:
    """Stopping rules per start; a start stops at the first rule met.

    ftol is relative to max(|f|, f_scale): scipy's L-BFGS-B uses f_scale = 1 (factr 1e7 -> 2.2e-9),
    which on an objective of 1e-3 stops five digits early; we default to the objective's own scale.
    """

    max_iter: int = 500
    memory: int = 10
    gtol: float = 1e-9  # max |gradient component|
    ftol: float = 1e-13  # relative decrease of f over one iteration
    f_scale: float = 0.0
    max_backtracks: int = 30
    armijo_c1: float = 1e-4


@dataclasses.dataclass(frozen=True)
class LbfgsResult:
    x_SxP: np.ndarray
    f_S: np.ndarray
    grad_max_S: np.ndarray
    iters_S: np.ndarray
    converged_S: np.ndarray


def _direction(g_SxP, s_MxSxP, y_MxSxP, valid_MxS):
    """-H g by the two-loop recursion (Nocedal & Wright Alg. 7.4); history index M-1 is newest.

    The loops are lax.scans, not Python loops: unrolled over M = 10 pairs, XLA spent ~3 s compiling
    the chain (measured, loaded 2-core CPU); a scan body compiles once and costs ~us per step. The
    history is stored pair-major (M first) so the scans need no transposes.
    """
    sy_MxS = jnp.sum(s_MxSxP * y_MxSxP, -1)
    rho_MxS = jnp.where(valid_MxS, 1.0 / jnp.where(valid_MxS, sy_MxS, 1.0), 0.0)
    hist = (s_MxSxP, y_MxSxP, rho_MxS)

    def newest_first(q, sy_rho):
        s, y, rho = sy_rho
        a = rho * jnp.sum(s * q, -1)
        return q - a[:, None] * y, a

    q, alphas_MxS = jax.lax.scan(newest_first, g_SxP, hist, reverse=True)
    yy_S = jnp.sum(y_MxSxP[-1] ** 2, -1)
    ok = valid_MxS[-1] & (yy_S > 0)
    gamma_S = jnp.where(ok, sy_MxS[-1] / jnp.where(ok, yy_S, 1.0), 1.0)

    def oldest_first(r, sy_rho_a):
        s, y, rho, a = sy_rho_a
        b = rho * jnp.sum(y * r, -1)
        return r + (a - b)[:, None] * s, None

    r, _ = jax.lax.scan(oldest_first, gamma_S[:, None] * q, hist + (alphas_MxS,))
    return -r


def _step(fun, opts, shared, lane, x0, st):
    """One function evaluation per busy slot: the trial point of its current line search.

    The line search is a per-slot state machine rather than an inner loop: a slot whose trial fails
    the Armijo test shrinks its step and tries again at the next step, while the other slots go on.
    An inner loop over the whole batch re-evaluated all slots whenever any one slot backtracked:
    measured ~5 batch evaluations per iteration where ~1.1 were needed. A `fresh` slot evaluates
    its new start x0 and gets an empty history.
    """
    x, f, g, s_h, y_h, valid, it, done, fresh, d, t, gd, back, restarted = st
    x = jnp.where(fresh[:, None], x0, x)
    t = jnp.where(fresh, 0.0, t)
    x_t = jnp.where(fresh[:, None], x0, x + t[:, None] * d)  # the slot's old d may be NaN
    f_t, g_t = fun(x_t, shared, lane)
    finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t), -1)
    busy = ~done & ~fresh
    acc = busy & finite & (f_t <= f + opts.armijo_c1 * t * gd)
    rej = busy & ~acc
    failed = rej & (back >= opts.max_backtracks)
    # Rejected: minimiser of the quadratic through f, f'(0) = gd and f(t), kept inside [0.1 t, 0.5 t].
    denom = 2.0 * (f_t - f - gd * t)
    t_q = jnp.where(jnp.isfinite(f_t) & (denom > 0), -gd * t * t / jnp.where(denom > 0, denom, 1.0), 0.5 * t)
    t_cut = jnp.clip(t_q, 0.1 * t, 0.5 * t)
    # Accepted: move, keep the pair only with positive curvature (else the inverse-Hessian model
    # loses definiteness), test the stopping rules.
    s, y = x_t - x, g_t - g
    keep = acc & (jnp.sum(s * y, -1) > 1e-10 * jnp.sqrt(jnp.sum(s * s, -1) * jnp.sum(y * y, -1)))
    roll = lambda h, new: jnp.where(keep[None, :, None], jnp.concatenate([h[1:], new[None]], 0),
                                    jnp.where(fresh[None, :, None], 0.0, h))
    s_h, y_h = roll(s_h, s), roll(y_h, y)
    valid = jnp.where(keep[None], jnp.concatenate([valid[1:], keep[None]], 0), valid & ~fresh[None])
    moved = acc | fresh
    f_new = jnp.where(moved, f_t, f)
    g_new = jnp.where(moved[:, None], g_t, g)
    x_new = jnp.where(moved[:, None], x_t, x)
    small_g = jnp.max(jnp.abs(g_new), -1) <= opts.gtol
    scale = jnp.maximum(jnp.maximum(jnp.abs(f), jnp.abs(f_new)), opts.f_scale)
    small_df = (f - f_new) <= opts.ftol * scale
    conv = (acc & (small_g | (small_df & ~restarted))) | (fresh & finite & small_g)
    stop = conv | failed | (acc & (it + 1 >= opts.max_iter)) | (fresh & ~finite)
    # Next direction for the slots that moved.
    d_n = _direction(g_new, s_h, y_h, valid)
    gd_n = jnp.sum(g_new * d_n, -1)
    # Not a descent direction (stale curvature): restart from steepest descent, with a unit step in
    # the infinity norm, as scipy's L-BFGS-B takes first.
    bad = ~(gd_n < 0) | ~jnp.all(jnp.isfinite(d_n), -1)
    d_n = jnp.where(bad[:, None], -g_new, d_n)
    gd_n = jnp.where(bad, -jnp.sum(g_new * g_new, -1), gd_n)
    rs = bad | ~jnp.any(valid, 0)
    tiny = jnp.finfo(x.dtype).tiny
    t0 = jnp.where(rs, jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.max(jnp.abs(g_new), -1), tiny)), 1.0)
    new = (x_new, f_new, g_new, s_h, y_h, valid,
           jnp.where(fresh, 0, jnp.where(acc, it + 1, it)), (done & ~fresh) | stop, jnp.zeros_like(fresh),
           jnp.where(moved[:, None], d_n, d), jnp.where(moved, t0, jnp.where(rej, t_cut, t)).astype(t.dtype),
           jnp.where(moved, gd_n, gd), jnp.where(moved, 0, jnp.where(rej, back + 1, back)),
           jnp.where(moved, rs, restarted))
    return new, conv


def _initial(n: int, p: int, w: int, m: int, dtype) -> tuple:
    """The pool's starting state, built on the host and passed in: made inside the program, each of
    its ~15 arrays is a broadcast kernel that XLA compiles separately (~20-30 ms each, 2-core CPU).
    Slots: x, f, g, s and y history, history valid, iterations, done (all: every slot takes a start
    at the first step), fresh, d, t, g.d, backtracks, restarted; then the start each slot holds (n:
    none), `conv`, and the packed output table (results_table)."""
    z = lambda *shape: np.zeros(shape, dtype)
    slots = (z(w, p), z(w), z(w, p), z(m, w, p), z(m, w, p), np.zeros((m, w), bool), np.zeros(w, np.int32),
             np.ones(w, bool), np.zeros(w, bool), z(w, p), z(w), z(w), np.zeros(w, np.int32), np.zeros(w, bool))
    out = z(n, p + 4)
    out[:, p] = np.inf
    return slots, np.full(w, n, np.int32), np.zeros(w, bool), out


@functools.lru_cache(maxsize=32)
def _compiled(fun, opts, width):
    """A pool of `width` slots works through the starts: a slot whose start has stopped writes its
    result out and takes the next start, so the cost follows the total iteration count rather than
    (number of starts x the slowest start's iterations). Compile time (most of a first CLI fit's
    time) follows the number of kernels, so each piece of the program appears once: the state comes
    in from the host (_initial), the write-out closes the loop body rather than opening it (no copy
    after the loop), the first step is the loop's first iteration, and the packed result table is
    taken apart on the host."""

    @jax.jit
    def run(x0_SxP, shared, lane_S, init):
        n, p = x0_SxP.shape
        w = width
        slots, idx0, conv0, out = init
        gather = lambda idx: jax.tree.map(lambda a: a[jnp.minimum(idx, n - 1)], lane_S)

        # One packed (n, P+4) table [x | f | max|g| | iterations | converged]: one scatter per
        # write instead of five (each scatter is a kernel XLA compiles separately).
        def write(slots, idx, conv, out):
            x, f, g, _, _, _, it, done = slots[:8]
            tgt = jnp.where(done & (idx < n), idx, n)  # index n is dropped
            cols = (f, jnp.max(jnp.abs(g), -1), it.astype(x.dtype), conv.astype(x.dtype))
            return out.at[tgt].set(jnp.concatenate([x, jnp.stack(cols, 1)], 1), mode="drop")

        def body(c):
            slots, idx, conv, nxt, out = c
            free = slots[7]
            new_idx = (nxt + jnp.cumsum(free) - 1).astype(jnp.int32)
            take = free & (new_idx < n)
            idx = jnp.where(take, new_idx, jnp.where(free, n, idx))
            nxt = jnp.minimum(nxt + jnp.sum(free), n).astype(jnp.int32)
            x0 = x0_SxP[jnp.minimum(idx, n - 1)]
            slots = slots[:7] + (free & ~take, take) + slots[9:]
            slots, conv = _step(fun, opts, shared, gather(idx), x0, slots)
            return slots, idx, conv, nxt, write(slots, idx, conv, out)

        def cond(c):
            slots, idx, _, nxt, _ = c
            return (nxt < n) | jnp.any(~slots[7])

        if w >= n:  # every start has a slot: no pool bookkeeping, which is ~1/3 of the compiled program
            def solo(c):  # `conv` is reported on the step a start stops: keep it
                st, conv = _step(fun, opts, shared, lane_S, x0_SxP, c[0])
                return st, c[1] | conv

            first = slots[:7] + (~slots[7], slots[7]) + slots[9:]  # every slot fresh, none done
            st, conv = jax.lax.while_loop(lambda c: jnp.any(~c[0][7]), solo, (first, conv0))
            return st[0], st[1], st[2], st[6], conv
        return jax.lax.while_loop(cond, body, (slots, idx0, conv0, jnp.int32(0), out))[4]

    return run


def _results(out, p: int, solo: bool) -> LbfgsResult:
    if solo:
        x, f, g, it, conv = (np.asarray(a) for a in out)
        return LbfgsResult(x, f, np.max(np.abs(g), -1), it, conv)
    out = np.asarray(out)
    return LbfgsResult(out[:, :p], out[:, p], out[:, p + 1], out[:, p + 2].astype(np.int32), out[:, p + 3] > 0)


def minimize_batched(fun: Callable, x0_SxP, shared, lane=None,
                     opts: LbfgsOptions = LbfgsOptions(), width: int = 512,
                     dtype=np.float64) -> LbfgsResult:
    """Minimise from every row of x0_SxP, where `fun(x_WxP, shared, lane_W) -> (f_W, grad_WxP)`.

    `shared` is passed to `fun` unchanged; `lane` (a pytree with leading axis S, or None) holds
    per-start data such as bootstrap multiplicities and reaches `fun` gathered to the slots.
    `fun` must be a module-level function so the compiled program is reused across calls with
    same-shaped data. `width` is the number of starts advanced together. `dtype=np.float32` must be
    asked for explicitly (with float32 starts and data): it is for screening many starts cheaply,
    never for a final answer.
    """
    x0_SxP = jnp.asarray(x0_SxP)
    if np.dtype(dtype) == np.float32:
        if x0_SxP.dtype != jnp.float32:
            raise ValueError(f"minimize_batched: dtype=float32 needs float32 starts, got {x0_SxP.dtype}")
    elif x0_SxP.dtype != jnp.float64:
        raise ValueError("minimize_batched: call inside jax.enable_x64(True) with float64 starts")
    width = int(min(width, x0_SxP.shape[0]))
    (n, p), init = x0_SxP.shape, _initial(*x0_SxP.shape, width, opts.memory, x0_SxP.dtype)
    out = _executable(fun, opts, width, x0_SxP, shared, lane).result()(x0_SxP, shared, lane, init)
    return _results(out, p, width >= n)


_EXECUTABLES: dict = {}
_EXECUTABLES_LOCK = threading.Lock()
_COMPILER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="lbfgs-compile")


def _executable(fun, opts, width, x0_SxP, shared, lane, background: bool = False):
    """The compiled pool program for these shapes, as a future; compiled once per process.

    Lowering (tracing) runs here, in the caller's thread, under its x64 setting; XLA's compilation
    may run on a worker thread, so that two programs compile at once on a 2-core machine, or one
    compiles while another runs.
    """
    leaves, tree = jax.tree.flatten((x0_SxP, shared, lane))
    key = (fun, opts, width, tree, tuple((np.shape(a), jnp.result_type(a)) for a in leaves))
    with _EXECUTABLES_LOCK:
        if key in _EXECUTABLES:
            return _EXECUTABLES[key]
        init = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                            _initial(*x0_SxP.shape, width, opts.memory, x0_SxP.dtype))
        lowered = _compiled(fun, opts, width).lower(x0_SxP, shared, lane, init)
        if background:
            fut = _COMPILER.submit(lowered.compile)
        else:
            fut = concurrent.futures.Future()
            fut.set_result(lowered.compile())
        _EXECUTABLES[key] = fut
        return fut


def precompile(fun: Callable, x0_SxP, shared, lane=None, opts: LbfgsOptions = LbfgsOptions(),
               width: int = 512) -> None:
    """Start compiling, in the background, the program a later `minimize_batched` call with these
    shapes will use (`x0_SxP` may be a jax.ShapeDtypeStruct). Call inside the same x64 setting."""
    _executable(fun, opts, int(min(width, x0_SxP.shape[0])), x0_SxP, shared, lane, background=True)
