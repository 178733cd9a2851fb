"""ChEES-HMC: HMC with one trajectory length for all chains, tuned during burn-in by the
ChEES criterion and jittered per proposal by a Halton sequence.

Proposal ``n`` (the sampler's step count, over all its runs) integrates for a time
``h_n T``: ``T`` the trajectory length, shared by every chain, and ``h_n`` the
``(n + 1)``-th element of the base-2 Halton (van der Corput) sequence, 1/2, 1/4, 3/4,
1/8, ... — ``ceil(h_n T / ε)`` leapfrog steps of size ε (at most ``max_leapfrog_steps``).
The jitter is deterministic and the same for every chain, so it depends on no random
draw and on no split of the chains (threads, shards, devices), and a resumed run
continues the sequence.  Each proposal is otherwise :class:`HamiltonianMonteCarlo`'s,
run by its compiled step.

During burn-in (``sample(..., burn_in=B, adapt=...)``), after every step:

- the ChEES criterion ``¼ E[(‖x' − E x‖² − ‖x − E x‖²)²]`` (x the chain's state, x' its
  proposal) is climbed in ``log T`` by Adam without momentum (β₁ = 0, β₂ = 0.95,
  learning rate 0.025, each update clipped to ±0.35), from the gradient estimate of all
  chains' proposals::

      g = h_n T Σ_m α_m Δ_m ((x'_m − x̄')·v'_m) / Σ_m α_m,
      Δ_m = ‖x'_m − x̄'‖² − ‖x_m − x̄‖²,

  α_m the acceptance probability, v'_m = M⁻¹p'_m the velocity at the proposal, x̄ the
  mean of the states and x̄' the α-weighted mean of the proposals; divergent or
  non-finite proposals have weight 0.  T starts at one step (or the given T, if
  longer), stays below ``max_leapfrog_steps`` steps, and is never raised to follow the
  step size (dual averaging's first steps try sizes ten times too large: T would be
  dragged past the first, best maximum of the criterion); the tuned T is the iterate
  average of ``log T`` with weights ``k^(-1/2)`` (TFP's);
- the step size follows dual averaging toward ``target_accept`` of the harmonic mean of
  the non-divergent chains' acceptance probabilities (the paper's choice: one chain that
  rarely accepts pulls the shared step size down, where the arithmetic mean would hide
  it);
- with a mass mode (``"diag"``, ``"dense"``, ``"fisher"``) the mass is estimated in
  HMC's windows.  When it changes, T is scaled by the change of the slowest mode's
  period (for the chains' current spread) and Adam's moments restart: a T left in the
  old mass's time units (often several times too long once the mass whitens the
  target) would stay trapped near a far, lower maximum of the jittered criterion.

References
----------
M. D. Hoffman, A. Radul, P. Sountsov, "An adaptive MCMC scheme for setting trajectory
lengths in Hamiltonian Monte Carlo", AISTATS (2021).
"""
import math

import numpy as np

from .._validation import check_int, check_probability, check_real, is_integer
from ..backend import array_namespace
from .base import ChainSampler, _Adaptation, schedule_values
from .hmc import HamiltonianMonteCarlo

__all__ = ["ChEESHMC", "halton"]

#: Adam's decay of the mean squared gradient (β₂; TFP's 0.05 per step), no momentum.
SQ_GRAD_DECAY = 0.95
#: Largest change of log T in one update (about log(2) / 2, as TFP).
LOG_UPDATE_CLIP = 0.35


def halton(steps):
    """``h_n`` of each step index ``n >= 0``: the base-2 Halton (van der Corput) sequence
    at ``n + 1``, so 1/2, 1/4, 3/4, 1/8, 5/8, ... (never 0), float64, exact for
    ``n < 2**53``.

    Parameters
    ----------
    steps : int or array of int
        The sampler's step indices (``ChainState.step`` of the step's run plus its index
        in the run).
    """
    k = np.asarray(steps, np.int64) + 1
    h = np.zeros(k.shape)
    scale = 0.5
    # Bit b of k, reversed about the binary point; each partial sum is exact.
    for b in range(int(k.max()).bit_length() if k.size else 0):
        h += ((k >> b) & 1) * scale
        scale *= 0.5
    return h


