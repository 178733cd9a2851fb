"""The sampler base class and the driver shared by Langevin, MALA and HMC.

``BaseSampler`` carries TorchEBM's scheduler API for samplers written in Python.
``ChainSampler`` is the driver of the built-in samplers: it validates arguments, draws
initial states, precomputes schedules into per-step arrays, runs either the fused
compiled kernel (compiled energies) or the vectorised step (array-code energies) in
chunks of steps, and assembles results, diagnostics and the resumable state.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple
import sys
import time
import warnings

import numpy as np

# check_real and check_probability stay importable from here, where they used to live
from .._validation import (check_bool, check_int, check_probability,  # noqa: F401
                           check_real, is_integer)
from ..backend import array_namespace, get_backend, resolve_dtype, to_numpy
from ..diagnostics import Diagnostics
from ..energies.base import Energy
from ..random import INIT, key_from_seed
from ..schedulers import ConstantScheduler, as_scheduler
from ._loop import CpuRunner, VectorRunner
from ._loop import rows_per_block as _rows_per_block
from .state import ChainState

__all__ = ["BaseSampler", "ChainSampler", "InsufficientMemoryError", "SamplingWarning"]

#: Seconds of work per compiled chunk: progress updates and Ctrl-C happen between chunks.
CHUNK_SECONDS = 0.25
#: Steps in the first chunk, before the cost of a step has been measured.
FIRST_CHUNK = 10
#: Runs of at most this many chain-steps × dimensions go in a single chunk.
SMALL_RUN = 2_000_000
#: An energy error beyond this rejects an HMC proposal as a divergence.
DIVERGENCE_THRESHOLD = 1000.0
#: Most steps in one chunk: the per-step arrays of a chunk stay a few MB.
MAX_CHUNK = 1 << 18
#: Bytes of per-block moment sums held at once; kept steps beyond combine in pieces.
MOMENT_BYTES = 32 << 20
#: Steps whose scheduled values are checked before a run starts (later ones as it runs).
CHECKED_STEPS = 10_000_000
#: Steps of schedule evaluated at once when checking.
SCHEDULE_PIECE = 1 << 16
#: A run warns when more than this fraction of its proposals diverged.
DIVERGENCE_WARNING = 0.01
#: Runs of at least this many steps warn about chains that never accepted a proposal
#: (fewer steps can legitimately reject every proposal of a chain).
STUCK_STEPS = 50
#: Chain streams are indexed by 32 bits.
MAX_CHAINS = 2**32


class RunPlan(NamedTuple):
    """A checked run (see :meth:`ChainSampler.plan_run`)."""

    n_samples: int
    dim: int
    dtype: np.dtype
    first_step: int
    x: object
    state: object


class SamplingWarning(UserWarning):
    """A run finished, but some chains did not sample: they diverged, never accepted a
    proposal, or started where the energy is not finite."""


class NonFiniteStartError(ValueError):
    """No chain of a run starts where the energy and its gradient are finite."""


class InsufficientMemoryError(MemoryError, ValueError):
    """A run whose arrays cannot fit in memory, refused before anything is allocated."""


# ----------------------------------------------------------------------------- checks

def _is_torch_module(value):
    # By the class hierarchy's module names: torch is never imported to find out.
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module"
               for c in type(value).__mro__)


def _torch_to_array(value, name, device):
    """A torch tensor as a NumPy array (CPU) or, on a GPU, as is (it has the CUDA array
    interface); anything else unchanged."""
    if type(value).__module__.split(".")[0] != "torch":
        return value
    if getattr(value, "is_cuda", False):
        if device == "cpu":
            raise TypeError(f"{name} is a torch tensor on the GPU but the sampler runs on "
                            "device='cpu'; pass x.cpu(), or use device='cuda'")
        return value.detach()
    return value.detach().cpu().numpy()


def _check_chain_count(n, chain_offset, name):
    if chain_offset + n > MAX_CHAINS:
        start = f" from chain_offset={chain_offset}" if chain_offset else ""
        what = f"{name} gives {n} chains{start}"
        raise ValueError(f"{what}, but at most 2**32 chains have random streams")


def _memory_limit(backend):
    """``(bytes, where)``: the memory of the sampler's device, or (None, "") if unknown."""
    if backend.name == "cuda" and not getattr(backend, "simulated", True):
        try:
            with backend.context():
                return backend.xp.cuda.runtime.memGetInfo()[1], f"{backend.device}"
        except Exception:  # the allocation itself will tell
            return None, ""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine"
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None, ""


class _Plan:
    """What a run keeps: ``n_kept`` steps, with a trajectory and/or diagnostics."""

    def __init__(self, n_kept, trajectory, diagnostics):
        self.n_kept = n_kept
        self.trajectory = trajectory
        self.diagnostics = diagnostics


def _resolve_energy(energy, model, energy_function):
    given = [(n, v) for n, v in (("energy", energy), ("model", model),
                                 ("energy_function", energy_function)) if v is not None]
    if not given:
        raise TypeError("missing the energy: pass energy= (or its aliases model= / "
                        "energy_function=)")
    if len(given) > 1:
        raise TypeError(f"got both {given[0][0]!r} and {given[1][0]!r}; they are aliases, "
                        "pass one")
    name, value = given[0]
    if _is_torch_module(value):
        from ..adapters.torch import TorchEnergy

        value = TorchEnergy(value)
    if not isinstance(value, Energy):
        raise TypeError(f"{name} must be an npebm Energy (a built-in, an Energy subclass, a "
                        f"CompiledEnergy or a TorchEnergy), got {type(value).__name__}")
    return value


def check_run_arguments(n_steps, thin, burn_in, return_trajectory, return_diagnostics,
                        progress, resume):
    """The arguments every ``sample()`` shares, checked, in this order."""
    return (check_int(n_steps, "n_steps", 1), check_int(thin, "thin", 1),
            check_int(burn_in, "burn_in", 0),
            check_bool(return_trajectory, "return_trajectory"),
            check_bool(return_diagnostics, "return_diagnostics"),
            check_bool(progress, "progress"), check_bool(resume, "resume"))


def schedule_values(scheduler, name, start, n, positive=True):
    """Values of ``scheduler`` at steps ``start .. start + n - 1``, checked."""
    if type(scheduler) is ConstantScheduler:
        # The common case, without the per-step checks (a short run's set-up counts).
        values = np.full(n, scheduler.start_value)
        if np.isfinite(scheduler.start_value) and (
                scheduler.start_value > 0 if positive else scheduler.start_value >= 0):
            return values
        values = values[:1]
    else:
        values = np.asarray(scheduler.values(n, start=start), dtype=np.float64)
    bad = ~np.isfinite(values) | ((values <= 0) if positive else (values < 0))
    if bad.any():
        i = int(np.argmax(bad))
        rule = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be finite and {rule} at every step; its scheduler "
                         f"gives {values[i]} at step {start + i}")
    return values


