"""Non-reversible parallel tempering over many independent ladders.

Each ladder holds ``n_temperatures`` chains on the path
:math:`\\pi_\\beta \\propto \\exp(-\\beta E)\\, q^{1 - \\beta}` from a Gaussian reference
``q`` (β = 0) to the target (β = 1), see :mod:`npebm.energies.tempered`.  Every step,
each chain takes one step of the wrapped sampler on its own π_β (through the sampler's
compiled kernel, with a tempered evaluation), the β = 0 chains are redrawn exactly from
``q``, and neighbours swap states by a Metropolis test: pairs (0, 1), (2, 3), … on even
steps and (1, 2), (3, 4), … on odd ones (the deterministic even–odd scheme, which makes
the index process non-reversible).

During burn-in, the adaptive schedule runs in rounds of doubling length; after each,
the βs are re-spaced so that the swap rejection rates of neighbours are equal (the
cumulative rejection Λ(β) is interpolated and inverted).  Λ = Λ(1), the global
communication barrier, is reported; about 2Λ temperatures are enough.

log Z comes from the stepping stones of the kept part of the run, forward and backward
(their Jensen biases, low and high, cancel to first order):
:math:`\\log Z = \\log Z_q + \\sum_k \\log \\mathbb{E}_{\\pi_{\\beta_k}}
[e^{-(\\beta_{k+1} - \\beta_k)(E - E_q)}]`, pooled over ladders, with the standard error
from the spread of the per-ladder estimates.

References
----------
S. Syed, A. Bouchard-Côté, G. Deligiannidis, A. Doucet, "Non-reversible parallel
tempering: a scalable highly parallel MCMC scheme", JRSS B 84 (2022).
N. Surjanovic et al., "Pigeons.jl: distributed sampling from intractable
distributions" (2023).
"""
import copy
import math

import numpy as np

from .._validation import check_bool, check_choice, check_int
from ..random import REFERENCE, SWAP, ChainStreams
from .state import ChainState

__all__ = ["ParallelTempering"]

#: Steps of the first adaptation round (then 2x, 4x, ...).
FIRST_ROUND = 16
#: Temperatures when neither ``n_temperatures`` nor ``betas`` is given.
DEFAULT_TEMPERATURES = 16


def _check_betas(betas):
    try:
        b = np.asarray(betas, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"betas must be an array of floats, got {betas!r}") from None
    if b.ndim != 1 or b.shape[0] < 2:
        raise ValueError(f"betas must be a 1-D array of at least 2 values, got shape "
                         f"{b.shape}")
    if not np.isfinite(b).all() or b.min() < 0 or b.max() > 1:
        raise ValueError("betas must lie in [0, 1]")
    if not (np.diff(b) > 0).all():
        raise ValueError("betas must be strictly increasing")
    if b[0] != 0.0 or b[-1] != 1.0:
        raise ValueError(f"betas must start at 0 (the reference) and end at 1 (the "
                         f"target), got {b[0]:g} ... {b[-1]:g}")
    return b


def _check_reference(reference):
    """``(mean, cov)`` from None, a pair or a dict (checked against the dim later)."""
    if reference is None:
        return None, None
    if isinstance(reference, dict):
        unknown = set(reference) - {"mean", "cov"}
        if unknown:
            raise ValueError(f"reference takes 'mean' and 'cov', got {sorted(unknown)}")
        return reference.get("mean"), reference.get("cov")
    try:
        mean, cov = reference
    except (TypeError, ValueError):
        raise TypeError("reference must be None, (mean, cov) or {'mean': ..., 'cov': ...}"
                        f", got {type(reference).__name__}") from None
    return mean, cov


def respace(betas, rejection):
    """New βs with equal cumulative rejection between neighbours.

    Parameters
    ----------
    betas : (T,) increasing, from 0 to 1
    rejection : (T - 1,) mean swap rejection of each neighbouring pair

    Returns
    -------
    (T,) βs, and Λ(β) at the old βs (the cumulative rejection, Λ = its last value).
    """
    r = np.clip(np.nan_to_num(rejection, nan=1.0), 1e-9, 1.0)
    cumulative = np.concatenate([[0.0], np.cumsum(r)])
    targets = np.linspace(0.0, cumulative[-1], len(betas))
    new = np.interp(targets, cumulative, betas)
    new[0], new[-1] = 0.0, 1.0
    return new, cumulative


def tempered_copy(sampler, path):
    """A copy of ``sampler`` that runs on the tempered energy ``path`` (the original,
    its state and its schedulers untouched)."""
    t = copy.copy(sampler)
    t.schedulers = dict(sampler.schedulers)
    t.energy = path
    t._state = None
    # Every step evaluates its proposal: the hooks read the target's values there.
    t._defers_last_evaluation = False
    return t


