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
from ..backend import to_numpy
from .base import DIVERGENCE_THRESHOLD, ChainSampler, schedule_values

__all__ = ["HamiltonianMonteCarlo"]

_IDENTITY, _DIAGONAL, _DENSE = 0, 1, 2


def _build_run_block(fixed, chain_major):
    """The step loop over one block of chains, ``register_jitable`` so the CPU kernel
    below and the CUDA kernel (one chain per thread) both compile it."""
    from numba.extending import register_jitable

    from ._jit import (NOISE, call_block, copy_row, load_block, normal, record, row_finite,
                       start_streams, store_block, uniform)

    threshold = DIVERGENCE_THRESHOLD

    # No reference counting in the step loop (see langevin.py).
    @register_jitable(_nrt=False)
    def run_block(b, c0, block, params, X, G, E, have_grad, pos, k0, k1, g0, s0, s1,
                  keep, eta, half_eta, n_leapfrog, jitter, mass_kind, sqrt_m, minv_diag,
                  chol_t, minv, traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha,
                  xb, gb, eb, xn, gn, en, pb, bufs, pn, zrow, vrow, h0, log_u, hs, acc):
        m, d = xb.shape
        load_block(X, G, E, pos, c0, xb, gb, eb, pb)
        start_streams(k0, k1, g0, pb, bufs)
        if not have_grad:
            call_block(fixed, block, xb, gb, eb, params)
        # Chain-major order (all steps of one chain, then the next) keeps a small
        # chain hot in registers and cache; blocks of rows serve energies that
        # evaluate many chains at once (a dense product) or sit behind a pointer.
        for grp in range(m if chain_major else 1):
            r0 = grp if chain_major else 0
            r1 = grp + 1 if chain_major else m
            for s in range(s0, s1):
                h = eta[s]
                hh = half_eta[s]
                # Momenta p ~ N(0, M), the starting Hamiltonian, the first half kick.
                for r in range(r0, r1):
                    chain = np.uint64(g0 + r)
                    p = pb[r]
                    buf = bufs[r, :4]
                    for j in range(d):
                        z, p = normal(k0, k1, chain, NOISE, p, buf, xb)
                        zrow[j] = z
                    u, p = uniform(k0, k1, chain, NOISE, p, buf, xb)
                    log_u[r] = math.log(u) if u > 0 else -np.inf
                    hs[r, 0] = h
                    hs[r, 1] = hh
                    if jitter > 0:
                        # The step is drawn independently of the state, so each draw
                        # is still a valid (reversible) proposal; it breaks resonances.
                        u, p = uniform(k0, k1, chain, NOISE, p, buf, xb)
                        hs[r, 0] = h * (1 + jitter * (2 * u - 1))
                        hs[r, 1] = 0.5 * hs[r, 0]
                    pb[r] = p
                    kin = 0.0
                    for j in range(d):
                        if mass_kind == 0:
                            pn[r, j] = zrow[j]
                        elif mass_kind == 1:
                            pn[r, j] = sqrt_m[j] * zrow[j]
                        else:
                            pn[r, j] = zrow[0] * chol_t[0, j]
                        # With M = L L^T and p = L z, p^T M^-1 p = z^T z for every mass.
                        kin += np.float64(zrow[j]) * np.float64(zrow[j])
                    if mass_kind == 2:
                        # p = L z as axpys over L's columns (rows of L^T): no reduction
                        # in the inner loop, so it vectorises; each p_j still sums its
                        # terms in the order i = 0 .. j.
                        for i in range(1, d):
                            zi = zrow[i]
                            for j in range(i, d):
                                pn[r, j] += chol_t[i, j] * zi
                    h0[r] = np.float64(eb[r]) + 0.5 * kin
                    for j in range(d):
                        xn[r, j] = xb[r, j]
                        pn[r, j] -= hs[r, 1] * gb[r, j]
                for step in range(n_leapfrog):
                    for r in range(r0, r1):
                        hr = hs[r, 0]
                        if mass_kind == 2:
                            # M^-1 p as axpys (M^-1 is exactly symmetric), in float64
                            # like the dot products it replaces, term order unchanged.
                            for j in range(d):
                                acc[j] = 0.0
                            for i in range(d):
                                pi = pn[r, i]
                                for j in range(d):
                                    acc[j] += minv[i, j] * pi
                            for j in range(d):
                                vrow[j] = acc[j]
                            for j in range(d):
                                xn[r, j] += hr * vrow[j]
                        elif mass_kind == 1:
                            for j in range(d):
                                xn[r, j] += hr * (minv_diag[j] * pn[r, j])
                        else:
                            for j in range(d):
                                xn[r, j] += hr * pn[r, j]
                    call_block(fixed, block, xn[r0:r1], gn[r0:r1], en[r0:r1], params)
                    for r in range(r0, r1):
                        kick = hs[r, 0] if step < n_leapfrog - 1 else hs[r, 1]
                        for j in range(d):
                            pn[r, j] -= kick * gn[r, j]
                k = keep[s]
                for r in range(r0, r1):
                    kin = 0.0
                    if mass_kind == 2:
                        for j in range(d):
                            acc[j] = 0.0
                        for i in range(d):
                            pi = np.float64(pn[r, i])
                            for j in range(d):
                                acc[j] += np.float64(minv[i, j]) * pi
                        for j in range(d):
                            kin += acc[j] * np.float64(pn[r, j])
                    elif mass_kind == 1:
                        for j in range(d):
                            pj = np.float64(pn[r, j])
                            kin += pj * pj * np.float64(minv_diag[j])
                    else:
                        for j in range(d):
                            pj = np.float64(pn[r, j])
                            kin += pj * pj
                    delta = np.float64(en[r]) + 0.5 * kin - h0[r]
                    accepted = False
                    alpha[c0 + r] = 0.0
                    if (not row_finite(en, gn, xn, r)) or (not math.isfinite(delta)) \
                            or delta > threshold:
                        div[c0 + r] += 1  # rejected; the chain keeps its state
                    else:
                        alpha[c0 + r] = math.exp(min(-delta, 0.0))
                        if log_u[r] < -delta:
                            accepted = True
                            copy_row(xn, xb, r)
                            copy_row(gn, gb, r)
                            eb[r] = en[r]
                            n_acc[c0 + r] += 1
                    if k >= 0:
                        record(k, b, c0 + r, r, xb, eb, gb, accepted, traj, e_out, gn_out,
                               acc_out, moments)
        store_block(X, G, E, pos, c0, xb, gb, eb, pb)

    return run_block


