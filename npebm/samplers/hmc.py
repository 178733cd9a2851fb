"""Hamiltonian Monte Carlo with a leapfrog integrator and a constant mass matrix.

Momentum :math:`p \\sim N(0, M)`; ``n_leapfrog_steps`` leapfrog steps of size η on
:math:`H(x, p) = E(x) + \\tfrac12 p^\\top M^{-1} p`; Metropolis–Hastings on the full
Hamiltonian.  The force at the end of a trajectory is the force at the start of the
next, so a proposal costs ``n_leapfrog_steps`` new gradients (L + 1 counting the one
the chain starts with; TorchEBM spends 2L).  A proposal whose energy error is not
finite or exceeds 1000 is rejected and counted as a divergence.

References
----------
R. M. Neal, "MCMC using Hamiltonian dynamics", Handbook of Markov Chain Monte Carlo
(2011).
"""
import math

import numpy as np

from .._validation import check_int, check_probability, is_real
from . import _integrators as leap
from ._integrators import MassMixin
from .base import DIVERGENCE_THRESHOLD, ChainSampler, schedule_values

__all__ = ["HamiltonianMonteCarlo"]


def _build_step(evaluate):
    """One HMC proposal of rows ``r0 .. r1 - 1`` (see ``_loop`` for the signature)."""
    from numba.extending import register_jitable

    from . import _integrators
    from ._jit import NOISE, copy_row, normal, row_finite, uniform

    leap = _integrators.jitted()
    momentum_row, drift_row = leap.momentum_row, leap.drift_row
    kick_row, kinetic_row = leap.kick_row, leap.kinetic_row
    threshold = DIVERGENCE_THRESHOLD

    @register_jitable(_nrt=False, forceinline=True)
    def step(r0, r1, s, block, params, chains, extra, args, scratch, info):
        X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps = chains
        eta, half_eta, n_leap, jitter, kind, sqrt_m, minv_diag, chol_t, minv = args
        P, zrow, vrow, h0, log_u, hs, acc = scratch
        accepted, diverged, alpha, fields = info
        d = X.shape[1]
        h = eta[s]
        hh = half_eta[s]
        n_leapfrog = n_leap[s]
        # Momenta p ~ N(0, M), the starting Hamiltonian, the first half kick.
        for r in range(r0, r1):
            chain = np.uint64(chain0 + r)
            p = pos[r]
            buf = bufs[r]
            for j in range(d):
                z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                zrow[r, j] = z
            u, p = uniform(k0, k1, chain, NOISE, p, buf, X)
            log_u[r] = math.log(u) if u > 0 else -np.inf
            hs[r, 0] = h * steps[r, 0]  # the chain's own step size, η c
            hs[r, 1] = hh * steps[r, 0]
            if jitter > 0:
                # The step is drawn independently of the state, so each draw is still
                # a valid (reversible) proposal; it breaks resonances.
                u, p = uniform(k0, k1, chain, NOISE, p, buf, X)
                hs[r, 0] = hs[r, 0] * (1 + jitter * (2 * u - 1))
                hs[r, 1] = 0.5 * hs[r, 0]
            pos[r] = p
            kin = momentum_row(P, r, zrow[r], kind, sqrt_m, chol_t)
            h0[r] = np.float64(E[r]) + 0.5 * kin
            copy_row(X, XN, r)
            kick_row(P, G, r, hs[r, 1])
        for i in range(n_leapfrog):
            for r in range(r0, r1):
                drift_row(XN, P, r, hs[r, 0], kind, minv_diag, minv, acc[r], vrow[r])
            evaluate(block, params, XN, GN, EN, r0, r1)
            for r in range(r0, r1):
                kick_row(P, GN, r, hs[r, 0] if i < n_leapfrog - 1 else hs[r, 1])
        for r in range(r0, r1):
            kin = kinetic_row(P, r, kind, minv_diag, minv, acc[r])
            delta = np.float64(EN[r]) + 0.5 * kin - h0[r]
            moved = False
            alpha[r] = 0.0
            ok = row_finite(EN, GN, XN, r) and math.isfinite(delta) and delta <= threshold
            if ok:
                alpha[r] = math.exp(min(-delta, 0.0))
                if log_u[r] < -delta:
                    moved = True
                    copy_row(XN, X, r)
                    copy_row(GN, G, r)
                    E[r] = EN[r]
            accepted[r] = moved
            diverged[r] = not ok  # rejected; the chain keeps its state

    return step


def _scratch(xp, n, d, dtype):
    """Per chain: momentum, the normals behind it, a row for M⁻¹p, the starting
    Hamiltonian, log u, the (jittered) step and half step, a float64 row."""
    return (xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty((n, d), dtype),
            xp.empty(n, np.float64), xp.empty(n, np.float64), xp.empty((n, 2), dtype),
            xp.empty((n, d), np.float64))


