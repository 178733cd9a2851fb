"""The No-U-Turn Sampler: multinomial NUTS with the generalised no-U-turn criterion.

Each step draws p ~ N(0, M) and doubles a leapfrog trajectory, forward or backward at
random, until it turns back on itself, diverges or reaches ``max_tree_depth`` doublings
(at most 2^max_tree_depth − 1 gradients).  Each new subtree is built leaf by leaf:

- leaves are weighted by exp(−H); within a subtree a leaf replaces the subtree's
  candidate with probability w_leaf / W_subtree (uniform progressive sampling), and a
  finished subtree's candidate replaces the tree's with probability
  min(1, W_subtree / W_tree) (biased progressive sampling, which favours the far end);
- the trajectory stops when its momentum sum ρ no longer points along the momenta at
  both ends, ``ρ'·M⁻¹p⁻ <= 0`` or ``ρ'·M⁻¹p⁺ <= 0`` with ρ' = ρ − (p⁻ + p⁺)/2, checked
  for the whole tree after every doubling and, inside a subtree, for each of its
  power-of-two parts as soon as their last leaf exists (from checkpoints of ρ and p, so
  a subtree needs O(depth) memory, not O(2^depth));
- a leaf whose energy error H − H₀ exceeds 1000 or is not finite is a divergence: the
  subtree is dropped and the trajectory ends, keeping the candidate it had.

The acceptance statistic (what ``adapt`` tunes toward ``target_accept``) is the mean of
min(1, exp(H₀ − H)) over the trajectory's leaves.  Every chain builds its own tree:
on the CPU one chain at a time (or a block in step for energies evaluated in blocks),
on a GPU one thread per chain, finished threads waiting for the block's longest tree.

References
----------
M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler", JMLR 15 (2014).
M. Betancourt, "A conceptual introduction to Hamiltonian Monte Carlo", arXiv:1701.02434
(2017), appendix A (multinomial sampling, the generalised criterion).
D. Phan, N. Pradhan, M. Jankowiak, "Composable effects for flexible and accelerated
probabilistic programming in NumPyro", arXiv:1912.11554 (2019) (the iterative tree).
"""
import math

import numpy as np

from .._validation import check_int, check_probability
from . import _integrators as leap
from ._integrators import MassMixin
from .base import DIVERGENCE_THRESHOLD, ChainSampler, schedule_values
from .state import InfoField

__all__ = ["NUTS"]

#: Most doublings a tree may be given: 2^30 gradients per step is beyond any use.
MAX_TREE_DEPTH = 30

# Columns of the per-chain scalars: float64 ``F`` and int64 ``N``.
H0, LOG_W, LOG_W_SUB, SUM_ACCEPT, DELTA_TREE, DELTA_SUB = range(6)
DEPTH, LEAF, N_LEAPFROG, DIRECTION, ACTIVE, MOVED, DIVERGED = range(7)


