"""Annealed importance sampling (AIS) from a Gaussian reference to a target.

Particles start exactly at the reference q (β = 0).  At each stage k the weights gain
:math:`-(\\beta_k - \\beta_{k-1})(E - E_q)(x)` and the particles then take
``n_steps`` steps of a transition sampler on π_{β_k} (see
:mod:`npebm.energies.tempered`).  The mean weight estimates Z / Z_q, so

.. math:: \\log Z = \\log Z_q + \\log \\tfrac1N \\textstyle\\sum_i w_i .

The adaptive schedule picks each next β so that the conditional ESS of the increment,
:math:`(\\sum_i \\bar w_i u_i)^2 / \\sum_i \\bar w_i u_i^2` with :math:`u_i` the
increment's factor, is ``cess`` (Zhou, Johansen & Aston 2016).

When the weights' ESS is small, log-mean-exp is biased low (by about 1 / (2 ESS)) and
the spread of the weights says little about the error; the standard error here comes
instead from independent groups of particles (each group its own estimate of log Z),
and a warning says when the ESS is under 10 or the bias is not small against the
standard error.

References
----------
R. M. Neal, "Annealed importance sampling", Statistics and Computing 11 (2001).
Y. Zhou, A. M. Johansen, J. A. D. Aston, "Toward automatic model comparison: an
adaptive sequential Monte Carlo approach", JCGS 25 (2016).
"""
import math
import warnings

import numpy as np

from .._validation import check_int, check_real
from .base import SamplingWarning
from .tempering import _check_betas, _check_reference, tempered_copy

__all__ = ["AnnealedImportanceSampling", "AISResult", "log_likelihood"]

#: Groups of particles behind the standard error.
GROUPS = 16
#: Fewest effective particles before a warning, whatever the standard error says.
LOW_ESS = 10
#: Most stages of an adaptive schedule.
MAX_STAGES = 100_000