def _period_ratio(x, old, new):
    """How much longer the slowest mode's period is under mass ``new`` than under ``old``.

    On a Gaussian of covariance C, HMC with mass M has modes of period 2π sqrt(λ) for the
    eigenvalues λ of C M; C is the chains' spread now (``x`` (n, dim)): their covariance
    when a mass is dense, else only its diagonal (O(n dim), the case of masses updated
    at every step).  Both periods see the same C, so a small change of mass changes T
    by as little, whatever C's noise.  1 when a period is not positive and finite.
    """
    from ..backend import to_numpy

    xp = array_namespace(x)
    x = x.astype(np.float64)
    dim = x.shape[1]

    def as_array(mass):
        return np.ones(dim) if mass is None else (
            np.full(dim, float(mass)) if np.ndim(mass) == 0 else np.asarray(mass, float))

    old, new = as_array(old), as_array(new)
    if old.ndim == 1 and new.ndim == 1:
        var = to_numpy(xp.var(x, axis=0))
        slow = [np.max(var * m) for m in (old, new)]
    else:
        dx = x - x.mean(axis=0)
        cov = to_numpy(dx.T @ dx) / x.shape[0]
        slow = []
        for m in (old, new):
            chol = np.linalg.cholesky(np.diag(m) if m.ndim == 1 else m)
            slow.append(np.linalg.eigvalsh(chol.T @ cov @ chol)[-1])
    ratio = math.sqrt(slow[1] / slow[0]) if slow[0] > 0 else math.nan
    return ratio if math.isfinite(ratio) and ratio > 0 else 1.0


def _proposal(runner):
    """``(x', p')`` (n, dim) of the step just run: each chain's proposal (the end of its
    trajectory, before the accept test) and its momentum there.

    The compiled HMC step (CPU and CUDA loops alike) leaves them in the loop's proposal
    rows (``chains[3]``, XN in the step's contract) and in the step's first scratch array
    (the momentum), both held by the runner for the whole run; the vectorised step hands
    them to its runner (:meth:`ChEESHMC._vector_step`).  Reading them between steps costs
    the kernels nothing: no copy, no extra state saved with the chains.
    """
    given = getattr(runner, "chees_proposal", None)
    if given is not None:
        return given
    return runner.chains[3], runner.scratch[0]