def _build_step(evaluate):
    """One NUTS transition of rows ``r0 .. r1 - 1`` (see ``_loop`` for the signature)."""
    from numba.extending import register_jitable

    from . import _integrators
    from ._jit import NOISE, normal, row_finite, uniform

    ops = _integrators.jitted()
    momentum_row, drift_row = ops.momentum_row, ops.drift_row
    kick_row, kinetic_row = ops.kick_row, ops.kinetic_row
    threshold = DIVERGENCE_THRESHOLD

    @register_jitable(_nrt=False, forceinline=True)
    def log_add(a, b):
        m = max(a, b)
        return m + math.log(math.exp(a - m) + math.exp(b - m))

    @register_jitable(_nrt=False, forceinline=True)
    def turning(pa, pb, rho, kind, minv_diag, minv, acc):
        """The generalised criterion between end momenta ``pa``, ``pb`` (dim,) and the
        momentum sum ``rho`` (dim,) float64 over the leaves from one to the other."""
        d = rho.shape[0]
        for j in range(d):
            acc[j] = rho[j] - 0.5 * (np.float64(pa[j]) + np.float64(pb[j]))
        ta = 0.0
        tb = 0.0
        if kind == 2:
            # M⁻¹ is symmetric: a·M⁻¹ρ' and b·M⁻¹ρ' from one product.
            for j in range(d):
                w = 0.0
                for i in range(d):
                    w += np.float64(minv[j, i]) * acc[i]
                ta += np.float64(pa[j]) * w
                tb += np.float64(pb[j]) * w
        else:
            for j in range(d):
                w = acc[j] * np.float64(minv_diag[j]) if kind == 1 else acc[j]
                ta += np.float64(pa[j]) * w
                tb += np.float64(pb[j]) * w
        return ta <= 0.0 or tb <= 0.0

    @register_jitable(_nrt=False, forceinline=True)
    def draw_direction(k0, k1, chain, p, buf, like):
        u, p = uniform(k0, k1, chain, NOISE, p, buf, like)
        return (1 if u < 0.5 else -1), p

    @register_jitable(_nrt=False, forceinline=True)
    def accepts(log_ratio, k0, k1, chain, p, buf, like):
        """Whether a uniform u < exp(log_ratio); draws u."""
        u, p = uniform(k0, k1, chain, NOISE, p, buf, like)
        log_u = math.log(u) if u > 0 else -np.inf
        return log_u < log_ratio, p

    @register_jitable(_nrt=False, forceinline=True)
    def step(r0, r1, s, block, params, chains, extra, args, scratch, info):
        X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps = chains
        eta, half_eta, max_depth, kind, sqrt_m, minv_diag, chol_t, minv = args
        P, Z, V, ACC, XE, PE, GE, XS, GS, ES, RHO, RSUB, RCK, RSCK, TMP, F, N = scratch
        accepted, diverged, alpha, fields = info
        d = X.shape[1]
        h = eta[s]
        hh = half_eta[s]
        # The start: a momentum, H₀, a tree of one leaf (both ends at x), a direction.
        n_active = 0
        for r in range(r0, r1):
            chain = np.uint64(chain0 + r)
            p = pos[r]
            buf = bufs[r]
            for j in range(d):
                z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                Z[r, j] = z
            kin = momentum_row(P, r, Z[r], kind, sqrt_m, chol_t)
            F[r, H0] = np.float64(E[r]) + 0.5 * kin
            for end in range(2):
                for j in range(d):
                    XE[r, end, j] = X[r, j]
                    PE[r, end, j] = P[r, j]
                    GE[r, end, j] = G[r, j]
            for j in range(d):
                RHO[r, j] = np.float64(P[r, j])
                RSUB[r, j] = 0.0
            F[r, LOG_W] = 0.0
            F[r, SUM_ACCEPT] = 0.0
            F[r, DELTA_TREE] = 0.0
            N[r, DEPTH] = 0
            N[r, LEAF] = 0
            N[r, N_LEAPFROG] = 0
            N[r, MOVED] = 0
            N[r, DIVERGED] = 0
            N[r, ACTIVE] = 1
            N[r, DIRECTION], p = draw_direction(k0, k1, chain, p, buf, X)
            pos[r] = p
            n_active += 1
        # One leaf per active chain per pass: the chains of a block share the evaluation.
        while n_active > 0:
            for r in range(r0, r1):
                if N[r, ACTIVE] == 0:
                    continue
                end = 1 if N[r, DIRECTION] > 0 else 0
                hr = h * steps[r, 0]  # the chain's own step size, η c, signed
                hhr = hh * steps[r, 0]
                if end == 0:
                    hr, hhr = -hr, -hhr
                for j in range(d):
                    XN[r, j] = XE[r, end, j]
                    P[r, j] = PE[r, end, j] - hhr * GE[r, end, j]
                drift_row(XN, P, r, hr, kind, minv_diag, minv, ACC[r], V[r])
            evaluate(block, params, XN, GN, EN, r0, r1)
            for r in range(r0, r1):
                if N[r, ACTIVE] == 0:
                    continue
                chain = np.uint64(chain0 + r)
                p = pos[r]
                buf = bufs[r]
                end = 1 if N[r, DIRECTION] > 0 else 0
                hhr = hh * steps[r, 0]
                if end == 0:
                    hhr = -hhr
                kick_row(P, GN, r, hhr)
                N[r, N_LEAPFROG] += 1
                kin = kinetic_row(P, r, kind, minv_diag, minv, ACC[r])
                delta = np.float64(EN[r]) + 0.5 * kin - F[r, H0]
                subtree_done = False
                valid = True
                if not (row_finite(EN, GN, XN, r) and math.isfinite(delta)
                        and delta <= threshold):
                    N[r, DIVERGED] = 1
                    subtree_done = True
                    valid = False
                else:
                    F[r, SUM_ACCEPT] += math.exp(min(-delta, 0.0))
                    for j in range(d):
                        XE[r, end, j] = XN[r, j]
                        PE[r, end, j] = P[r, j]
                        GE[r, end, j] = GN[r, j]
                        RSUB[r, j] += np.float64(P[r, j])
                    leaf = N[r, LEAF]
                    take = True
                    if leaf > 0:
                        w_sub = log_add(F[r, LOG_W_SUB], -delta)
                        take, p = accepts(-delta - w_sub, k0, k1, chain, p, buf, X)
                        F[r, LOG_W_SUB] = w_sub
                    else:
                        F[r, LOG_W_SUB] = -delta
                    if take:
                        for j in range(d):
                            XS[r, j] = XN[r, j]
                            GS[r, j] = GN[r, j]
                        ES[r] = EN[r]
                        F[r, DELTA_SUB] = delta
                    # The subtree's power-of-two parts: an even leaf opens some (its
                    # checkpoint: slot = set bits of leaf >> 1), an odd leaf closes the
                    # ones ending at it (as many as its trailing set bits).
                    n_set = 0
                    rest = leaf >> 1
                    while rest > 0:
                        n_set += rest & 1
                        rest >>= 1
                    if leaf % 2 == 0:
                        for j in range(d):
                            RCK[r, n_set, j] = np.float64(P[r, j])
                            RSCK[r, n_set, j] = RSUB[r, j]
                    else:
                        n_closed = 0
                        rest = leaf
                        while rest & 1:
                            n_closed += 1
                            rest >>= 1
                        for k in range(n_set, n_set - n_closed, -1):
                            for j in range(d):
                                TMP[r, j] = RSUB[r, j] - RSCK[r, k, j] + RCK[r, k, j]
                            if turning(RCK[r, k], P[r], TMP[r], kind, minv_diag, minv,
                                       ACC[r]):
                                subtree_done = True
                                valid = False
                                break
                    leaf += 1
                    N[r, LEAF] = leaf
                    if leaf == (1 << N[r, DEPTH]):
                        subtree_done = True
                if subtree_done:
                    stop = True
                    if valid:
                        take, p = accepts(F[r, LOG_W_SUB] - F[r, LOG_W], k0, k1, chain, p,
                                          buf, X)
                        if take:
                            for j in range(d):
                                X[r, j] = XS[r, j]
                                G[r, j] = GS[r, j]
                            E[r] = ES[r]
                            N[r, MOVED] = 1
                            F[r, DELTA_TREE] = F[r, DELTA_SUB]
                        F[r, LOG_W] = log_add(F[r, LOG_W], F[r, LOG_W_SUB])
                        for j in range(d):
                            RHO[r, j] += RSUB[r, j]
                        N[r, DEPTH] += 1
                        stop = N[r, DEPTH] >= max_depth or turning(
                            PE[r, 0], PE[r, 1], RHO[r], kind, minv_diag, minv, ACC[r])
                    if stop:
                        N[r, ACTIVE] = 0
                        n_active -= 1
                        accepted[r] = N[r, MOVED]
                        diverged[r] = N[r, DIVERGED]
                        alpha[r] = F[r, SUM_ACCEPT] / N[r, N_LEAPFROG]
                        fields[r, 0] = N[r, DEPTH]
                        fields[r, 1] = N[r, N_LEAPFROG]
                        fields[r, 2] = F[r, DELTA_TREE]
                        fields[r, 3] = N[r, DIVERGED]
                        fields[r, 4] = alpha[r]
                    else:
                        N[r, LEAF] = 0
                        for j in range(d):
                            RSUB[r, j] = 0.0
                        N[r, DIRECTION], p = draw_direction(k0, k1, chain, p, buf, X)
                pos[r] = p

    return step