def _build_kernel(fixed, chain_major):
    """The fused HMC kernel over blocks ``b0 .. b1 - 1`` of chains, all proposals inside."""
    from numba import njit

    from ._jit import SOURCE_STAMP, block_scratch

    run_block = _build_run_block(fixed, chain_major)
    stamp = SOURCE_STAMP

    @njit(nogil=True, cache=True)
    def kernel(b0, b1, block, params, X, G, E, have_grad, pos, key, chain_offset, rows, s0,
               s1, keep, eta, half_eta, n_leapfrog, jitter, mass_kind, sqrt_m, minv_diag,
               chol_t, minv, traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha, progress):
        if stamp < 0:  # never: the stamp is here to key the disk cache on npebm's sources
            return
        n, d = X.shape
        k0 = np.uint64(key[0])
        k1 = np.uint64(key[1])
        for b in range(b0, b1):
            c0 = b * rows
            m = min(n, c0 + rows) - c0
            xb, gb, eb, xn, gn, en, pb, bufs = block_scratch(X, c0, m)
            pn = np.empty((m, d), X.dtype)
            zrow = np.empty(d, X.dtype)
            vrow = np.empty(d, X.dtype)
            h0 = np.empty(m, np.float64)
            log_u = np.empty(m, np.float64)
            hs = np.empty((m, 2), X.dtype)
            acc = np.empty(d, np.float64)
            run_block(b, c0, block, params, X, G, E, have_grad, pos, k0, k1,
                      chain_offset + c0, s0, s1, keep, eta, half_eta, n_leapfrog, jitter,
                      mass_kind, sqrt_m, minv_diag, chol_t, minv,
                      traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha,
                      xb, gb, eb, xn, gn, en, pb, bufs, pn, zrow, vrow, h0, log_u, hs, acc)
        progress[0] = s1

    return kernel