def _check_jitter(jitter):
    if not is_real(jitter):
        raise TypeError(f"jitter must be a float in [0, 1), got {type(jitter).__name__}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    return float(jitter)


class HamiltonianMonteCarlo(MassMixin, ChainSampler):
    """Hamiltonian Monte Carlo over parallel chains.

    Parameters
    ----------
    energy : Energy
        The target's energy (aliases ``model=``, ``energy_function=``).
    step_size : float or BaseScheduler
        Leapfrog step η > 0, or a schedule over proposals.
    n_leapfrog_steps : int
        Leapfrog steps per proposal, L >= 1.
    mass : None, float, array (dim,) or array (dim, dim)
        Mass matrix M: identity, a multiple of it, a diagonal, or a symmetric positive
        definite matrix.
    target_accept : float
        Acceptance rate that ``sample(..., adapt="step_size")`` tunes toward (0.8).
    jitter : float
        Each proposal's step is η (1 + jitter (2u - 1)), u ~ U(0, 1) from the chain's
        stream, 0 <= jitter < 1 (0: a fixed step, TorchEBM's behaviour).  With a fixed
        step and L, trajectories whose length is near a multiple of half a period of the
        target make chains nearly periodic and their draws badly autocorrelated;
        0.1 to 0.3 breaks that at little cost (Neal 2011, §5.4.2.2).
    dtype, device, seed
        See :class:`~npebm.samplers.BaseSampler`.

    Notes
    -----
    A proposal costs L gradient evaluations: the final force of one trajectory is reused
    as the first of the next.  Acceptance uses the full Hamiltonian.  Proposals with a
    non-finite state, energy or gradient, or an energy error above 1000, are rejected,
    counted in ``diagnostics.divergences`` and never written into the chain.

    Examples
    --------
    >>> from npebm.energies import GaussianEnergy
    >>> energy = GaussianEnergy([0.0, 0.0], [[1.0, 0.8], [0.8, 1.0]])
    >>> hmc = HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=10, seed=0)
    >>> x, diag = hmc.sample(n_samples=500, n_steps=100, return_diagnostics=True)
    >>> 0.5 < diag.summary()["acceptance_rate"] <= 1.0
    True
    """

    _build_step = staticmethod(_build_step)
    _scratch = staticmethod(_scratch)

    def __init__(self, energy=None, step_size=1e-1, n_leapfrog_steps=10, mass=None, *,
                 target_accept=0.8, jitter=0.0, dtype=None, device="cpu", seed=None,
                 model=None, energy_function=None):
        super().__init__(energy, dtype=dtype, device=device, seed=seed, model=model,
                         energy_function=energy_function)
        self.target_accept = check_probability(target_accept, "target_accept")
        self.register_scheduler("step_size", step_size)
        schedule_values(self.schedulers["step_size"], "step_size", 0, 1)
        self.n_leapfrog_steps = check_int(n_leapfrog_steps, "n_leapfrog_steps", 1)
        self.jitter = _check_jitter(jitter)
        self._init_mass(mass)

    step_size = property(lambda self: self._parameter("step_size"),
                         doc="η: a float, or the scheduler when one was given.")

    _schedules_follow_schedulers = True
    _rows_in_lockstep = True

    def _schedules(self, start, n):
        return self._step_arrays(schedule_values(self.schedulers["step_size"], "step_size",
                                                 start, n))

    def _step_arrays(self, eta):
        return {"step_size": eta, "half": 0.5 * eta,
                "n_leapfrog": np.full(len(eta), self.n_leapfrog_steps, np.int64)}

    def _step_args(self, sched, dtype, dim):
        # Leapfrog steps per proposal is a per-step array: ChEESHMC jitters it.
        return (sched["step_size"].astype(dtype), sched["half"].astype(dtype),
                np.ascontiguousarray(sched["n_leapfrog"], np.int64), np.float64(self.jitter),
                *self._mass_args(dtype, dim))

    def _vector_step(self, run, s, sched, streams):
        accepted, diverged, alpha, _, _ = self._vector_proposal(run, s, sched, streams)
        return accepted, diverged, alpha, None

    def _vector_proposal(self, run, s, sched, streams):
        """The vectorised step, also handing back each chain's proposal and its momentum
        there (before the accept test): ``(accepted, diverged, alpha, xn, p)``."""
        x, g, e = run.x, run.g, run.e
        n, d = x.shape
        dtype = x.dtype
        t = dtype.type
        kind, sqrt_m, minv_diag, chol, minv = self._mass_on_device(dtype, d)
        h, hh = t(sched["step_size"][s]), t(sched["half"][s])
        if run.factors is not None:  # each chain's own step size (tempered runs)
            h, hh = h * run.factors[:, 0], hh * run.factors[:, 0]
        z = streams.normal(n, d, dtype)
        u = streams.uniform(n, dtype)
        if self.jitter > 0:  # per chain, after the accept uniform (the kernel's order)
            v = streams.uniform(n, dtype).astype(np.float64)
            h = (h * (1 + self.jitter * (2 * v - 1))).astype(dtype)
            hh = (0.5 * h).astype(dtype)
        if np.ndim(h):
            h, hh = h[:, None], hh[:, None]
        p = leap.momentum(z, kind, sqrt_m, chol)
        z64 = z.astype(np.float64)
        h0 = e.astype(np.float64) + 0.5 * np.einsum("ij,ij->i", z64, z64)
        xn = x.copy()
        n_leapfrog = int(sched["n_leapfrog"][s])
        leap.kick(p, g, hh)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for step in range(n_leapfrog):
                leap.drift(xn, p, h, kind, minv_diag, minv)
                en, gn = self._evaluate(xn)
                leap.kick(p, gn, h if step < n_leapfrog - 1 else hh)
            kin = leap.kinetic(p, kind, minv_diag, minv)
            delta = en.astype(np.float64) + 0.5 * kin - h0
            ok = (np.isfinite(en) & np.isfinite(gn).all(axis=1) & np.isfinite(xn).all(axis=1)
                  & np.isfinite(delta) & (delta <= DIVERGENCE_THRESHOLD))
            accepted = ok & (np.log(u.astype(np.float64)) < -delta)
            alpha = np.where(ok, np.exp(np.minimum(-delta, 0.0)), 0.0)
        x[accepted] = xn[accepted]
        g[accepted] = gn[accepted]
        e[accepted] = en[accepted]
        return accepted, ~ok, alpha, xn, p