# ------------------------------------------------------------------ the array twin

def _popcount(a):
    n = np.zeros_like(a)
    while np.any(a):
        n += a & 1
        a = a >> 1
    return n


def _trailing_ones(a):
    n = np.zeros_like(a)
    rest = a.copy()
    while True:
        on = (rest & 1) == 1
        if not on.any():
            return n
        n += on
        rest = np.where(on, rest >> 1, 0)


def _log_add(a, b):
    m = np.maximum(a, b)
    return m + np.log(np.exp(a - m) + np.exp(b - m))


def _turning(pa, pb, rho, kind, minv_diag, minv):
    """Rows of the generalised criterion (see the compiled ``turning``)."""
    a, b = pa.astype(np.float64), pb.astype(np.float64)
    rho = rho - 0.5 * (a + b)
    if kind == leap.DENSE:
        w = rho @ minv.astype(np.float64).T
    elif kind == leap.DIAGONAL:
        w = rho * minv_diag.astype(np.float64)
    else:
        w = rho
    return ((a * w).sum(axis=1) <= 0) | ((b * w).sum(axis=1) <= 0)


class _MaskedStreams:
    """Draws for some chains only, leaving the others' streams where they were, so that
    each chain consumes exactly what it does in the compiled step."""

    def __init__(self, streams, n, dtype):
        self.streams, self.n, self.dtype = streams, n, dtype

    def uniform(self, mask):
        pos = self.streams.pos
        saved = pos.copy()
        u = self.streams.uniform(self.n, self.dtype)
        pos[~mask] = saved[~mask]
        return u