class ParallelTempering:
    """Non-reversible parallel tempering wrapped around an npebm sampler.

    Parameters
    ----------
    sampler : ChainSampler
        The sampler each chain runs on its tempered target (LangevinDynamics, MALA,
        HamiltonianMonteCarlo, UnderdampedLangevin), with its energy, step size, dtype
        and seed.
    n_temperatures : int, optional
        Chains per ladder, T >= 2 (default 16, or ``len(betas)``).
    betas : array_like (T,), optional
        Increasing, from 0 to 1; the starting schedule of an adaptive run.  Default:
        quadratic spacing, ``(k / (T - 1))**2``.
    reference : None, (mean, cov) or dict
        The Gaussian q at β = 0 (default N(0, I)); ``cov`` a float, a vector of
        variances or a matrix.
    schedule : {"adaptive", "fixed"}
        "adaptive" re-spaces the βs during burn-in in rounds of doubling length.
    seed : None, int or SeedSequence
        Default seed of ``sample()`` (default: the sampler's).
    adapt_step_size : bool, optional
        Tune each temperature's step size during burn-in by dual averaging toward the
        sampler's ``target_accept``, from the acceptance averaged over ladders (default:
        when the sampler has an acceptance step, MALA and HMC, and a constant step
        size).  The sampler's step size is the starting value of every temperature.

    Notes
    -----
    ``sample(n_samples=L)`` runs L independent ladders; chain ``l * T + t`` of the
    wrapped sampler is ladder l at temperature index t, so its streams depend on the
    seed and those indices alone, and results are the same for any number of threads
    and after a resume.  Results are the β = 1 chains, one per ladder, in the usual
    shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from npebm.energies import GaussianEnergy
    >>> from npebm.samplers import HamiltonianMonteCarlo
    >>> target = GaussianEnergy(np.zeros(2), np.eye(2) * 0.25)
    >>> pt = ParallelTempering(HamiltonianMonteCarlo(target, step_size=0.3, seed=0),
    ...                        n_temperatures=4)
    >>> x, d = pt.sample(n_samples=8, n_steps=200, burn_in=100, return_diagnostics=True)
    >>> x.shape, d["betas"].shape
    ((8, 2), (4,))
    """

    def __init__(self, sampler, n_temperatures=None, betas=None, reference=None,
                 schedule="adaptive", seed=None, *, adapt_step_size=None):
        from .base import ChainSampler

        if isinstance(sampler, ParallelTempering) or not isinstance(sampler, ChainSampler):
            raise TypeError("sampler must be an npebm chain sampler (LangevinDynamics, "
                            "MALA, HamiltonianMonteCarlo, UnderdampedLangevin), got "
                            f"{type(sampler).__name__}")
        if sampler.backend.name != "cpu":
            raise NotImplementedError("ParallelTempering runs on the CPU for now; give it "
                                      "a sampler with device='cpu'")
        if n_temperatures is not None:
            n_temperatures = check_int(n_temperatures, "n_temperatures", 2)
        if betas is not None:
            betas = _check_betas(betas)
            if n_temperatures is not None and n_temperatures != len(betas):
                raise ValueError(f"n_temperatures={n_temperatures} disagrees with betas, "
                                 f"which has {len(betas)} values")
        else:
            t = n_temperatures or DEFAULT_TEMPERATURES
            betas = (np.arange(t) / (t - 1)) ** 2
        self.sampler = sampler
        self.betas = betas
        self.n_temperatures = len(betas)
        self._reference_args = _check_reference(reference)
        self.schedule = check_choice(schedule, "schedule", ("adaptive", "fixed"))
        self.seed = sampler.seed if seed is None else seed
        has_accept = hasattr(sampler, "target_accept")
        if adapt_step_size is None:
            adapt_step_size = has_accept and np.isfinite(sampler._constant_step_size())
        elif check_bool(adapt_step_size, "adapt_step_size") and not has_accept:
            raise ValueError(f"adapt_step_size tunes toward an acceptance rate, which "
                             f"{type(sampler).__name__} does not have")
        elif adapt_step_size and not np.isfinite(sampler._constant_step_size()):
            raise ValueError("adapt_step_size needs the sampler's step_size as a float "
                             "(the starting value), not a scheduler")
        self.adapt_step_size = bool(adapt_step_size)
        self._run_state = None

    @property
    def energy(self):
        """The target's energy (the wrapped sampler's)."""
        return self.sampler.energy

    # ------------------------------------------------------------------ public API
    def sample(self, x=None, dim=None, n_samples=None, n_steps=100, thin=1, burn_in=0,
               return_trajectory=False, return_diagnostics=False, progress=False,
               seed=None, resume=False, chain_offset=0, block_rows=None):
        """Run ``n_samples`` ladders; return their β = 1 chains.

        Parameters
        ----------
        x : array_like (n_samples, dim) or (dim,), optional
            Starting states of the ladders (every temperature of a ladder starts
            there); None draws them from the reference.
        dim, n_samples, n_steps, thin, burn_in, return_trajectory, return_diagnostics,
        progress, seed, resume
            As :meth:`ChainSampler.sample`, with ``n_samples`` the number of ladders.
            Burn-in is where an adaptive schedule adapts.
        chain_offset : int
            Global index of the first ladder (a shard of a bigger run): ladder l uses
            the streams of chains ``l * T .. l * T + T - 1`` and its own reference and
            swap streams, so shards agree with the whole run bit for bit.
        block_rows : int, optional
            Ladders per block of the across-chain moments of the β = 1 chains (default
            from ``n_samples``); a shard gives the whole run's value and then reports
            ``block_sums`` and ``block_counts`` (see ``ChainSampler.sample``).

        Returns
        -------
        samples : ndarray (n_samples, dim) or (n_samples, n_kept, dim)
        diagnostics : Diagnostics
            The usual fields for the β = 1 chains (the wrapped sampler's own per-step
            fields too, NUTS's ``tree_depth`` say, (n_kept, n_samples)), plus ``betas`` (T,),
            ``swap_acceptance`` (T - 1,), ``barrier`` (Λ), ``local_barrier`` (T,)
            (Λ(β_k)), ``suggested_n_temperatures`` (about 2Λ), ``round_trips``
            (n_samples,), ``round_trip_rate`` (per ladder and step), ``log_z``,
            ``log_z_se`` and ``ladder_log_z`` (n_samples,); ``temperature_acceptance``
            and ``temperature_step_size`` (T,); ``index_process`` (n_kept, n_samples,
            T), the replica at each temperature; per burn-in round of this call,
            ``rejection_history`` (n_rounds, T - 1) and ``round_log_z`` (n_rounds,);
            and the sums behind the summaries, per ladder where they are per ladder
            (``swap_accepts``, ``swap_tries``, ``swap_rejection_sum``,
            ``temperature_alpha_sum``, ``temperature_alpha_count``,
            ``stepping_stone_max``, ``stepping_stone_sum``, ``stepping_stone_count``,
            ``reference_log_z``), which shards of a distributed run add up.

        Raises
        ------
        TypeError, ValueError
            For a bad argument, before any work, naming it.
        InsufficientMemoryError
            When the ladders' arrays cannot fit in memory, before any is allocated.
        """
        from .base import check_run_arguments

        n_steps, thin, burn_in, want_traj, want_diag, progress, resume = \
            check_run_arguments(n_steps, thin, burn_in, return_trajectory,
                                return_diagnostics, progress, resume)
        chain_offset = check_int(chain_offset, "chain_offset", 0)
        if block_rows is not None:
            block_rows = check_int(block_rows, "block_rows", 1)
        if resume:
            if self._run_state is None:
                raise RuntimeError("resume=True but this sampler has not run yet")
            for name, value in (("x", x), ("seed", seed)):
                if value is not None:
                    raise ValueError(f"{name} must be None when resume=True")
            run = self._run_state
            run.check_resume(n_samples, dim)
            if chain_offset not in (0, run.ladder0):
                raise ValueError("chain_offset cannot change when resume=True")
        else:
            run = self._fresh_run(x, dim, n_samples, seed, chain_offset,
                                  (n_steps // thin, want_traj, want_diag))
        run.block_rows = block_rows
        run.history, run.round_log_z = [], []  # this call's adaptation rounds
        run.tempered._check_schedules(run.st.step, burn_in + n_steps, run.st.x.dtype)
        if not resume:
            run.tempered._check_start(run.st)
        if burn_in:
            self._burn_in(run, burn_in, progress)
        swaps = _Swaps(run, burn_in=0, n_steps=n_steps, thin=thin, want_traj=want_traj,
                       want_diag=want_diag)
        out, _ = run.tempered._run(run.st, run.tempered._schedule_from(run.st.step), 0,
                                   n_steps, thin, False, False, progress, between=swaps)
        self._run_state = run
        run.tempered._warn_about_run(out, n_steps)
        cold = run.cold_rows
        samples = swaps.traj if want_traj else run.st.x[cold].copy()
        if not want_diag:
            return samples
        return samples, swaps.diagnostics(out)

    # ------------------------------------------------------------------ running
    def _fresh_run(self, x, dim, n_samples, seed, ladder0=0, plan=None):
        inner = self.sampler
        if x is not None:
            x0 = inner._check_x(x, dim, n_samples)  # the ladders' starts, checked
            n_ladders, d = x0.shape
        else:
            n_ladders = 1 if n_samples is None else check_int(n_samples, "n_samples", 1)
            if dim is not None:
                dim = check_int(dim, "dim", 1)
            d = dim if dim is not None else inner.energy.dim
            if d is None:
                raise ValueError(f"dim is required: x is None and "
                                 f"{type(inner.energy).__name__} does not fix its dimension")
            inner._check_dim(d, "dim")
            x0 = None
        if plan is not None:
            self._check_memory(n_ladders, d, np.dtype(inner.dtype or (
                x0.dtype if x0 is not None else np.float64)), *plan)
        from ..energies.tempered import GaussianReference, TemperedEnergy

        mean, cov = self._reference_args
        try:
            reference = GaussianReference(d, mean, cov)
        except ValueError as exc:
            raise ValueError(f"reference: {exc}") from None
        return _Run(self, inner, reference, TemperedEnergy, x0, n_ladders, d, seed,
                    ladder0=ladder0)

    def _check_memory(self, n_ladders, d, dtype, n_kept, want_traj, want_diag):
        """Refuse, before allocating anything, ladders whose arrays cannot fit."""
        from .base import InsufficientMemoryError, _memory_limit

        item, t = dtype.itemsize, self.n_temperatures
        need = 16 * n_ladders * t * d * item + 96 * n_ladders * t  # chains, work, swaps
        if want_traj:
            need += n_ladders * n_kept * d * item
        if want_diag:
            need += n_kept * n_ladders * (item + 17 + 2 * t) + 3 * n_kept * d * 8
        limit, where = _memory_limit(self.sampler.backend)
        if limit is not None and need > limit:
            raise InsufficientMemoryError(
                f"these ladders need about {need / 2**30:.1f} GiB but {where} has "
                f"{limit / 2**30:.1f} GiB; use fewer ladders (n_samples=) or temperatures, "
                "or keep fewer steps (a larger thin=, fewer n_steps=)")

    def _burn_in(self, run, burn_in, progress):
        """Burn-in: rounds of doubling length, re-spacing the βs after each (adaptive),
        or one run (fixed)."""
        if self.schedule == "fixed":
            rounds = [burn_in]
        else:
            rounds, length, left = [], FIRST_ROUND, burn_in
            while left:
                take = length if left >= 3 * length else left  # the last takes the rest
                rounds.append(take)
                left -= take
                length *= 2
        from .adaptation import DualAveraging

        base = self.sampler._constant_step_size()
        for length in rounds:
            adapt = None
            if self.adapt_step_size:
                # Each round starts afresh from the last one's averaged steps: the βs,
                # and so the best steps, have moved.
                adapt = ([DualAveraging(base * c, self.sampler.target_accept)
                          for c in run.scales], base)
            swaps = _Swaps(run, burn_in=length, n_steps=0, thin=1, want_traj=False,
                           want_diag=False, stones_from=0, adapt=adapt)
            run.tempered._run(run.st, run.tempered._schedule_from(run.st.step), length, 0,
                              1, False, False, progress, between=swaps)
            if self.schedule == "adaptive":
                run.history.append(swaps.rejection())
                run.round_log_z.append(swaps.log_z()[0])
            if adapt is not None:
                run.set_scales(np.array([da.final_step_size for da in adapt[0]]) / base)
            if self.schedule == "adaptive":
                run.set_betas(respace(run.betas, swaps.rejection())[0])

    def get_state(self):
        """Where the ladders stand, as a dict of NumPy arrays (``np.savez``-able)."""
        if self._run_state is None:
            raise RuntimeError("nothing to save: this sampler has not run yet")
        return self._run_state.to_dict()

    def set_state(self, state):
        """Restore :meth:`get_state`'s dict, for ``resume=True``."""
        from ..energies.tempered import GaussianReference, TemperedEnergy

        betas = _check_betas(state["pt_betas"])
        d = int(np.asarray(state["x"]).shape[1])
        mean, cov = self._reference_args
        reference = GaussianReference(d, mean, cov)
        run = _Run.from_dict(self, self.sampler, reference, TemperedEnergy, state, betas)
        self._run_state = run


class _Run:
    """The ladders of a run: the wrapped sampler's copy on the tempered energy, its
    chain state (n_ladders * T chains), the βs and the index process."""

    def __init__(self, pt, inner, reference, tempered_type, x0, n_ladders, d, seed,
                 _state=None, ladder0=0):
        from ..random import INIT
        from .base import _key

        self.pt = pt
        self.L, self.T, self.d = n_ladders, pt.n_temperatures, d
        self.ladder0 = ladder0  # the global index of the first ladder
        self.block_rows = None  # ladders per moment block (None: from L)
        n = self.L * self.T
        self.betas = pt.betas.copy()
        self.row_betas = np.tile(self.betas, self.L)
        self.reference = reference
        self.path = tempered_type(inner.energy, reference, self.row_betas)
        t = self.tempered = tempered_copy(inner, self.path)
        self.cold_rows = np.arange(self.L) * self.T + self.T - 1
        self.bottom_rows = np.arange(self.L) * self.T
        #: The target's E and ∇E at the chains' states (kept by the swap hook).
        self.base_e = self.base_g = None
        self.history = []  # per burn-in round: the swap rejection of each pair
        self.round_log_z = []  # per burn-in round: its stepping-stone log Z
        if _state is not None:
            self.st = _state
        else:
            key = _key(pt.seed if seed is None else seed)
            dtype = inner.dtype or (x0.dtype if x0 is not None else np.dtype(np.float64))
            if x0 is None:
                z = t._draw_normal(key, n, d, ladder0 * self.T, np.dtype(np.float64), INIT)
                xs = reference.transform(z).astype(dtype)
            else:
                xs = np.repeat(np.asarray(x0, dtype=dtype), self.T, axis=0)
            self.st = ChainState(np.ascontiguousarray(xs), np.zeros(n, np.uint64), key, 0,
                                 ladder0 * self.T, step_scale=np.ones(n))
            t._init_state_fields(self.st)
            self.ref_streams = self._streams(REFERENCE)
            self.swap_streams = self._streams(SWAP)
            self.perm = np.tile(np.arange(self.T), (self.L, 1))
            # Per replica: +1 after it last touched the top, -1 the bottom, 0 neither.
            self.last_end = np.zeros((self.L, self.T), np.int8)
            self.trips = np.zeros(self.L, np.int64)
        if self.st.step_scale is None:
            self.st.step_scale = np.ones(n)
        #: Each temperature's step-size factor (times the sampler's step size).
        self.scales = self.st.step_scale[:self.T].copy()

    def _streams(self, stream):
        s = ChainStreams(n_chains=self.L, chain_offset=self.ladder0, stream=stream)
        s.set_state({"key": self.st.key, "positions": np.zeros(self.L, np.uint64),
                     "chain_offset": self.ladder0, "stream": stream})
        return s

    def set_scales(self, scales):
        self.scales = scales
        self.st.step_scale = np.tile(scales, self.L)

    def set_betas(self, betas):
        self.betas = betas
        self.row_betas[:] = np.tile(betas, self.L)  # in place: the kernels read it

    def check_resume(self, n_samples, dim):
        if n_samples is not None and check_int(n_samples, "n_samples", 1) != self.L:
            raise ValueError(f"n_samples={n_samples} disagrees with the {self.L} ladders "
                             "being resumed")
        if dim is not None and check_int(dim, "dim", 1) != self.d:
            raise ValueError(f"dim={dim} disagrees with the state being resumed "
                             f"(dim {self.d})")

    def to_dict(self):
        state = self.st.to_dict()
        state.update(pt_betas=self.betas.copy(), pt_ladders=np.int64(self.L),
                     pt_ref_pos=self.ref_streams.positions,
                     pt_swap_pos=self.swap_streams.positions, pt_perm=self.perm.copy(),
                     pt_last_end=self.last_end.copy(), pt_trips=self.trips.copy())
        return state

    @classmethod
    def from_dict(cls, pt, inner, reference, tempered_type, state, betas):
        if len(betas) != pt.n_temperatures:
            raise ValueError(f"the state has {len(betas)} temperatures, this sampler "
                             f"{pt.n_temperatures}")
        st = ChainState.from_dict(state, inner.state_fields, np.asarray)
        n_ladders = int(state["pt_ladders"])
        if st.n_chains != n_ladders * pt.n_temperatures or st.chain_offset % pt.n_temperatures:
            raise ValueError(f"the state's {st.n_chains} chains from {st.chain_offset} are "
                             f"not whole ladders of {pt.n_temperatures}")
        self = cls(pt, inner, reference, tempered_type, None, n_ladders, st.dim, None,
                   _state=st, ladder0=st.chain_offset // pt.n_temperatures)
        self.set_betas(betas)
        self.ref_streams = self._streams(REFERENCE)
        self.ref_streams._pos[:] = state["pt_ref_pos"]
        self.swap_streams = self._streams(SWAP)
        self.swap_streams._pos[:] = state["pt_swap_pos"]
        self.perm = np.array(state["pt_perm"])
        self.last_end = np.array(state["pt_last_end"])
        self.trips = np.array(state["pt_trips"])
        return self


class _Swaps:
    """The step-major hook of a tempered run: exact reference draws at β = 0, the even–odd
    swaps, the index process, the swap statistics and, after burn-in, the recording of
    the β = 1 chains and the stepping stones."""

    def __init__(self, run, burn_in, n_steps, thin, want_traj, want_diag, stones_from=None,
                 adapt=None):
        self.run = run
        self.adapt = adapt  # (a DualAveraging per temperature, the base step) or None
        # Sums per ladder (shards concatenate them, and totals over ladders are then
        # the same bits), and the number of steps behind them.
        self.alpha_sum = np.zeros((run.L, run.T))
        self.alpha_count = 0
        self.step0 = run.st.step
        self.burn_in, self.thin = burn_in, thin
        self.stones_from = burn_in if stones_from is None else stones_from
        L, T, d = run.L, run.T, run.d
        self.n_kept = n_steps // thin
        self.want_diag = want_diag
        dtype = run.st.x.dtype
        self.traj = np.empty((L, self.n_kept, d), dtype) if want_traj else None
        if want_diag:
            self.energy = np.empty((self.n_kept, L), dtype)
            self.grad_norm = np.empty((self.n_kept, L))
            self.accepted = np.zeros((self.n_kept, L), bool)
            # Per block of ladders, shifted sums of the β = 1 states (as the chain loop
            # keeps them), so that shards combine to the whole run's bits.
            from ._loop import rows_per_block

            rows = run.block_rows or rows_per_block(L)
            self.block_edges = np.append(np.arange(0, L, rows), L)
            self.moments = np.zeros((len(self.block_edges) - 1, self.n_kept, 3, d))
            self.index = np.empty((self.n_kept, L, T), np.int16)
            # The wrapped sampler's own per-step fields (NUTS's tree depth...) at β = 1.
            self.info_fields = run.tempered.info_fields
            self.info = np.zeros((self.n_kept, L, len(self.info_fields)))
        self.rej_sum = np.zeros((L, T - 1))
        self.rej_count = np.zeros(T - 1, np.int64)  # steps on which each pair was tried
        self.acc_sum = np.zeros((L, T - 1))
        # Running log-sum-exp of the stepping stones, per ladder and pair.
        # [:, 0] forward (from π_k toward π_{k+1}), [:, 1] backward stones.
        self.ss_max = np.full((L, 2, T - 1), -np.inf)
        self.ss_sum = np.zeros((L, 2, T - 1))
        self.ss_count = 0
        self.trips0 = run.trips.copy()
        self.n_steps_done = 0
        self.prev_accepted = None

    def rejection(self):
        """Mean swap rejection per neighbouring pair (NaN where no swap was tried)."""
        with np.errstate(invalid="ignore"):
            return self.rej_sum.sum(axis=0) / (self.rej_count * self.run.L)

    def __call__(self, i, out, runner):
        run = self.run
        L, T = run.L, run.T
        t = self.step0 + i  # the sampler's step count: parity and streams follow it
        x, _, _ = runner.arrays()
        dtype = x.dtype
        path, reference = run.path, run.reference
        # The target's E and ∇E at every chain's state, without evaluating it again: a
        # chain that moved is where its last evaluation was.
        if run.base_e is None:
            run.base_e, run.base_g = path.base_energy_and_gradient(x)
        elif not getattr(run.tempered, "_moves_to_last_evaluation", True):
            # NUTS moves to a leaf chosen from its trajectory, not the last one.
            moved = runner.moved()
            run.base_e[moved], run.base_g[moved] = path.base_energy_and_gradient(x[moved])
        else:
            moved = runner.moved()
            last_e, last_g = path.last_buffers(dtype)
            run.base_e[moved] = last_e[moved]
            run.base_g[moved] = last_g[moved]
        e, g = run.base_e, run.base_g
        # β = 0 is the reference itself: draw it exactly.
        z = run.ref_streams.normal(run.d, np.float64)
        bottom = run.bottom_rows
        x[bottom] = reference.transform(z).astype(dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            e[bottom], g[bottom] = path.base_energy_and_gradient(x[bottom])
            e_ref, g_ref = reference.energy_and_gradient(x)
            dv = (e.astype(np.float64) - e_ref).reshape(L, T)
            betas = run.betas
            if i >= self.stones_from:
                self._stepping_stones(dv, betas)
            # Swaps of the pairs (k, k + 1) with k of this step's parity.
            u = run.swap_streams.uniform(T - 1)
            ks = np.arange(t % 2, T - 1, 2)
            log_a = (betas[ks + 1] - betas[ks]) * (dv[:, ks + 1] - dv[:, ks])
            log_a = np.where(np.isnan(log_a), -np.inf, log_a)
            self.rej_sum[:, ks] += 1.0 - np.exp(np.minimum(log_a, 0.0))
            self.rej_count[ks] += 1
            take = np.log(u[:, ks]) < log_a
            self.acc_sum[:, ks] += take
        lad, kk = np.nonzero(take)
        if len(lad):
            a = lad * T + ks[kk]
            b = a + 1
            for arr in (x, e, g, e_ref, g_ref, *run.st.extra.values()):
                arr[a], arr[b] = arr[b].copy(), arr[a].copy()
            pa, pb = ks[kk], ks[kk] + 1
            run.perm[lad, pa], run.perm[lad, pb] = run.perm[lad, pb], run.perm[lad, pa]
        self._round_trips()
        alphas = np.asarray(out["alpha"]).reshape(L, T)
        self.alpha_sum += alphas
        self.alpha_count += 1
        alpha = alphas.mean(axis=0)
        if self.adapt is not None:
            das, base = self.adapt
            run.scales = np.array([da.update(a) for da, a in zip(das, alpha)]) / base
            runner.set_step_scale(np.tile(run.scales, L))
        et, gt = path.combine(e, g, e_ref, g_ref, dtype)
        runner.set_evaluated(et, gt)
        # Which cold chains moved this step: their counts (kept from the call's first
        # step on, burn-in included) against the last step's.
        n_acc = out["n_accepted"][run.cold_rows].copy()
        moved = n_acc > 0 if self.prev_accepted is None else n_acc != self.prev_accepted
        self.prev_accepted = n_acc
        if i >= self.burn_in:
            self._record(i - self.burn_in, x, e, g, moved, runner)

    def _stepping_stones(self, dv, betas):
        step = betas[1:] - betas[:-1]
        v = np.stack([-step * dv[:, :-1], step * dv[:, 1:]], axis=1)
        v = np.where(np.isnan(v), -np.inf, v)
        m = np.maximum(self.ss_max, v)
        finite = np.isfinite(m)
        scale = np.where(finite, np.exp(np.where(finite, self.ss_max - m, 0.0)), 0.0)
        add = np.where(finite, np.exp(np.where(finite, v - m, 0.0)), 0.0)
        self.ss_sum = self.ss_sum * scale + add
        self.ss_max = m
        self.ss_count += 1

    def _round_trips(self):
        """A replica's round trip: from the bottom to the top and back to the bottom."""
        run = self.run
        lad = np.arange(run.L)
        bottom, top = run.perm[:, 0], run.perm[:, -1]
        came_back = run.last_end[lad, bottom] == 1
        run.trips += came_back
        run.last_end[lad, bottom] = -1
        run.last_end[lad, top] = 1

    def _record(self, j, x, e, g, moved, runner):
        run = self.run
        cold = run.cold_rows
        if (j + 1) % self.thin:
            return
        k = (j + 1) // self.thin - 1
        if self.traj is not None:
            self.traj[:, k] = x[cold]
        if self.want_diag:
            xc = x[cold].astype(np.float64)
            self.energy[k] = e[cold]
            self.grad_norm[k] = np.sqrt((g[cold].astype(np.float64) ** 2).sum(axis=1))
            self.accepted[k] = moved
            if self.info_fields:
                self.info[k] = np.asarray(runner.last_info())[cold]
            for blk, (a, b) in enumerate(zip(self.block_edges[:-1], self.block_edges[1:])):
                shift = xc[a]
                dx = xc[a:b] - shift
                self.moments[blk, k, 0] = shift
                self.moments[blk, k, 1] = dx.sum(axis=0)
                self.moments[blk, k, 2] = (dx * dx).sum(axis=0)
            self.index[k] = run.perm

    def log_z(self):
        """``(log Z, its standard error over ladders, per-ladder log Z)``."""
        return _log_z(self.ss_max, self.ss_sum, self.ss_count, self.run.reference.log_z)

    def diagnostics(self, out):
        from ..diagnostics import Diagnostics, combine_block_moments

        run = self.run
        cold = run.cold_rows
        sched = run.tempered._schedules(self.step0, self.n_kept * self.thin)
        counts = np.diff(self.block_edges)
        mean, var = combine_block_moments(self.moments, counts)
        fields = dict(
            energy=self.energy, acceptance_rate=self.accepted.mean(axis=1),
            mean=mean.astype(run.st.x.dtype), var=var.astype(run.st.x.dtype),
            grad_norm=self.grad_norm,
            step_size=np.asarray(sched["step_size"][self.thin - 1::self.thin]),
            divergences=out["divergences"][cold].copy(), accepted=self.accepted,
            n_accepted=out["n_accepted"][cold].copy(),
            betas=run.betas.copy(),
            temperature_step_size=run.scales * run.tempered._constant_step_size(),
            round_trips=run.trips - self.trips0,
            rejection_history=np.array(run.history) if run.history else
            np.zeros((0, run.T - 1)), round_log_z=np.array(run.round_log_z, np.float64),
            index_process=self.index,
            # The sums behind the summaries below: shards add them up.
            swap_accepts=self.acc_sum, swap_tries=self.rej_count,
            swap_rejection_sum=self.rej_sum, temperature_alpha_sum=self.alpha_sum,
            temperature_alpha_count=np.int64(self.alpha_count),
            stepping_stone_max=self.ss_max, stepping_stone_sum=self.ss_sum,
            stepping_stone_count=np.int64(self.ss_count),
            reference_log_z=np.float64(run.reference.log_z))
        for i, f in enumerate(self.info_fields):
            fields[f.name] = self.info[:, :, i].astype(f.dtype)
        if run.block_rows is not None:  # a shard: its blocks, for combining
            fields.update(block_sums=self.moments, block_counts=counts)
        fields.update(summarise(fields, max(self.n_kept * self.thin, 1)))
        return Diagnostics(**fields)


def _log_z(ss_max, ss_sum, count, reference_log_z):
    """``(log Z, SE over ladders, per-ladder log Z)`` from the running log-sum-exp of the
    stepping stones, ``ss_max + log(ss_sum)`` per ladder, direction and pair, over
    ``count`` steps.

    Each ratio Z_{k+1} / Z_k is the mean of the forward estimate, E_k[e^{−Δβ ΔE}], and
    the inverse of the backward one, 1 / E_{k+1}[e^{Δβ ΔE}], in logs: their Jensen
    biases (low and high) cancel to first order.
    """
    n_ladders = ss_max.shape[0]
    if count == 0:
        return np.nan, np.nan, np.full(n_ladders, np.nan)
    sign = np.array([1.0, -1.0])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_pair = sign * (ss_max + np.log(ss_sum) - math.log(count))  # (L, 2, T - 1)
        ladder = reference_log_z + 0.5 * per_pair.sum(axis=(1, 2))
        m = ss_max.max(axis=0)
        pooled = sign * (m + np.log((ss_sum * np.exp(ss_max - m)).sum(axis=0))
                         - math.log(count * n_ladders))
    log_z = reference_log_z + 0.5 * pooled.sum()
    se = ladder.std(ddof=1) / math.sqrt(n_ladders) if n_ladders > 1 else np.nan
    return float(log_z), float(se), ladder


def summarise(fields, steps):
    """The summaries of a tempered run's diagnostics from its sums (``fields``, one run
    or shards' sums combined): swap acceptance, Λ, log Z and its SE, per-temperature
    acceptance, the round-trip rate over ``steps`` steps per ladder."""
    n_ladders = fields["swap_accepts"].shape[0]
    tries = fields["swap_tries"] * n_ladders
    with np.errstate(invalid="ignore"):
        swap_acc = fields["swap_accepts"].sum(axis=0) / tries
        rejection = fields["swap_rejection_sum"].sum(axis=0) / tries
    _, cumulative = respace(fields["betas"], rejection)
    barrier = float(cumulative[-1])
    log_z, se, ladder = _log_z(fields["stepping_stone_max"], fields["stepping_stone_sum"],
                               int(fields["stepping_stone_count"]),
                               float(fields["reference_log_z"]))
    trips = fields["round_trips"]
    return dict(
        swap_acceptance=swap_acc, barrier=np.float64(barrier), local_barrier=cumulative,
        suggested_n_temperatures=np.int64(max(2, math.ceil(2 * barrier))),
        temperature_acceptance=fields["temperature_alpha_sum"].sum(axis=0)
        / max(int(fields["temperature_alpha_count"]) * n_ladders, 1),
        round_trip_rate=np.float64(trips.sum() / (len(trips) * steps)),
        log_z=np.float64(log_z), log_z_se=np.float64(se), ladder_log_z=ladder)