def _cuda_scratch(xp, n, d, dtype):
    """Per-chain scratch of the CUDA kernel: momenta, two dim-rows, the starting
    Hamiltonian, log u, the (jittered) step and half step, a float64 dim-row."""
    return (xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty((n, d), dtype),
            xp.empty(n, np.float64), xp.empty(n, np.float64), xp.empty((n, 2), dtype),
            xp.empty((n, d), np.float64))


def _thread_scratch(scratch, i):
    """Chain ``i``'s rows of the scratch, shaped as the CPU kernel's one-row block."""
    pn, zrow, vrow, h0, log_u, hs, acc = scratch
    return (pn[i:i + 1], zrow[i], vrow[i], h0[i:i + 1], log_u[i:i + 1], hs[i:i + 1], acc[i])


def _check_jitter(jitter):
    if not is_real(jitter):
        raise TypeError(f"jitter must be a float in [0, 1), got {type(jitter).__name__}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    return float(jitter)


def _check_mass(mass):
    """``(kind, mass)``: validated mass as None, a positive float, (dim,) or SPD (dim, dim)."""
    if mass is None:
        return _IDENTITY, None
    if is_real(mass):
        value = float(mass)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"mass must be positive and finite, got {mass}")
        return _DIAGONAL, value
    try:
        arr = np.array(mass, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"mass must be None, a float, a (dim,) or a (dim, dim) array, got "
                        f"{type(mass).__name__}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError("mass must be finite")
    if arr.ndim == 0:
        return _check_mass(float(arr))
    if arr.ndim == 1:
        if arr.size == 0 or np.any(arr <= 0):
            raise ValueError("mass as a (dim,) diagonal must be non-empty and positive")
        return _DIAGONAL, arr
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.shape[0] > 0:
        if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12 * np.abs(arr).max()):
            raise ValueError("mass as a (dim, dim) matrix must be symmetric")
        try:
            np.linalg.cholesky(arr)
        except np.linalg.LinAlgError:
            raise ValueError("mass must be positive definite (its Cholesky factorisation "
                             "failed)") from None
        return _DENSE, 0.5 * (arr + arr.T)
    raise ValueError(f"mass must be None, a float, a (dim,) or a (dim, dim) array, got shape "
                     f"{arr.shape}")