def _scratch_for(max_depth):
    def scratch(xp, n, d, dtype):
        slots = max(1, max_depth)
        return (xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty((n, d), dtype),
                xp.empty((n, d), np.float64),
                xp.empty((n, 2, d), dtype), xp.empty((n, 2, d), dtype),
                xp.empty((n, 2, d), dtype),
                xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty(n, dtype),
                xp.empty((n, d), np.float64), xp.empty((n, d), np.float64),
                xp.empty((n, slots, d), np.float64), xp.empty((n, slots, d), np.float64),
                xp.empty((n, d), np.float64),
                xp.empty((n, 6), np.float64), xp.empty((n, 7), np.int64))
    return scratch


class NUTS(MassMixin, ChainSampler):
    """The No-U-Turn Sampler (multinomial, generalised criterion) over parallel chains.

    Parameters
    ----------
    energy : Energy
        The target's energy (aliases ``model=``, ``energy_function=``).
    step_size : float or BaseScheduler
        Leapfrog step η > 0, or a schedule over transitions.
    max_tree_depth : int
        Most doublings per transition, 1 to 30: at most 2^max_tree_depth − 1 gradients.
    mass : None, float, array (dim,) or array (dim, dim)
        Mass matrix M, as for :class:`HamiltonianMonteCarlo`.
    target_accept : float
        Mean acceptance statistic that ``sample(..., adapt=...)`` tunes toward (0.8).
    dtype, device, seed
        See :class:`~npebm.samplers.BaseSampler`.

    Notes
    -----
    Diagnostics add, per kept step and chain, ``tree_depth`` (doublings merged),
    ``n_leapfrog`` (gradients spent), ``energy_error`` (H − H₀ at the new state, 0
    when it stayed), ``diverging`` and ``acceptance_stat`` (Stan's: the mean of
    min(1, exp(H₀ − H)) over the trajectory's leaves).  A trajectory that meets a leaf
    with an energy error above 1000 (or a non-finite one) counts as a divergence; the
    chain moves to the candidate the trajectory had before it, as in Stan.

    Examples
    --------
    >>> from npebm.energies import GaussianEnergy
    >>> nuts = NUTS(GaussianEnergy([0.0, 0.0], [[1.0, 0.8], [0.8, 1.0]]), seed=0)
    >>> x, diag = nuts.sample(n_samples=100, n_steps=200, burn_in=200, adapt="diag",
    ...                       return_diagnostics=True)
    >>> bool(diag.tree_depth.mean() > 1)
    True
    """

    info_fields = (
        InfoField("tree_depth", np.int64, "doublings merged into the trajectory"),
        InfoField("n_leapfrog", np.int64, "leapfrog steps (gradients) of the transition"),
        InfoField("energy_error", np.float64, "H − H₀ at the chain's new state"),
        InfoField("diverging", np.bool_, "whether the trajectory met a divergence"),
        InfoField("acceptance_stat", np.float64,
                  "mean of min(1, exp(H0 - H)) over the trajectory's leaves (Stan's "
                  "accept_stat, which the step-size adaptation drives to target_accept)"),
    )
    _build_step = staticmethod(_build_step)
    #: A transition ends at a leaf drawn from the trajectory, not at the last leaf
    #: evaluated (what tempering's swaps need to know).
    _moves_to_last_evaluation = False

    def __init__(self, energy=None, step_size=1e-1, max_tree_depth=10, mass=None, *,
                 target_accept=0.8, dtype=None, device="cpu", seed=None, model=None,
                 energy_function=None):
        super().__init__(energy, dtype=dtype, device=device, seed=seed, model=model,
                         energy_function=energy_function)
        self.target_accept = check_probability(target_accept, "target_accept")
        self.register_scheduler("step_size", step_size)
        schedule_values(self.schedulers["step_size"], "step_size", 0, 1)
        self.max_tree_depth = check_int(max_tree_depth, "max_tree_depth", 1, MAX_TREE_DEPTH)
        self._init_mass(mass)

    step_size = property(lambda self: self._parameter("step_size"),
                         doc="η: a float, or the scheduler when one was given.")

    def _scratch(self, xp, n, d, dtype):
        """Per chain: the leaf's momentum, normals and two rows for M⁻¹p; the tree's two
        ends (x, p, ∇E); the subtree's candidate; the tree's and subtree's momentum
        sums; the subtree's checkpoints; a float64 row; the scalars ``F`` and ``N``."""
        return _scratch_for(self.max_tree_depth)(xp, n, d, dtype)

    _schedules_follow_schedulers = True

    def _schedules(self, start, n):
        return self._step_arrays(schedule_values(self.schedulers["step_size"], "step_size",
                                                 start, n))

    def _step_arrays(self, eta):
        return {"step_size": eta, "half": 0.5 * eta}

    def _step_args(self, sched, dtype, dim):
        return (sched["step_size"].astype(dtype), sched["half"].astype(dtype),
                np.int64(self.max_tree_depth), *self._mass_args(dtype, dim))

    def _vector_step(self, run, s, sched, streams):
        x, g, e = run.x, run.g, run.e
        n, d = x.shape
        dtype = x.dtype
        t = dtype.type
        kind, sqrt_m, minv_diag, chol, minv = self._mass_on_device(dtype, d)
        h = np.full(n, t(sched["step_size"][s]), dtype)
        hh = np.full(n, t(sched["half"][s]), dtype)
        if run.factors is not None:  # each chain's own step size (tempered runs)
            h, hh = h * run.factors[:, 0], hh * run.factors[:, 0]
        draws = _MaskedStreams(streams, n, dtype)
        z = streams.normal(n, d, dtype)
        p0 = leap.momentum(z, kind, sqrt_m, chol)
        z64 = z.astype(np.float64)
        h0 = e.astype(np.float64) + 0.5 * np.einsum("ij,ij->i", z64, z64)
        ends_x = np.stack([x, x], axis=1)
        ends_p = np.stack([p0, p0], axis=1)
        ends_g = np.stack([g, g], axis=1)
        rho = p0.astype(np.float64)
        rho_sub = np.zeros((n, d))
        slots = max(1, self.max_tree_depth)
        ck_p = np.zeros((n, slots, d))
        ck_rho = np.zeros((n, slots, d))
        sub_x, sub_g, sub_e = x.copy(), g.copy(), e.copy()
        log_w = np.zeros(n)
        log_w_sub = np.zeros(n)
        sum_accept = np.zeros(n)
        delta_tree = np.zeros(n)
        delta_sub = np.zeros(n)
        depth = np.zeros(n, np.int64)
        leaf = np.zeros(n, np.int64)
        n_leapfrog = np.zeros(n, np.int64)
        moved = np.zeros(n, bool)
        div = np.zeros(n, bool)
        active = np.ones(n, bool)
        direction = np.where(draws.uniform(active) < 0.5, 1, -1)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            while active.any():
                a = np.flatnonzero(active)
                end = (direction[a] > 0).astype(np.int64)
                sign = np.where(end == 1, t(1), t(-1)).astype(dtype)
                hr, hhr = (h[a] * sign)[:, None], (hh[a] * sign)[:, None]
                pn = ends_p[a, end] - hhr * ends_g[a, end]
                xn = ends_x[a, end].copy()
                leap.drift(xn, pn, hr, kind, minv_diag, minv)
                en, gn = self._evaluate(xn, rows=a)
                leap.kick(pn, gn, hhr)
                n_leapfrog[a] += 1
                delta = en.astype(np.float64) + 0.5 * leap.kinetic(pn, kind, minv_diag,
                                                                   minv) - h0[a]
                ok = (np.isfinite(en) & np.isfinite(gn).all(axis=1)
                      & np.isfinite(xn).all(axis=1) & np.isfinite(delta)
                      & (delta <= DIVERGENCE_THRESHOLD))
                div[a[~ok]] = True
                # The leaves that count: new ends, momentum sums, candidates.
                o, ao = np.flatnonzero(ok), a[ok]
                eo = end[o]
                sum_accept[ao] += np.exp(np.minimum(-delta[o], 0.0))
                ends_x[ao, eo] = xn[o]
                ends_p[ao, eo] = pn[o]
                ends_g[ao, eo] = gn[o]
                rho_sub[ao] += pn[o].astype(np.float64)
                lf = leaf[ao]
                first = lf == 0
                w_sub = np.where(first, -delta[o], _log_add(log_w_sub[ao], -delta[o]))
                mask = np.zeros(n, bool)
                mask[ao[~first]] = True
                u = draws.uniform(mask)[ao].astype(np.float64)
                log_u = np.where(u > 0, np.log(u), -np.inf)
                take = first | (log_u < -delta[o] - w_sub)
                log_w_sub[ao] = w_sub
                tk = ao[take]
                sub_x[tk], sub_g[tk], sub_e[tk] = xn[o[take]], gn[o[take]], en[o[take]]
                delta_sub[tk] = delta[o[take]]
                # Checkpoints at even leaves, the parts' criteria at odd ones.
                n_set = _popcount(lf >> 1)
                even = lf % 2 == 0
                ev, ov = ao[even], ao[~even]
                ck_p[ev, n_set[even]] = pn[o[even]].astype(np.float64)
                ck_rho[ev, n_set[even]] = rho_sub[ev]
                turned = np.zeros(len(ao), bool)
                if len(ov):
                    n_closed = _trailing_ones(lf[~even])
                    k_top = n_set[~even]
                    p_odd = pn[o[~even]]
                    turned_odd = np.zeros(len(ov), bool)
                    for back in range(int(n_closed.max())):
                        check = (back < n_closed) & ~turned_odd
                        if not check.any():
                            break
                        c = np.flatnonzero(check)
                        k = k_top[c] - back
                        rc = ck_p[ov[c], k]
                        part = rho_sub[ov[c]] - ck_rho[ov[c], k] + rc
                        turned_odd[c] = _turning(rc, p_odd[c], part, kind, minv_diag, minv)
                    turned[~even] = turned_odd
                leaf[ao] = lf + 1
                full = leaf[ao] == (1 << depth[ao])
                # Subtrees that ended: merge the valid ones, then stop or go on.
                done_rows = np.concatenate([a[~ok], ao[turned | full]])
                valid_rows = ao[~turned & full]
                mask = np.zeros(n, bool)
                mask[valid_rows] = True
                u = draws.uniform(mask)[valid_rows].astype(np.float64)
                log_u = np.where(u > 0, np.log(u), -np.inf)
                take = log_u < log_w_sub[valid_rows] - log_w[valid_rows]
                tk = valid_rows[take]
                x[tk], g[tk], e[tk] = sub_x[tk], sub_g[tk], sub_e[tk]
                moved[tk] = True
                delta_tree[tk] = delta_sub[tk]
                log_w[valid_rows] = _log_add(log_w[valid_rows], log_w_sub[valid_rows])
                rho[valid_rows] += rho_sub[valid_rows]
                depth[valid_rows] += 1
                go_on = np.zeros(n, bool)
                if len(valid_rows):
                    vr = valid_rows
                    go_on[vr] = (depth[vr] < self.max_tree_depth) & ~_turning(
                        ends_p[vr, 0], ends_p[vr, 1], rho[vr], kind, minv_diag, minv)
                stopped = done_rows[~go_on[done_rows]]
                active[stopped] = False
                cont = np.flatnonzero(go_on)
                leaf[cont] = 0
                rho_sub[cont] = 0.0
                u = draws.uniform(go_on)[cont]
                direction[cont] = np.where(u < 0.5, 1, -1)
        alpha = sum_accept / n_leapfrog
        fields = np.stack([depth, n_leapfrog, delta_tree, div, alpha],
                          axis=1).astype(np.float64)
        return moved, div, alpha, fields