class _ChEESAdaptation(_Adaptation):
    """The HMC policy (step size, mass windows) plus the trajectory length: after each
    step, Adam (β₁ = 0) on log T from the ChEES gradient of all chains' proposals.  The
    step size is driven by the harmonic mean of the acceptance probabilities."""

    def __init__(self, sampler, st, burn_in, adapt):
        super().__init__(sampler, st, burn_in, adapt)
        self.first_step = st.step
        step = self.averaging.step_size
        self.log_t = math.log(sampler._clip_length(max(sampler.trajectory_length, step), step))
        self.log_t_bar = self.log_t
        self.sq_grad = 0.0
        self.count = 0  # updates of log T (the iterate average's)
        self.moments = 0  # gradients in sq_grad (its bias correction's)
        sampler.trajectory_length = math.exp(self.log_t)  # trial steps use it too
        self.x_before = st.x.copy()
        self.div_before = None

    def schedule(self, s0, s1):
        """Steps ``s0 .. s1 - 1`` of the burn-in: the step size and T of the moment."""
        eta = np.full(s1 - s0, self.averaging.step_size)
        return self.sampler._step_arrays(eta, self.first_step + s0, math.exp(self.log_t))

    def __call__(self, i, out, runner=None):
        st = self.st
        xp = array_namespace(st.x)
        alpha = out["alpha"]
        div = out["divergences"]  # counts per chain, this run
        diverged = div > 0 if self.div_before is None else div != self.div_before
        self.div_before = div.copy()
        grad = self._gradient(i, alpha, diverged, runner)
        # The base policy feeds the mean of out["alpha"] to dual averaging; hand it the
        # harmonic mean of the non-divergent chains instead (0 when one had α = 0).
        ok = ~diverged
        n_ok = int(ok.sum())
        with np.errstate(divide="ignore", over="ignore"):
            inverse = float((1.0 / alpha[ok]).sum()) if n_ok else math.inf
        view = dict(out, alpha=xp.full(alpha.shape, n_ok / inverse if n_ok else 0.0))
        mass = self.sampler.mass
        super().__call__(i, view, runner)
        if self.sampler.mass is not mass:
            # A new mass changes the dynamics' time scale: T follows the slowest mode's
            # period, and the gradient (of the old dynamics) is dropped.
            shift = math.log(_period_ratio(st.x, mass, self.sampler.mass))
            self.log_t += shift
            self.log_t_bar += shift
            self.sq_grad, self.moments, grad = 0.0, 0, None
        self._update(grad)
        self.x_before = st.x.copy()

    def _gradient(self, i, alpha, diverged, runner):
        """The ChEES gradient in log T from the step just run (0 when no proposal
        counts)."""
        xp = array_namespace(self.st.x)
        xn, pn = _proposal(runner)
        xn, pn = xn.astype(np.float64), pn.astype(np.float64)
        x0 = self.x_before.astype(np.float64)
        finite = xp.isfinite(xn).all(axis=1) & xp.isfinite(pn).all(axis=1) & ~diverged
        w = xp.where(finite, alpha, 0.0)
        total = float(w.sum())
        if not total > 0:
            return 0.0
        xn = xp.where(finite[:, None], xn, 0.0)
        pn = xp.where(finite[:, None], pn, 0.0)
        kind, _, minv_diag, _, minv = self.sampler._mass_on_device(np.float64, xn.shape[1])
        v = pn if kind == 0 else pn * minv_diag if kind == 1 else pn @ minv.T
        dn = xn - (w[:, None] * xn).sum(axis=0) / total
        d0 = x0 - x0.mean(axis=0)
        change = (dn * dn).sum(axis=1) - (d0 * d0).sum(axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            g = float((w * change * (dn * v).sum(axis=1)).sum()) / total
        h = float(halton(self.first_step + i))
        g *= h * math.exp(self.log_t)  # d x' / d log T = h T v'
        return g if math.isfinite(g) else 0.0

    def _update(self, grad):
        """One Adam step on log T (ascent; none when ``grad`` is None), T clipped for the
        next step's step size, and the iterate average."""
        self.count += 1
        move = 0.0
        if grad is not None:
            self.moments += 1
            b = SQ_GRAD_DECAY
            self.sq_grad = b * self.sq_grad + (1.0 - b) * grad * grad
            scale = self.sq_grad / (1.0 - b ** self.moments)
            if scale > 0:
                move = self.sampler.learning_rate * grad / math.sqrt(scale)
                move = min(max(move, -LOG_UPDATE_CLIP), LOG_UPDATE_CLIP)
        length = self.sampler._clip_length(math.exp(self.log_t + move),
                                           self.averaging.step_size)
        self.log_t = math.log(length)
        w = self.count ** -0.5
        self.log_t_bar = w * self.log_t + (1.0 - w) * self.log_t_bar
        self.sampler.trajectory_length = length

    def final_trajectory_length(self, step_size):
        """The tuned T: the averaged iterate, clipped for the final step size."""
        return self.sampler._clip_length(math.exp(self.log_t_bar), step_size)


class ChEESHMC(HamiltonianMonteCarlo):
    """HMC whose trajectory length T, one for all chains, is tuned by ChEES and
    jittered per proposal by a Halton sequence (Hoffman, Radul & Sountsov 2021).

    Parameters
    ----------
    energy : Energy
        The target's energy (aliases ``model=``, ``energy_function=``).
    step_size : float or BaseScheduler
        Leapfrog step ε > 0, or a schedule over proposals.
    mass : None, float, array (dim,) or array (dim, dim)
        Mass matrix M, as for :class:`HamiltonianMonteCarlo`.
    target_accept : float
        What ``adapt`` tunes the harmonic mean of the chains' acceptance probabilities
        toward (0.651, the paper's).
    trajectory_length : float, optional
        T > 0: proposal n integrates for ``h_n T`` (``h_n`` in (0, 1), see
        :func:`halton`).  Default: the (first) step size, one leapfrog step, from which
        ``adapt`` grows it.
    max_leapfrog_steps : int
        Most leapfrog steps per proposal (1000); ``adapt`` keeps T <= this many steps.
    learning_rate : float
        Adam's learning rate on log T during ``adapt`` (0.025).
    dtype, device, seed
        See :class:`~npebm.samplers.BaseSampler`.

    Notes
    -----
    ``sample(..., burn_in=B, adapt=...)`` tunes T, the step size (toward the harmonic
    mean of the acceptance probabilities) and, with a mass mode (``"diag"``,
    ``"dense"``, ...), the mass, pooling all chains at every step (at least 2 chains);
    see the module docstring for the updates.  The tuned T stays on the sampler
    (``trajectory_length``, ``get_state()["trajectory_length"]``, the diagnostics'
    ``adapted_trajectory_length``) and is used, fixed, by later runs.  With
    ``adapt=None`` T is not changed.  A proposal costs ``ceil(h_n T / ε)`` gradients,
    on average about ``T / (2ε)``.

    Examples
    --------
    >>> import numpy as np
    >>> from npebm.energies import GaussianEnergy
    >>> energy = GaussianEnergy(np.zeros(3), np.diag([1.0, 4.0, 9.0]))
    >>> sampler = ChEESHMC(energy, seed=0)
    >>> x = sampler.sample(n_samples=64, n_steps=100, burn_in=300, adapt="diag")
    >>> 1.0 < sampler.trajectory_length / sampler.step_size < 100.0
    True
    """

    _STATE_KEYS = HamiltonianMonteCarlo._STATE_KEYS + ("trajectory_length",)

    def __init__(self, energy=None, step_size=1e-1, mass=None, target_accept=0.651, *,
                 trajectory_length=None, max_leapfrog_steps=1000, learning_rate=0.025,
                 dtype=None, device="cpu", seed=None, model=None, energy_function=None):
        # HMC's own __init__ would ask for n_leapfrog_steps and jitter, which T replaces.
        ChainSampler.__init__(self, energy, dtype=dtype, device=device, seed=seed,
                              model=model, energy_function=energy_function)
        self.target_accept = check_probability(target_accept, "target_accept")
        self.register_scheduler("step_size", step_size)
        first = schedule_values(self.schedulers["step_size"], "step_size", 0, 1)[0]
        self.max_leapfrog_steps = check_int(max_leapfrog_steps, "max_leapfrog_steps", 1)
        self.learning_rate = check_real(learning_rate, "learning_rate", positive=True)
        self.trajectory_length = first if trajectory_length is None else trajectory_length
        self.jitter = 0.0  # HMC's per-chain step jitter: the Halton sequence replaces it
        self._init_mass(mass)

    @property
    def trajectory_length(self):
        """T: proposal n integrates for ``h_n T`` (a float; tuned by ``adapt``)."""
        return self._trajectory_length

    @trajectory_length.setter
    def trajectory_length(self, value):
        self._trajectory_length = check_real(value, "trajectory_length", positive=True,
                                             allow_0d=True)

    def _clip_length(self, length, step_size):
        """T at most ``max_leapfrog_steps`` steps of ``step_size``."""
        return min(length, step_size * self.max_leapfrog_steps)

    # ------------------------------------------------------------------ the schedule
    _schedules_follow_schedulers = False  # the Halton jitter changes at every step

    def _schedules(self, start, n):
        eta = schedule_values(self.schedulers["step_size"], "step_size", start, n)
        return self._step_arrays(eta, start, self.trajectory_length)

    def _step_arrays(self, eta, start, trajectory_length):
        """Per-step arrays of steps ``start .. start + len(eta) - 1`` with step sizes
        ``eta`` and trajectory length T: ``ceil(h_n T / ε_n)`` leapfrog steps each."""
        h = halton(np.arange(start, start + len(eta)))
        with np.errstate(over="ignore"):
            count = np.ceil(h * trajectory_length / eta)
        return {"step_size": eta, "half": 0.5 * eta,
                "n_leapfrog": np.clip(count, 1, self.max_leapfrog_steps).astype(np.int64)}

    def leapfrog_steps(self, start, n):
        """``(n,)`` int64: the leapfrog steps of the proposals of steps ``start .. start +
        n - 1`` (the sampler's step count, as ``get_state()["step"]``) with the current
        step size and T."""
        start = check_int(start, "start", 0)
        n = check_int(n, "n", 0)
        return self._schedules(start, n)["n_leapfrog"]

    def _vector_step(self, run, s, sched, streams):
        accepted, diverged, alpha, xn, p = self._vector_proposal(run, s, sched, streams)
        run.chees_proposal = (xn, p)  # for the adaptation (see _proposal)
        return accepted, diverged, alpha, None

    # ------------------------------------------------------------------ adaptation
    def sample(self, x=None, dim=None, n_samples=None, n_steps=100, thin=1, burn_in=0,
               return_trajectory=False, return_diagnostics=False, progress=False,
               seed=None, resume=False, chain_offset=0, adapt=None, block_rows=None):
        """Run the chains: see :meth:`~npebm.samplers.ChainSampler.sample`.  Here
        ``adapt`` also tunes the trajectory length, from all chains' proposals: it needs
        at least 2 chains."""
        if adapt is not None and self._chain_count(x, n_samples, resume) == 1:
            raise ValueError("adapt needs n_samples >= 2: ChEES tunes the trajectory length "
                             "from the spread of the chains' proposals")
        return super().sample(
            x=x, dim=dim, n_samples=n_samples, n_steps=n_steps, thin=thin, burn_in=burn_in,
            return_trajectory=return_trajectory, return_diagnostics=return_diagnostics,
            progress=progress, seed=seed, resume=resume, chain_offset=chain_offset,
            adapt=adapt, block_rows=block_rows)

    def _chain_count(self, x, n_samples, resume):
        """The run's number of chains as far as it is known before any check (None when
        it is not)."""
        if resume and self._state is not None:
            return self._state.n_chains
        if x is not None and not resume:
            shape = getattr(x, "shape", None)
            if shape is None:
                try:
                    shape = np.shape(x)
                except (TypeError, ValueError):
                    return None
            return 1 if len(shape) == 1 else shape[0] if len(shape) == 2 else None
        if n_samples is None:
            return None if resume else 1
        return int(n_samples) if is_integer(n_samples) else None

    def _adapt(self, st, burn_in, adapt, progress=False):
        """Burn-in with adaptation: HMC's (step size, mass windows) with the harmonic
        mean of the acceptance probabilities, and T by ChEES after every step."""
        from ..schedulers import ConstantScheduler

        policy = _ChEESAdaptation(self, st, burn_in, adapt)
        self._run(st, policy.schedule, burn_in, 0, 1, False, False, progress, between=policy)
        step = policy.averaging.final_step_size
        self.schedulers["step_size"] = ConstantScheduler(step)
        self.trajectory_length = policy.final_trajectory_length(step)

    def _package(self, result, want_traj, want_diag, adapt=None):
        packed = super()._package(result, want_traj, want_diag, adapt)
        if adapt is None or not want_diag:
            return packed
        from ..diagnostics import Diagnostics

        samples, diag = packed
        return samples, Diagnostics(
            **diag, adapted_trajectory_length=np.float64(self.trajectory_length))

    # ------------------------------------------------------------------ state
    def get_state(self):
        """HMC's state (see :meth:`ChainSampler.get_state`) and ``trajectory_length``."""
        state = super().get_state()
        state["trajectory_length"] = np.float64(self.trajectory_length)
        return state

    def set_state(self, state):
        """Restore :meth:`get_state`'s dict; its ``trajectory_length`` (when present)
        replaces the sampler's."""
        length = state.get("trajectory_length") if hasattr(state, "get") else None
        if length is not None:
            # Checked before anything changes: a bad entry leaves the sampler as it was.
            length = check_real(np.asarray(length)[()], "state['trajectory_length']",
                                positive=True)
        super().set_state(state)
        if length is not None:
            self.trajectory_length = length