@functools.lru_cache(maxsize=64)
def _int_key(seed):
    return key_from_seed(seed)


def _key(seed):
    """The stream key of ``seed``; integer seeds are remembered (a SeedSequence costs
    ~20 µs, which matters to runs of a few chains)."""
    if is_integer(seed):
        return _int_key(int(seed)).copy()
    return key_from_seed(seed)


# -------------------------------------------------------------------------- samplers

class BaseSampler:
    """Base class of samplers, with TorchEBM's scheduler API.

    Subclass it to write a sampler in Python: register schedulers in ``__init__`` and
    use ``self.energy.gradient(x)`` and ``self.get_scheduled_value(name)`` inside your
    own ``sample()``.

    Parameters
    ----------
    energy : Energy
        The energy E(x) of the target p(x) ∝ exp(−E(x)).  ``model=`` and
        ``energy_function=`` are accepted as aliases.
    dtype : {None, numpy.float32, numpy.float64}
        Floating type of the run; None means float64, or float32 when ``x`` is float32.
    device : str
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    seed : None, int or numpy.random.SeedSequence
        Default seed of ``sample()``.

    Examples
    --------
    >>> class Euler(BaseSampler):
    ...     def __init__(self, energy, step_size=0.01, **kw):
    ...         super().__init__(energy, **kw)
    ...         self.register_scheduler("step_size", step_size)
    ...     def sample(self, x, n_steps=10):
    ...         for _ in range(n_steps):
    ...             x = x - self.get_scheduled_value("step_size") * self.energy.gradient(x)
    ...             self.step_schedulers()
    ...         return x
    """

    def __init__(self, energy=None, *, dtype=None, device="cpu", seed=None, model=None,
                 energy_function=None):
        self.energy = _resolve_energy(energy, model, energy_function)
        self.backend = get_backend(device)
        self.device = self.backend.name
        self.dtype = None if dtype is None else resolve_dtype(dtype, name="dtype")
        if seed is not None:
            key_from_seed(seed)  # validates now, not at the first sample()
        self.seed = seed
        self.schedulers = {}

    # TorchEBM's scheduler API -----------------------------------------------------
    def register_scheduler(self, name, scheduler):
        """Register a parameter, as a scheduler or a number (a constant schedule)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        self.schedulers[name] = as_scheduler(scheduler, name)

    def get_scheduled_value(self, name):
        """The current value of the registered parameter ``name``."""
        try:
            return self.schedulers[name].get_value()
        except KeyError:
            raise KeyError(f"no scheduler registered as {name!r}; registered: "
                           f"{sorted(self.schedulers)}") from None

    def step_schedulers(self):
        """Advance every registered scheduler one step; return the new values."""
        return {name: s.step() for name, s in self.schedulers.items()}

    def reset_schedulers(self):
        """Put every registered scheduler back at step 0."""
        for s in self.schedulers.values():
            s.reset()

    def _parameter(self, name):
        """A registered parameter: its value when constant, else its scheduler."""
        sched = self.schedulers[name]
        return sched.value if type(sched) is ConstantScheduler else sched

    def sample(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement sample()")

    def __repr__(self):
        return f"{type(self).__name__}(energy={self.energy!r}, device={self.device!r})"


class ChainSampler(BaseSampler):
    """Driver shared by the built-in samplers; see :meth:`sample`.

    A sampler is its declared state, its info fields and one step (the contract the
    loops of ``npebm.samplers._loop`` run; its docstring has the step's signature):

    - ``state_fields``: :class:`~npebm.samplers.StateField` s carried per chain beyond
      x, E(x), ∇E(x) and the stream position (zeros at a fresh start unless
      ``_init_state_fields`` draws them);
    - ``info_fields``: :class:`~npebm.samplers.InfoField` s the step reports per chain,
      recorded in the diagnostics as ``(n_kept, n_samples)``;
    - ``_build_step(evaluate)``: a static method returning the compiled step;
    - ``_scratch(xp, n, dim, dtype)``: the step's per-chain scratch arrays (a tuple);
    - ``_schedules(start, n)``: dict of per-step float64 arrays (``"step_size"`` among
      them) for steps ``start .. start + n - 1``;
    - ``_step_args(sched, dtype, dim)``: the step's arguments (a tuple);
    - ``_vector_step(run, s, sched, streams)``: the same step as array operations.
    """

    state_fields = ()
    info_fields = ()
    #: Whether the vectorised step may skip evaluating a run's final state when nothing
    #: is recorded there (unadjusted Langevin, which needs no energy to step).
    _defers_last_evaluation = False

    @staticmethod
    def _scratch(xp, n, d, dtype):
        return ()

    def __init__(self, energy=None, *, dtype=None, device="cpu", seed=None, model=None,
                 energy_function=None):
        super().__init__(energy, dtype=dtype, device=device, seed=seed, model=model,
                         energy_function=energy_function)
        self._state = None

    # ------------------------------------------------------------------ the public API
    def sample(self, x=None, dim=None, n_samples=None, n_steps=100, thin=1, burn_in=0,
               return_trajectory=False, return_diagnostics=False, progress=False,
               seed=None, resume=False, chain_offset=0, adapt=None, block_rows=None):
        """Run the chains.

        Parameters
        ----------
        x : array_like, shape (n_samples, dim) or (dim,), optional
            Initial states; a 1-D ``x`` is one chain, whose results keep the chain
            axis as TorchEBM's do: ``(1, dim)``, ``(1, n_kept, dim)``.  A CPU torch
            tensor is read as a NumPy array (its dtype kept); results are NumPy (CuPy
            on a GPU).  None draws N(0, I) from each chain's own stream.  Never
            modified.
        dim : int, optional
            The dimension when ``x`` is None and the energy does not fix it.
        n_samples : int, optional
            Number of chains when ``x`` is None (default 1); must match ``x``'s rows
            when both are given.
        n_steps : int
            Steps after burn-in; every ``thin``-th is kept, ``n_kept = n_steps // thin``.
        thin : int
            Keep step i (counted from 0 after burn-in) when ``(i + 1) % thin == 0``.
        burn_in : int
            Steps run first and not recorded.  Schedules count every step, burn-in
            included: step ``burn_in + i`` of a fresh run uses ``values(...)[burn_in + i]``.
        return_trajectory : bool
            Return the kept states ``(n_samples, n_kept, dim)`` instead of the final ones.
        return_diagnostics : bool
            Also return a :class:`~npebm.diagnostics.Diagnostics` of the kept steps.
        progress : bool
            Show a progress bar (tqdm when installed, else a line on stderr).
        seed : None, int or SeedSequence
            Overrides the sampler's seed for this run.  The same seed gives the same
            result, bit for bit, whatever the number of threads.
        resume : bool
            Continue from where the previous run (or :meth:`set_state`) left the
            chains; ``x``, ``seed`` and ``chain_offset`` must then be left unset.
        chain_offset : int
            Global index of the first chain: the streams of chains ``chain_offset ..
            chain_offset + n_samples - 1`` are used, so shards of one big run can be
            sampled separately and agree with it bit for bit.
        adapt : {None, "step_size", "diag", "dense", "fisher"}
            MALA and HMC: tune the step size during burn-in by dual averaging toward
            ``target_accept``, driven by the acceptance probability averaged over all
            chains, from a starting value found by doubling or halving the step size
            until the one-step acceptance crosses 0.5.  Samplers with a mass also set
            it in Stan's windows, from the draws of all chains, re-tuning the step after
            each: "diag" / "dense" (dense: HMC) to the inverse of their (co)variance
            (regularised as Stan does); "fisher" to the diagonal
            M_jj = sqrt(var(∂_j E) / var(x_j)) from the draws and their gradients, which
            minimises the Fisher divergence to N(0, I) of the preconditioned draws
            (Seyboldt, Carlson & Carpenter 2026, nutpie's estimate): for a Gaussian
            with diagonal covariance it is 1 / var(x_j), but right already from draws
            that have not yet spread over the target.  Adaptation ends with burn-in, so
            the kept draws form a valid chain; the tuned values stay on the sampler
            (``sampler.step_size``, ``sampler.mass`` and ``get_state()``) and are
            reported in the diagnostics (``adapted_step_size``, ``adapted_mass``).
        block_rows : int, optional
            Chains per block of the CPU loop, which sums the across-chain moments per
            block (default: chosen from the number of chains).  Give a shard of a bigger
            run (``chain_offset``) the whole run's value: its diagnostics then carry the
            per-block sums (``block_sums``, ``block_counts``), which
            :func:`~npebm.diagnostics.combine_block_moments` combines across shards to
            the whole run's mean and variance, bit for bit (``npebm.distributed`` does).

        Returns
        -------
        samples : ndarray
            ``(n_samples, dim)`` final states, or ``(n_samples, n_kept, dim)``.
        diagnostics : Diagnostics
            Only with ``return_diagnostics=True``.

        Raises
        ------
        TypeError, ValueError
            For a bad argument, before any work, naming it; also when the energy is not
            finite at the starting state of every chain.
        InsufficientMemoryError
            A ``MemoryError`` (and ``ValueError``) raised before anything is allocated
            when the run's arrays cannot fit in the device's memory.

        Warns
        -----
        SamplingWarning
            Chains whose energy is not finite at the start; at the end of a run, more
            than 1 % of proposals diverged, or chains never accepted a proposal in 50
            steps or more.
        KeyboardInterrupt
            Ctrl-C stops the run between chunks of steps; the chains' state so far is
            kept, so ``sample(..., resume=True)`` continues from there.
        """
        (n_steps, thin, burn_in, return_trajectory, return_diagnostics, progress,
         resume) = check_run_arguments(n_steps, thin, burn_in, return_trajectory,
                                       return_diagnostics, progress, resume)
        chain_offset = check_int(chain_offset, "chain_offset", 0)
        if block_rows is not None:
            block_rows = check_int(block_rows, "block_rows", 1)
        adapt = self._check_adapt(adapt, burn_in)
        plan = _Plan(n_steps // thin, return_trajectory, return_diagnostics)
        if resume:
            st = self._resume_state(x, dim, n_samples, seed, chain_offset)
            self._check_memory(st.x.shape[0], st.x.shape[1], st.x.dtype, plan)
        else:
            st = self._fresh_state(x, dim, n_samples, seed, chain_offset, plan)
        if block_rows is not None:
            st.block_rows = block_rows
        n_total = burn_in + n_steps
        self._check_schedules(st.step, n_total, st.x.dtype)
        prepared = None
        if adapt is None and not resume and self._starts_in_kernel():
            # One runner both evaluates the start and runs: a short run pays for its
            # set-up once.
            prepared = self._runner(st, self._schedule_from(st.step), plan.n_kept,
                                    return_trajectory, return_diagnostics)
        if not resume:
            self._check_start(st, prepared)
        if adapt is not None:
            # Burn-in runs step by step here; what follows is an ordinary run.
            self._adapt(st, burn_in, adapt, progress)
            st = self._resume_state(None, None, None, None, 0)
            burn_in, n_total = 0, n_steps
        result = self._run(st, self._schedule_from(st.step), burn_in, n_steps, thin,
                           return_trajectory, return_diagnostics, progress,
                           prepared=prepared)
        self._warn_about_run(result[0], n_total)
        return self._package(result, return_trajectory, return_diagnostics, adapt)

    def get_state(self):
        """Where the chains stand, as a dict of NumPy arrays (``np.savez``-able).

        Keys: ``x`` (n_samples, dim), ``pos`` (n_samples,) stream positions, ``key`` (2,)
        the stream key, ``step`` the number of steps run (schedules continue from it),
        ``chain_offset``, ``sampler`` (the class name), ``step_size`` (the constant or
        adapted step size; NaN for a schedule, which the sampler itself carries), and
        one entry per declared state field (e.g. ``momentum``).
        """
        state = self.state.to_dict()
        state["sampler"] = np.str_(type(self).__name__)
        state["step_size"] = np.float64(self._constant_step_size())
        return state

    @property
    def state(self):
        """The :class:`~npebm.samplers.ChainState` of the last run (or of
        :meth:`set_state`), which ``resume=True`` continues."""
        if self._state is None:
            raise RuntimeError("nothing to save: this sampler has not run yet")
        return self._state

    def set_state(self, state):
        """Restore :meth:`get_state`'s dict (e.g. from ``np.load``), or a
        :class:`~npebm.samplers.ChainState`, for ``resume=True``."""
        if isinstance(state, ChainState):
            state = dict(state.to_dict(), sampler=np.str_(type(self).__name__))
        try:
            for name in ("x", "pos", "key", "step", "chain_offset"):
                state[name]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"state must be a dict from get_state(); {exc}") from None
        self._check_state_kind(state)
        st = ChainState.from_dict(
            state, self.state_fields,
            lambda a: self.backend.asarray(a, dtype=a.dtype, name="state['x']")
            if a.dtype.kind == "f" else self._on_device(a))
        self._check_dim(st.dim, "state['x']")
        self._state = st
        step_size = state.get("step_size") if hasattr(state, "get") else None
        if step_size is not None and np.isfinite(step_size):
            self.schedulers["step_size"] = ConstantScheduler(float(step_size))

    #: Keys of get_state() that only some samplers write (a state carrying one of them
    #: belongs to a sampler that has it).
    _STATE_KEYS = ()

    def _check_state_kind(self, state):
        """Refuse a state saved by another kind of sampler (an HMC state in MALA, say)."""
        saved = state.get("sampler") if hasattr(state, "get") else None
        if saved is not None:
            saved = str(np.asarray(saved))
        own = type(self).__name__
        foreign = [k for k in ("mass",) if k in state and k not in self._STATE_KEYS]
        if (saved is not None and saved != own) or foreign:
            origin = saved or f"a sampler with {foreign[0]!r}"
            raise ValueError(f"state was saved by {origin}, not {own}: load it into a "
                             f"{saved or 'sampler of that kind'}")

    def _constant_step_size(self):
        """The step size when it is constant (e.g. adapted), else NaN (a schedule)."""
        sched = self.schedulers.get("step_size")
        return sched.value if type(sched) is ConstantScheduler else np.nan

    def _evaluate(self, x, rows=None):
        """Energies and gradients of an array-code energy, in the run's dtype; ``rows``:
        which chains the rows of ``x`` are, when not all (a tempered energy needs to
        know, each chain having its own β)."""
        xp = array_namespace(x)
        if rows is not None and getattr(self.energy, "is_tempered", False):
            e, g = self.energy.rows_energy_and_gradient(x, rows)
        else:
            e, g = self.energy.energy_and_gradient(x)
        return xp.asarray(e, dtype=x.dtype), xp.asarray(g, dtype=x.dtype)

    def _on_device(self, a):
        """A NumPy array moved to the sampler's device (itself on the CPU)."""
        return self.backend.to_device(a)

    def plan_run(self, x=None, dim=None, n_samples=None, n_steps=100, burn_in=0, seed=None,
                 resume=False, chain_offset=0):
        """Check a run's arguments as :meth:`sample` does, before any work, without
        drawing or evaluating anything.

        Returns
        -------
        RunPlan
            ``(n_samples, dim, dtype, first_step, x, state)``: ``x`` the checked initial
            states as a NumPy array (None when they are to be drawn), ``state`` the
            :class:`ChainState` being resumed (None for a fresh run).
        """
        n_steps = check_int(n_steps, "n_steps", 1)
        burn_in = check_int(burn_in, "burn_in", 0)
        chain_offset = check_int(chain_offset, "chain_offset", 0)
        x0 = state = None
        if resume:
            state = self._resume_state(x, dim, n_samples, seed, chain_offset)
            n, d, dtype, first = state.n_chains, state.dim, state.dtype, state.step
        else:
            first = 0
            if x is not None:
                x0 = np.asarray(to_numpy(self._check_x(x, dim, n_samples)))
                n, d, dtype = x0.shape[0], x0.shape[1], x0.dtype
            else:
                if n_samples is not None:
                    n_samples = check_int(n_samples, "n_samples", 1)
                if dim is not None:
                    dim = check_int(dim, "dim", 1)
                d = dim if dim is not None else self.energy.dim
                if d is None:
                    raise ValueError(f"dim is required: x is None and "
                                     f"{type(self.energy).__name__} does not fix its "
                                     "dimension")
                self._check_dim(d, "dim")
                n = 1 if n_samples is None else n_samples
                dtype = np.dtype(self.dtype or np.float64)
            _check_chain_count(n, chain_offset, "x" if x is not None else "n_samples")
        self._check_schedules(first, burn_in + n_steps, dtype)
        return RunPlan(n, d, np.dtype(dtype), first, x0, state)

    # ------------------------------------------------------------------ setting up
    def _check_dim(self, dim, name):
        e = self.energy
        if e.dim is not None and dim != e.dim:
            raise ValueError(f"{name} has dim {dim} but {type(e).__name__} has dim {e.dim}")
        if dim < e.min_dim:
            raise ValueError(f"{type(e).__name__} needs dim >= {e.min_dim}, got {name} with "
                             f"dim {dim}")

    def _fresh_state(self, x, dim, n_samples, seed, chain_offset, plan=None):
        if n_samples is not None:
            n_samples = check_int(n_samples, "n_samples", 1)
        if dim is not None:
            dim = check_int(dim, "dim", 1)
        key = _key(self.seed if seed is None else seed)
        if x is None:
            dim = dim if dim is not None else self.energy.dim
            if dim is None:
                raise ValueError(f"dim is required: x is None and {type(self.energy).__name__} "
                                 "does not fix its dimension")
            self._check_dim(dim, "dim")
            dtype = self.dtype or np.dtype(np.float64)
            n = 1 if n_samples is None else n_samples
            _check_chain_count(n, chain_offset, "n_samples")
            if plan is not None:
                self._check_memory(n, dim, dtype, plan)
            x0 = self._draw_normal(key, n, dim, chain_offset, dtype, INIT)
        else:
            x0 = self._check_x(x, dim, n_samples)
            _check_chain_count(x0.shape[0], chain_offset, "x")
            if plan is not None:
                self._check_memory(x0.shape[0], x0.shape[1], x0.dtype, plan)
        pos = self._on_device(np.zeros(x0.shape[0], np.uint64))
        st = ChainState(x0, pos, key, 0, chain_offset)
        self._init_state_fields(st)
        return st

    def _init_state_fields(self, st):
        """Give a fresh state its declared fields: zeros, unless the sampler draws them."""
        xp = array_namespace(st.x)
        for f in self.state_fields:
            st.extra[f.name] = xp.zeros((st.n_chains,) + f.per_chain_shape(st.dim), st.dtype)

    def _draw_normal(self, key, n, dim, chain_offset, dtype, stream):
        """N(0, I) of shape (n, dim), row i from stream ``stream`` of chain
        ``chain_offset + i`` (from its start), on the sampler's device."""
        from ..random import ChainStreams

        streams = ChainStreams(seed=None, n_chains=n, chain_offset=chain_offset, stream=stream)
        streams.set_state({"key": key, "positions": np.zeros(n, np.uint64),
                           "chain_offset": chain_offset, "stream": stream})
        return self._on_device(np.ascontiguousarray(streams.normal(dim, dtype=dtype)))

    def _check_x(self, x, dim, n_samples):
        """``x`` checked and copied onto the sampler's device, as ``(n_samples, dim)``:
        a 1-D ``x`` is one chain, and results keep its chain axis (as TorchEBM's do)."""
        x = _torch_to_array(x, "x", self.device)
        on_gpu = hasattr(x, "__cuda_array_interface__")
        if on_gpu and self.device == "cpu":
            raise TypeError(f"x is a GPU array but the sampler runs on device={self.device!r};"
                            " use npebm.to_numpy(x), or device='cuda'")
        arr = x if on_gpu else np.asarray(x)
        xp = array_namespace(arr)
        if (isinstance(x, np.ndarray) or on_gpu) and arr.dtype.kind not in "f":
            raise TypeError(f"x must hold floating-point numbers, got dtype {arr.dtype}")
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"x must hold real numbers, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"x must be float32 or float64, got {arr.dtype}")
        if arr.ndim == 1:
            arr = arr[None, :]
        elif arr.ndim != 2:
            raise ValueError(f"x must have shape (n_samples, dim) or (dim,), got {arr.shape}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"x must hold at least one chain of dim >= 1, got {arr.shape}")
        if n_samples is not None and n_samples != arr.shape[0]:
            raise ValueError(f"n_samples={n_samples} disagrees with x, which has "
                             f"{arr.shape[0]} rows")
        if dim is not None and dim != arr.shape[1]:
            raise ValueError(f"dim={dim} disagrees with x, which has dim {arr.shape[1]}")
        self._check_dim(arr.shape[1], "x")
        dtype = resolve_dtype(self.dtype, like=arr)
        finite = xp.all(xp.isfinite(arr), axis=1)
        if not bool(xp.all(finite)):
            bad = int(xp.argmax(~finite))
            raise ValueError(f"x holds NaN or inf (first in row {bad})")
        # A copy on the sampler's device: the caller's x is never touched.
        with self.backend.context():
            x0 = self.backend.xp.array(arr, dtype=dtype, order="C")
        return x0

    def _resume_state(self, x, dim, n_samples, seed, chain_offset):
        if self._state is None:
            raise RuntimeError("resume=True but this sampler has not run yet (or been given "
                               "a state with set_state)")
        st = self._state
        for name, value in (("x", x), ("seed", seed)):
            if value is not None:
                raise ValueError(f"{name} must be None when resume=True: the run continues "
                                 "from the sampler's state")
        if chain_offset != 0 and chain_offset != st.chain_offset:
            raise ValueError("chain_offset cannot change when resume=True")
        if n_samples is not None and check_int(n_samples, "n_samples", 1) != st.x.shape[0]:
            raise ValueError(f"n_samples={n_samples} disagrees with the {st.x.shape[0]} chains "
                             "being resumed")
        if dim is not None and check_int(dim, "dim", 1) != st.x.shape[1]:
            raise ValueError(f"dim={dim} disagrees with the state being resumed "
                             f"(dim {st.x.shape[1]})")
        if self.dtype is not None and st.x.dtype != self.dtype:
            raise ValueError(f"the state being resumed is {st.x.dtype} but the sampler's dtype "
                             f"is {self.dtype}")
        return st.copy()

    # ------------------------------------------------------------------ adaptation
    def _check_adapt(self, adapt, burn_in):
        if adapt is None:
            return None
        if not hasattr(self, "target_accept"):
            raise ValueError(f"adapt is for MALA and HamiltonianMonteCarlo; "
                             f"{type(self).__name__} has no acceptance step to tune")
        if adapt not in ("step_size", "diag", "dense", "fisher"):
            raise ValueError(f"adapt must be None, 'step_size', 'diag', 'dense' or 'fisher', "
                             f"got {adapt!r}")
        name = type(self).__name__
        if adapt != "step_size" and not hasattr(self, "_set_mass"):
            raise ValueError(f"adapt={adapt!r} estimates a mass matrix, which {name} does not "
                             "have; use adapt='step_size'")
        if adapt == "dense" and not getattr(self, "_dense_mass", True):
            raise ValueError(f"adapt='dense' estimates a dense mass matrix, and {name}'s mass "
                             "is diagonal; use adapt='diag' or adapt='fisher'")
        if burn_in < 1:
            raise ValueError("adapt needs burn_in >= 1: adaptation happens during burn-in")
        if type(self.schedulers["step_size"]) is not ConstantScheduler:
            raise ValueError("adapt tunes step_size: give it a float (the starting value), "
                             "not a scheduler")
        return adapt

    def _one_step(self, st, step_size):
        """Run one unrecorded step from ``st`` (advanced in place); mean acceptance."""
        self.schedulers["step_size"] = ConstantScheduler(step_size)
        out = self._run(st, self._schedule_from(st.step), 0, 1, 1, False, False, False)[0]
        return float(out["alpha"].mean())

    def _trial(self, st, step_size):
        """Mean one-step acceptance at ``step_size``, leaving the chains where they were."""
        saved = self._state
        trial = st.copy()
        try:
            return self._one_step(trial, step_size)
        finally:
            self._state = saved

    def _initial_step_size(self, st, step):
        """Double or halve ``step`` until the mean one-step acceptance crosses 0.5."""
        up = self._trial(st, step) > 0.5
        for _ in range(60):  # 2**60: far beyond any usable step size
            new = step * (2.0 if up else 0.5)
            if (self._trial(st, new) > 0.5) != up:
                return step if up else new
            step = new
        return step

    def _adapt(self, st, burn_in, adapt, progress=False):
        """Burn-in with adaptation: dual averaging of the step size every step; with a
        mass, Stan's windows pooling the draws of all chains (Welford), the mass set at
        each window's end and the step size searched and averaged afresh.

        It is an ordinary run of ``burn_in`` unrecorded steps whose between-step hook
        updates the policy; each step runs with the step size of the moment.
        """
        policy = _Adaptation(self, st, burn_in, adapt)
        self._run(st, policy.schedule, burn_in, 0, 1, False, False, progress,
                  between=policy)
        self.schedulers["step_size"] = ConstantScheduler(policy.averaging.final_step_size)

    # ------------------------------------------------------------------ running
    #: Whether ``_schedules`` depends on the step only through the schedulers' values, so
    #: that constant schedulers give the same arrays at every step (ChEES's Halton jitter
    #: does not); False for samplers that do not say.
    _schedules_follow_schedulers = False

    #: Whether the CPU loop runs a built-in energy's chains a block at a time, the step's
    #: rows in lockstep, rather than chain by chain (where a chain stays in registers):
    #: HMC's leapfrog loops over a block's rows vectorise (2-D: 1.5x).  The same numbers
    #: either way.
    _rows_in_lockstep = False

    def _constant_schedules(self):
        """Whether every step's schedule arrays hold the same values."""
        return self._schedules_follow_schedulers and all(
            type(s) is ConstantScheduler for s in self.schedulers.values())

    def _schedule_arrays(self, start, n):
        """``_schedules(start, n)``; with constant schedules, one step's values filled
        out to n steps (the sampler's arithmetic once, not n times: a run of one chain
        over 10 000 steps spent a tenth of its time computing its schedules)."""
        if n > 1 and self._constant_schedules():
            return {k: np.full(n, v[0], v.dtype) for k, v in self._schedules(start, 1).items()}
        return self._schedules(start, n)

    def _schedule_from(self, start):
        """``schedule(s0, s1)``: the schedules' arrays for steps ``s0 .. s1 - 1`` of a run
        whose step 0 is the sampler's step ``start``, computed a chunk at a time so that
        memory does not grow with ``n_steps``."""
        checked = self.__dict__.pop("_checked_schedule", None)

        def schedule(s0, s1):
            # The first piece was computed when it was checked: a short run (one piece)
            # then evaluates its schedules once; constant ones, one step's, once a run.
            if checked is not None:
                steps, arrays, schedulers = checked
                now = tuple(self.schedulers.values())
                if steps is None and len(now) == len(schedulers) and all(
                        a is b for a, b in zip(schedulers, now)):
                    n = s1 - s0
                    return arrays if n == 1 else {k: np.full(n, v[0], v.dtype)
                                                  for k, v in arrays.items()}
                if steps == (start + s0, s1 - s0):
                    return arrays
            return self._schedule_arrays(start + s0, s1 - s0)

        return schedule

    def _check_schedules(self, start, n, dtype):
        """Every scheduled value of steps ``start .. start + n - 1`` valid in ``dtype``,
        checked before any work; long runs are checked a piece at a time, and beyond
        :data:`CHECKED_STEPS` steps as they run."""
        limit = np.finfo(dtype).max
        # A run that failed after its check must not hand its arrays to the next one.
        self.__dict__.pop("_checked_schedule", None)
        constant = self._constant_schedules()
        for a in range(start, start + min(n, CHECKED_STEPS), SCHEDULE_PIECE):
            b = min(start + min(n, CHECKED_STEPS), a + SCHEDULE_PIECE)
            if constant:  # one step stands for all
                arrays = self._schedules(a, 1)
                # (adaptation replaces the step size's scheduler: its values are new)
                self._checked_schedule = (None, arrays, tuple(self.schedulers.values()))
            else:
                arrays = self._schedules(a, b - a)
                if a == start:
                    self._checked_schedule = ((a, b - a), arrays, None)
            for name, values in arrays.items():
                big = np.abs(values) > limit
                if big.any():
                    i = int(np.argmax(big))
                    raise ValueError(
                        f"{name}={values[i]:g} at step {a + i} overflows {np.dtype(dtype)} "
                        f"(largest {limit:.3g}); use a smaller value or dtype=np.float64")
            if constant:
                break

    def _evaluate_start(self, st, prepared=None):
        """Energies and gradients at the chains' states on the sampler's device, in their
        dtype; ``prepared`` is the run's ``(runner, out)`` when it is already built."""
        if self.energy.is_compiled:
            if self._starts_in_kernel():
                # A built-in: the run's own kernel evaluates the start (no step), which
                # costs a call of an already compiled kernel, not a cfunc's typing.
                runner = (prepared or self._runner(
                    st, lambda s0, s1: self._schedule_arrays(st.step, 1), 0, False, False))[0]
                return runner.evaluate_start()
            return self.backend.evaluate(self.energy, st.x)
        return self._evaluate(st.x)

    def _starts_in_kernel(self):
        """Whether the run's own CPU kernel evaluates the start (a built-in energy)."""
        return (self.backend.name == "cpu" and self.energy.is_compiled
                and self.energy._cacheable)

    def _check_start(self, st, prepared=None):
        """Evaluate the energy at the starting states (the run reuses it): refuse a start
        where no chain has a finite energy and gradient, warn naming the chains that do
        not."""
        with self.backend.context():
            e, g = self._evaluate_start(st, prepared)
            xp = array_namespace(e)
            finite = to_numpy(xp.isfinite(e) & xp.all(xp.isfinite(g), axis=1))
        if prepared is None:  # else the prepared runner holds them
            st.eg = (e, g)
        bad = np.flatnonzero(~finite)
        if len(bad) == 0:
            return
        n = len(finite)
        what = f"{type(self.energy).__name__}'s energy or gradient"
        # A shard of a distributed run sees only its chains: it warns, never refuses.
        if len(bad) == n and st.block_rows is None:
            raise NonFiniteStartError(
                f"x: {what} is NaN or inf at the starting state of every chain "
                f"({n}, first chain 0); start where the energy is finite")
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        warnings.warn(f"{what} is NaN or inf at the start of {len(bad)} of {n} chains "
                      f"({shown}); each step that cannot leave such a state counts as a "
                      "divergence", SamplingWarning, stacklevel=3)

    def _warn_about_run(self, out, n_total):
        """Warn once, with the numbers, when many proposals diverged or some chains never
        accepted one."""
        div = to_numpy(out["divergences"])
        n = len(div)
        n_tried = n * n_total
        advice = ("a smaller step_size, adapt='step_size' with a burn_in, or a different "
                  "start" if hasattr(self, "target_accept") else
                  "a smaller step_size or a different start")
        if div.sum() > DIVERGENCE_WARNING * n_tried:
            chains = int(np.count_nonzero(div))
            warnings.warn(f"{div.sum() / n_tried:.1%} of proposals diverged ({int(div.sum())}"
                          f" of {n_tried}, in {chains} of {n} chains); try {advice}",
                          SamplingWarning, stacklevel=3)
        if n_total >= STUCK_STEPS:
            stuck = np.flatnonzero(to_numpy(out["n_accepted"]) == 0)
            if len(stuck):
                shown = ", ".join(map(str, stuck[:5])) + (", ..." if len(stuck) > 5 else "")
                warnings.warn(f"{len(stuck)} of {n} chains never accepted a proposal in "
                              f"{n_total} steps (chains {shown}); they are stuck where they "
                              f"started: try {advice}", SamplingWarning, stacklevel=3)

    def _check_memory(self, n, d, dtype, plan):
        """Refuse, before allocating anything, a run whose arrays cannot fit in memory."""
        item = np.dtype(dtype).itemsize
        n_kept = plan.n_kept
        # (bytes, what they hold, what to change); the state counts the chains, their
        # gradients and energies, proposals and the run's working copies.
        parts = [
            (12 * n * d * item + 64 * n, "the chains' states", "use fewer chains (n_samples=)"),
            (n * n_kept * d * item if plan.trajectory else 0, "the trajectory",
             "keep fewer steps (a larger thin=, fewer n_steps=) or chains (n_samples=), or "
             "leave out return_trajectory=True"),
            (n * n_kept * (item + 9) + n_kept * d * 16 if plan.diagnostics else 0,
             "the diagnostics", "keep fewer steps (a larger thin=, fewer n_steps=) or "
             "chains (n_samples=), or leave out return_diagnostics=True"),
        ]
        need = sum(p[0] for p in parts)
        limit, where = _memory_limit(self.backend)
        if limit is None or need <= limit:
            return
        size, what, advice = max(parts, key=lambda p: p[0])
        raise InsufficientMemoryError(
            f"this run needs about {need / 2**30:.1f} GiB ({what}: {size / 2**30:.1f} GiB) "
            f"but {where} has {limit / 2**30:.1f} GiB; {advice}")

    def _runner(self, st, schedule, n_kept, want_traj, want_diag):
        """The runner of a run from ``st`` keeping ``n_kept`` steps, and the output arrays
        it fills (on the sampler's device).  ``schedule(s0, s1)`` gives the schedules'
        arrays of steps ``s0 .. s1 - 1``."""
        n, d = st.x.shape
        dtype = st.x.dtype
        fused = self.energy.is_compiled
        cuda = self.backend.name == "cuda"
        # The CUDA kernels have no blocks: their moments come from the kept states.
        # A shard of a bigger run uses the whole run's blocks (st.block_rows), so its
        # per-block moments are the whole run's and combine to the same bits.
        rows = (st.block_rows or _rows_per_block(n)) if fused and not cuda else n
        n_blocks = -(-n // rows)
        with self.backend.context():
            xp = self.backend.xp
            out = {
                "traj": xp.empty((n, n_kept, d) if want_traj else (0, 0, 0), dtype),
                "energy": xp.empty((n, n_kept) if want_diag else (0, 0), dtype),
                "grad_norm": xp.empty((n, n_kept) if want_diag else (0, 0), np.float64),
                "accepted": xp.zeros((n, n_kept) if want_diag else (0, 0), np.uint8),
                "divergences": xp.zeros(n, np.int64),
                "n_accepted": xp.zeros(n, np.int64),
                "alpha": xp.zeros(n, np.float64),  # acceptance probability of the last step
            }
            n_info = len(self.info_fields)
            out["info"] = xp.zeros((n, n_kept, n_info) if want_diag else (0, 0, n_info),
                                   np.float64)
            out["mean"] = xp.zeros((n_kept, d) if want_diag else (0, d), np.float64)
            out["var"] = xp.zeros((n_kept, d) if want_diag else (0, d), np.float64)
            if not (fused and cuda):
                # Per-block shifted sums of a bounded number of kept steps (slots), each
                # combined into mean and var once all blocks have passed it; a shard of a
                # distributed run keeps all of them for the gather to combine.
                shard = st.block_rows is not None
                slots = _pow2_at_least(n_kept)
                if not shard:
                    slots = min(slots, _pow2_at_most(MOMENT_BYTES // (n_blocks * 3 * d * 8)))
                out["moments"] = xp.zeros(
                    (n_blocks, slots, 3, d) if want_diag else (0, 0, 3, d), np.float64)
        out["step_size"] = np.empty(n_kept if want_diag else 0)
        out["rows"] = rows
        if fused and cuda:
            from ._cuda import CudaRunner

            runner = CudaRunner(self, st, schedule, out, self.backend)
        elif fused:
            runner = CpuRunner(self, st, schedule, out, rows)
        else:
            runner = VectorRunner(self, st, schedule, out)
        return runner, out

    def _run(self, st, schedule, burn_in, n_steps, thin, want_traj, want_diag, progress,
             between=None, prepared=None):
        """Run ``burn_in + n_steps`` steps from ``st`` in chunks (progress and Ctrl-C
        between them); ``(out, n_kept)``.

        ``between(i, out, runner)``, when given, is the step-major hook: it runs after
        step ``i`` of every chain and before step ``i + 1`` of any, and may change what
        the next steps use (adaptation changes the step size; tempering swaps states,
        through ``runner.arrays()`` and ``runner.set_evaluated()``).
        ``prepared`` is a ``(runner, out)`` already built for this run from ``st``.
        """
        n, d = st.x.shape
        n_total = burn_in + n_steps
        n_kept = n_steps // thin
        runner, out = prepared or self._runner(st, schedule, n_kept, want_traj, want_diag)
        runner.last = n_total - 1
        bar = _Progress(n * n_total, progress)
        done = 0
        # Small runs go in one chunk (a chunk costs a kernel call and a thread hand-off);
        # others start with a short one to time a step, then take CHUNK_SECONDS each.
        small = n * d * n_total <= SMALL_RUN
        chunk = min(n_total, MAX_CHUNK) if small else min(n_total, FIRST_CHUNK)
        if between is not None:
            chunk = 1
        try:
            while done < n_total:
                start = time.perf_counter()
                runner(done, done + chunk, burn_in, thin)
                elapsed = time.perf_counter() - start
                done = runner.done
                bar.update(n * done)
                if between is not None:
                    self._state = st  # the hook may run trial steps from st
                    between(done - 1, out, runner)
                    continue
                per_step = max(elapsed / max(chunk, 1), 1e-9)
                chunk = int(min(n_total - done, MAX_CHUNK,
                                max(FIRST_CHUNK, CHUNK_SECONDS / per_step)))
        finally:
            # Reached on Ctrl-C too: the chains' state after the last finished chunk.
            bar.close()
            runner.store(st)
            st.step += runner.done
            self._state = st
        return out, n_kept

    def _package(self, result, want_traj, want_diag, adapt=None):
        out, n_kept = result
        st = self._state
        samples = out["traj"] if want_traj else st.x.copy()
        if not want_diag:
            return samples
        xp = array_namespace(st.x)
        mean, var = out["mean"], out["var"]
        accepted = out["accepted"].T.astype(bool)
        diag = Diagnostics(
            energy=xp.ascontiguousarray(out["energy"].T),
            acceptance_rate=accepted.mean(axis=1) if n_kept else xp.zeros(0),
            mean=mean.astype(st.x.dtype),
            var=var.astype(st.x.dtype),
            grad_norm=xp.ascontiguousarray(out["grad_norm"].T),
            step_size=self._on_device(out["step_size"]),
            divergences=out["divergences"],
            accepted=accepted,
            n_accepted=out["n_accepted"],
        )
        extra = {}
        if want_traj:
            extra["trajectory"] = out["traj"]  # the same array, not a copy
        if st.block_rows is not None and "moments" in out:
            # A shard: its per-block sums, for combining with the other shards'.
            n = st.x.shape[0]
            extra["block_sums"] = out["moments"][:, :n_kept]
            extra["block_counts"] = np.diff(np.append(np.arange(0, n, out["rows"]), n))
        if adapt is not None:
            extra["adapted_step_size"] = np.float64(self._constant_step_size())
            if adapt != "step_size":
                extra["adapted_mass"] = self._on_device(np.array(self.mass))
        for i, f in enumerate(self.info_fields):
            extra[f.name] = xp.ascontiguousarray(out["info"][:, :, i].T).astype(f.dtype)
        if extra:
            diag = Diagnostics(**diag, **extra)
        return samples, diag


class _Adaptation:
    """The adaptation policy as a step-major hook: dual averaging of the step size after
    every step, from the acceptance probability averaged over all chains; with a mass,
    Stan's windows (Welford over the draws of all chains, and for "fisher" over their
    gradients too), the mass set at each window's end and the step size searched and
    averaged afresh."""

    def __init__(self, sampler, st, burn_in, adapt):
        from .adaptation import DualAveraging, slow_windows

        self.sampler, self.st, self.adapt = sampler, st, adapt
        step = sampler._initial_step_size(
            st, float(sampler.schedulers["step_size"].get_value()))
        self.averaging = DualAveraging(step, sampler.target_accept)
        # "fisher" uses Stan's windows too.  nutpie's schedule (a mass from the starting
        # gradients, then estimates that restart every 10 steps over the first 30 % of
        # burn-in, windows growing from 80 steps by 1.5, the mass updated after every
        # step) was measured against them with HMC on a d = 50 Gaussian with scales 1e-2
        # to 1e2 (centred, and 5 sd off the start), eight schools and a logistic
        # regression, 4 and 64 chains, burn-in 100 to 1000: ESS per gradient within
        # the seed-to-seed spread of Stan's windows, with or without a step-size search
        # at each of its windows (without one, up to 2.4x lower); the starting-gradient
        # mass gained nothing measurable.  What matters is the estimate: with burn_in
        # <= 150 on that Gaussian, "diag" leaves the large scales unexplored (ESS per
        # gradient 70x lower) and "fisher" does not, on either schedule.
        windows = slow_windows(burn_in) if adapt != "step_size" else []
        self.ends = {end for _, end in windows}
        self.starts = {start for start, _ in windows}
        self.estimate = self._estimate(0)

    def _estimate(self, i):
        from .adaptation import FisherDiagonal, Welford

        if i not in self.starts:
            return None
        d = self.st.x.shape[1]
        return FisherDiagonal(d) if self.adapt == "fisher" else \
            Welford(d, dense=self.adapt == "dense")

    def schedule(self, s0, s1):
        """Every step runs with the step size of the moment."""
        return self.sampler._step_arrays(np.array([self.averaging.step_size]))

    def __call__(self, i, out, runner=None):
        from .adaptation import DualAveraging, dense_precision

        sampler, st = self.sampler, self.st
        self.averaging.update(float(out["alpha"].mean()))
        if self.estimate is not None:
            if self.adapt == "fisher":
                self.estimate.update(st.x, self._gradients(runner))
            else:
                self.estimate.update(st.x)
        if i + 1 in self.ends:
            if self.adapt == "fisher":
                sampler._set_mass(self.estimate.mass(self._diagonal_mass()))
            else:
                cov = self.estimate.regularized()
                sampler._set_mass(dense_precision(cov) if self.adapt == "dense"
                                  else 1.0 / cov)
            self.estimate = None
            step = sampler._initial_step_size(st, self.averaging.final_step_size)
            self.averaging = DualAveraging(step, sampler.target_accept)
        if self.estimate is None:
            self.estimate = self._estimate(i + 1)

    def _gradients(self, runner):
        """∇E at the chains' states (n, dim), as the run holds them."""
        g = None
        if hasattr(runner, "arrays"):
            g = runner.arrays()[2]
        elif hasattr(runner, "chains"):  # the CUDA runner: the loop's (X, G, E, ...)
            g = runner.chains[1]
        if g is None:  # not held (a deferred evaluation): evaluated here
            with self.sampler.backend.context():
                g = self.sampler._evaluate_start(self.st.copy())[1]
        return g

    def _diagonal_mass(self):
        """The sampler's mass as a (dim,) float64 diagonal (kept where the estimate is
        undefined)."""
        d = self.st.x.shape[1]
        m = self.sampler.mass
        if m is None:
            return np.ones(d)
        m = np.asarray(m, np.float64)
        return np.diag(m).copy() if m.ndim == 2 else np.broadcast_to(m, (d,)).copy()


def _pow2_at_least(n):
    """The smallest power of two >= n (0 for 0)."""
    return 0 if n <= 0 else 1 << (int(n) - 1).bit_length()


def _pow2_at_most(n):
    """The largest power of two <= n (at least 1)."""
    return 1 << max(0, int(n).bit_length() - 1)


class _Progress:
    """A progress bar between chunks: tqdm when installed, else a line on stderr."""

    def __init__(self, total, enabled):
        self.total = total
        self.bar = None
        self.enabled = enabled
        self.start = time.perf_counter()
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, unit="chain-step", unit_scale=True, leave=False)

    def update(self, n):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n - self.bar.n)
            return
        rate = n / max(time.perf_counter() - self.start, 1e-9)
        sys.stderr.write(f"\rnpebm: {100 * n / self.total:5.1f}% "
                         f"({rate:.3g} chain-steps/s)")
        sys.stderr.flush()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()