class AISResult(dict):
    """AIS's results, readable as ``r["log_z"]`` and ``r.log_z``.

    Keys: ``log_z``, ``log_z_se`` (from independent groups of particles), ``weights``
    (n_samples,) normalised, ``log_weights`` (n_samples,), ``ess`` (of the weights),
    ``samples`` (n_samples, dim), ``betas`` (the schedule used), ``group_log_z``.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _log_mean_exp(a, axis=None):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.mean(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis) if axis is not None else float(out.ravel()[0])


class AnnealedImportanceSampling:
    """Annealed importance sampling with any npebm sampler as the transition.

    Parameters
    ----------
    energy : Energy
        The target's energy (ignored when ``transition`` is given, whose energy is
        used).
    reference : None, (mean, cov) or dict
        The Gaussian q at β = 0 (default N(0, I)).
    betas : array_like, optional
        The schedule, increasing from 0 to 1.
    n_temperatures : int, optional
        A fixed schedule of that many βs, ``(k / (n - 1))**4`` (dense near the
        reference, where the increments are large).  With neither ``betas`` nor
        ``n_temperatures`` the schedule is adaptive (see ``cess``).
    transition : ChainSampler, optional
        The sampler each stage runs on π_β (default: MALA with step 0.05).
    seed : None, int or SeedSequence
    n_steps : int
        Transition steps per stage (default 1).
    cess : float in (0, 1)
        The adaptive schedule's conditional ESS per stage (default 0.999).

    Examples
    --------
    >>> import numpy as np
    >>> from npebm.energies import GaussianEnergy
    >>> ais = AnnealedImportanceSampling(GaussianEnergy(np.zeros(2), np.eye(2) * 4.0),
    ...                                  seed=0)
    >>> r = ais.run(2000)
    >>> abs(r.log_z - np.log(2 * np.pi * 4.0)) < 5 * r.log_z_se
    True
    """

    def __init__(self, energy=None, reference=None, betas=None, n_temperatures=None,
                 transition=None, seed=None, *, n_steps=1, cess=0.999):
        from .base import ChainSampler, _resolve_energy
        from .mala import MALA

        if transition is None:
            energy = _resolve_energy(energy, None, None)
            transition = MALA(energy, step_size=0.05, seed=seed)
        elif not isinstance(transition, ChainSampler):
            raise TypeError("transition must be an npebm chain sampler (LangevinDynamics, "
                            "MALA, HamiltonianMonteCarlo, UnderdampedLangevin), got "
                            f"{type(transition).__name__}")
        if transition.backend.name != "cpu":
            raise NotImplementedError("AnnealedImportanceSampling runs on the CPU for now")
        if betas is not None:
            betas = _check_betas(betas)
            if n_temperatures is not None and check_int(n_temperatures, "n_temperatures",
                                                        2) != len(betas):
                raise ValueError(f"n_temperatures={n_temperatures} disagrees with betas, "
                                 f"which has {len(betas)} values")
        elif n_temperatures is not None:
            n = check_int(n_temperatures, "n_temperatures", 2)
            betas = (np.arange(n) / (n - 1)) ** 4
        self.transition = transition
        self.betas = betas
        self._reference_args = _check_reference(reference)
        self.seed = transition.seed if seed is None else seed
        self.n_steps = check_int(n_steps, "n_steps", 1)
        self.cess = check_real(cess, "cess", low=0.0, low_open=True, high=1.0)

    def run(self, n_samples, dim=None, seed=None):
        """Run ``n_samples`` particles through the schedule.

        Returns
        -------
        AISResult
        """
        from ..energies.tempered import GaussianReference, TemperedEnergy
        from ..random import INIT
        from .base import _key
        from .state import ChainState

        n = check_int(n_samples, "n_samples", 2)
        inner = self.transition
        d = dim if dim is not None else inner.energy.dim
        if d is None:
            raise ValueError(f"dim is required: {type(inner.energy).__name__} does not "
                             "fix its dimension")
        d = check_int(d, "dim", 1)
        inner._check_dim(d, "dim")
        mean, cov = self._reference_args
        try:
            reference = GaussianReference(d, mean, cov)
        except ValueError as exc:
            raise ValueError(f"reference: {exc}") from None
        dtype = inner.dtype or np.dtype(np.float64)
        row_betas = np.zeros(n)
        path = TemperedEnergy(inner.energy, reference, row_betas)
        t = tempered_copy(inner, path)
        key = _key(self.seed if seed is None else seed)
        z = t._draw_normal(key, n, d, 0, np.dtype(np.float64), INIT)
        st = ChainState(np.ascontiguousarray(reference.transform(z).astype(dtype)),
                        np.zeros(n, np.uint64), key, 0, 0)
        t._init_state_fields(st)
        log_w = np.zeros(n)
        used = [0.0]
        beta = 0.0
        stage = 0
        while beta < 1.0:
            with np.errstate(invalid="ignore", over="ignore"):
                e, g = path.base_energy_and_gradient(st.x)
                e_ref, g_ref = reference.energy_and_gradient(st.x)
                dv = e.astype(np.float64) - e_ref
            dv = np.where(np.isnan(dv), np.inf, dv)
            if self.betas is not None:
                stage += 1
                new = float(self.betas[stage])
            else:
                new = self._next_beta(beta, log_w, dv)
                if len(used) > MAX_STAGES:
                    raise RuntimeError(f"the adaptive schedule needed more than "
                                       f"{MAX_STAGES} stages; give betas or a smaller cess")
            with np.errstate(invalid="ignore"):
                log_w -= (new - beta) * dv
            log_w = np.where(np.isnan(log_w), -np.inf, log_w)
            beta = new
            used.append(beta)
            row_betas[:] = beta
            st.eg = path.combine(e, g, e_ref, g_ref, dtype)
            t._run(st, t._schedule_from(st.step), self.n_steps, 0, 1, False, False, False)
            st.step = 0  # each stage's schedule starts afresh: a constant step
        return self._result(log_w, st.x, reference, np.array(used))

    def _next_beta(self, beta, log_w, dv):
        """The β after ``beta`` whose increment keeps the conditional ESS at ``cess``."""
        w = np.exp(log_w - np.max(log_w)) if np.isfinite(log_w).any() else np.ones_like(log_w)
        w = w / w.sum()

        def cess(delta):
            with np.errstate(invalid="ignore", over="ignore"):
                a = -delta * dv
                a = np.where(np.isnan(a), -np.inf, a)
                u = np.exp(a - np.max(a[np.isfinite(a)], initial=0.0))
                num = (w * u).sum() ** 2
                den = (w * u * u).sum()
            return num / den if den > 0 else 0.0

        hi = 1.0 - beta
        if cess(hi) >= self.cess:
            return 1.0
        lo = 0.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if cess(mid) >= self.cess:
                lo = mid
            else:
                hi = mid
        return beta + max(lo, 1e-12)

    def _result(self, log_w, x, reference, betas):
        n = len(log_w)
        log_z = reference.log_z + _log_mean_exp(log_w)
        groups = min(GROUPS, n // 2)
        size = n // groups
        group = reference.log_z + _log_mean_exp(
            log_w[:groups * size].reshape(groups, size), axis=1)
        se = float(group.std(ddof=1) / math.sqrt(groups))
        finite = np.isfinite(log_w)
        w = np.zeros(n)
        if finite.any():
            w = np.exp(log_w - log_w[finite].max())
            w /= w.sum()
        ess = float(1.0 / (w * w).sum()) if finite.any() else 0.0
        # log-mean-exp of weights with effective size ESS is biased low by about
        # 1 / (2 ESS) (a delta-method bound); once that is not small against the
        # standard error, the error bar no longer covers the error.
        if ess < LOW_ESS or 0.5 / max(ess, 1e-300) > 0.5 * se:
            warnings.warn(f"AIS: the weights' ESS is {ess:.1f} of {n} particles, so log Z "
                          f"is biased low by about {0.5 / max(ess, 1e-300):.2g}, not small "
                          f"against its standard error {se:.2g}: use more stages (a higher "
                          "cess or more betas), more transition steps, or more particles",
                          SamplingWarning, stacklevel=3)
        return AISResult(log_z=float(log_z), log_z_se=se, weights=w, log_weights=log_w,
                         ess=ess, samples=x, betas=betas, group_log_z=group)


def log_likelihood(energy, data, log_z):
    """Log-likelihood of each point under p(x) = exp(−E(x)) / Z: ``−E(x) − log Z``.

    Parameters
    ----------
    energy : Energy
    data : array_like (n, dim)
    log_z : float
        e.g. from :class:`AnnealedImportanceSampling` or ``ParallelTempering``'s
        diagnostics.

    Returns
    -------
    ndarray (n,)
    """
    log_z = check_real(log_z, "log_z")
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"data must have shape (n, dim), got {x.shape}")
    if energy.is_compiled:
        from ..energies import _compile

        e, _ = _compile.evaluate(energy, x)
    else:
        e = energy.energy(x)
    return -np.asarray(e, dtype=np.float64) - log_z