class HamiltonianMonteCarlo(ChainSampler):
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

    _build_kernel = staticmethod(_build_kernel)

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
        self.mass = mass
        if isinstance(self.mass, np.ndarray):
            self._check_dim(self.mass.shape[0], "mass")

    step_size = property(lambda self: self._parameter("step_size"),
                         doc="η: a float, or the scheduler when one was given.")

    @property
    def mass(self):
        """M: None (identity), a float, a (dim,) diagonal or a (dim, dim) SPD matrix."""
        return self._mass

    @mass.setter
    def mass(self, value):
        self._mass_kind, self._mass = _check_mass(value)
        self._mass_cache = None  # factorisations of the previous mass

    _STATE_KEYS = ("mass",)

    def _set_mass(self, mass):
        self.mass = mass

    def get_state(self):
        state = super().get_state()
        state["mass"] = np.asarray(np.nan if self.mass is None else self.mass, np.float64)
        return state

    def set_state(self, state):
        mass = state.get("mass") if hasattr(state, "get") else None
        if mass is not None:
            # Checked before anything changes: a bad mass leaves the sampler as it was.
            mass = np.asarray(to_numpy(mass), np.float64)
            identity = mass.ndim == 0 and np.isnan(mass)  # get_state's mark of mass=None
            if not identity:
                try:
                    _check_mass(mass)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"state['mass']: {exc}") from None
                dim = np.shape(state["x"])[-1] if "x" in state else None
                if mass.ndim and dim is not None and mass.shape[0] != dim:
                    raise ValueError(f"state['mass'] has dim {mass.shape[0]} but state['x'] "
                                     f"has dim {dim}")
        super().set_state(state)
        if mass is not None:
            self._set_mass(None if identity else mass)

    def _schedules(self, start, n):
        return self._step_arrays(schedule_values(self.schedulers["step_size"], "step_size",
                                                 start, n))

    def _step_arrays(self, eta):
        return {"step_size": eta, "half": 0.5 * eta}

    def _mass_arrays(self, dim):
        """(kind, sqrt_m, minv_diag, chol, minv) in float64 for a run of dimension ``dim``;
        factorised once per mass (adaptation runs many one-step calls)."""
        cached = getattr(self, "_mass_cache", None)
        if cached is not None and cached[0] == dim:
            return cached[1]
        arrays = self._factor_mass(dim)
        self._mass_cache = (dim, arrays)
        return arrays

    def _factor_mass(self, dim):
        kind, mass = self._mass_kind, self.mass
        empty1, empty2 = np.zeros(0), np.zeros((0, 0))
        if kind == _IDENTITY:
            return kind, empty1, empty1, empty2, empty2
        if isinstance(mass, np.ndarray) and mass.shape[0] != dim:
            raise ValueError(f"mass has dim {mass.shape[0]} but the chains have dim {dim}")
        if kind == _DIAGONAL:
            diag = np.broadcast_to(np.asarray(mass, np.float64), (dim,))
            return kind, np.sqrt(diag), 1.0 / diag, empty2, empty2
        chol = np.linalg.cholesky(mass)
        inv_chol = np.linalg.inv(chol)
        minv = inv_chol.T @ inv_chol
        return kind, empty1, empty1, chol, 0.5 * (minv + minv.T)

    def _kernel_args(self, sched, dtype, dim):
        kind, sqrt_m, minv_diag, chol, minv = self._mass_arrays(dim)
        c = np.ascontiguousarray
        return (sched["step_size"].astype(dtype), sched["half"].astype(dtype),
                np.int64(self.n_leapfrog_steps), np.float64(self.jitter), np.int64(kind),
                c(sqrt_m, dtype), c(minv_diag, dtype), c(chol.T, dtype), c(minv, dtype))

    def _vector_step(self, run, s, sched, streams):
        x, g, e = run.x, run.g, run.e
        n, d = x.shape
        dtype = x.dtype
        t = dtype.type
        kind, sqrt_m, minv_diag, chol, minv = (self._on_device(a.astype(dtype)) if i else a
                                               for i, a in enumerate(self._mass_arrays(d)))
        h, hh = t(sched["step_size"][s]), t(sched["half"][s])
        z = streams.normal(n, d, dtype)
        u = streams.uniform(n, dtype)
        if self.jitter > 0:  # per chain, after the accept uniform (the kernel's order)
            v = streams.uniform(n, dtype).astype(np.float64)
            h = (h * (1 + self.jitter * (2 * v - 1))).astype(dtype)[:, None]
            hh = (0.5 * h).astype(dtype)
        if kind == _IDENTITY:
            p = z.copy()
        elif kind == _DIAGONAL:
            p = z * sqrt_m
        else:
            p = z @ chol.T
        z64 = z.astype(np.float64)
        h0 = e.astype(np.float64) + 0.5 * np.einsum("ij,ij->i", z64, z64)
        xn = x.copy()
        p = p - hh * g
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for step in range(self.n_leapfrog_steps):
                if kind == _IDENTITY:
                    xn += h * p
                elif kind == _DIAGONAL:
                    xn += h * (minv_diag * p)
                else:
                    xn += h * (p @ minv.T)
                en, gn = self._evaluate(xn)
                p -= (h if step < self.n_leapfrog_steps - 1 else hh) * gn
            p64 = p.astype(np.float64)
            if kind == _IDENTITY:
                kin = np.einsum("ij,ij->i", p64, p64)
            elif kind == _DIAGONAL:
                kin = np.einsum("ij,ij,j->i", p64, p64, minv_diag.astype(np.float64))
            else:
                kin = np.einsum("ij,ij->i", p64 @ minv.astype(np.float64).T, p64)
            delta = en.astype(np.float64) + 0.5 * kin - h0
            ok = (np.isfinite(en) & np.isfinite(gn).all(axis=1) & np.isfinite(xn).all(axis=1)
                  & np.isfinite(delta) & (delta <= DIVERGENCE_THRESHOLD))
            accepted = ok & (np.log(u.astype(np.float64)) < -delta)
            alpha = np.where(ok, np.exp(np.minimum(-delta, 0.0)), 0.0)
        x[accepted] = xn[accepted]
        g[accepted] = gn[accepted]
        e[accepted] = en[accepted]
        return accepted, ~ok, alpha
