"""Contrastive divergence: CD-k and persistent CD with re-initialised chains.

The maximum-likelihood gradient of an EBM p_θ(x) ∝ exp(−E_θ(x)) is
E_data[∂E/∂θ] − E_model[∂E/∂θ]; CD estimates the second expectation from "negative"
samples drawn by a few MCMC steps.  ``ContrastiveDivergence`` gives it as a loss
(mean E(data) − mean E(negatives)) for torch energies and as the gradient itself for
NumPy ``ParametricEnergy`` energies, so an EBM trains with or without torch.

References
----------
G. E. Hinton (2002), "Training products of experts by minimizing contrastive
divergence", Neural Computation 14(8).  T. Tieleman (2008), "Training restricted
Boltzmann machines using approximations to the likelihood gradient", ICML.  Y. Du,
I. Mordatch (2019), "Implicit generation and modeling with energy-based models", NeurIPS.
"""
from __future__ import annotations


import numpy as np

from .._validation import check_bool, check_choice, check_int, check_real, is_integer
from ..backend import to_numpy
from ..energies.base import Energy

__all__ = ["ContrastiveDivergence"]


def _is_tensor(x):
    return type(x).__module__.split(".")[0] == "torch"


def _is_torch_energy(energy):
    return type(energy).__module__ == "npebm.adapters.torch"


class ContrastiveDivergence:
    """Contrastive divergence (CD-k, or persistent CD) for an energy and a sampler.

    Parameters
    ----------
    energy : Energy
        The energy being trained: a ``TorchEnergy`` (``cd(batch)`` then returns a torch
        loss to back-propagate) or a ``ParametricEnergy`` (``cd.gradient(batch)``).
    sampler : ChainSampler or ParallelTempering
        LangevinDynamics, MALA, HamiltonianMonteCarlo, UnderdampedLangevin, or
        ParallelTempering around one of them; draws the negatives and must sample
        ``energy``.  With ParallelTempering (PT-CD) each chain of a batch is the β = 1
        end of its own ladder, so negatives cross between modes that a single chain
        would not leave.
    k_steps : int
        MCMC steps per call.
    persistent : bool
        False: CD-k, each call starts the chains at the batch.  True: persistent CD, the
        chains start from a replay buffer of earlier negatives and are written back.
    buffer_size : int
        Chains in the replay buffer (persistent CD).
    reinit_prob : float in [0, 1]
        Persistent CD: each chain drawn from the buffer restarts from a fresh draw
        (see ``init``) with this probability, so that the buffer does not collapse onto
        the modes it has found (Du & Mordatch 2019).
    init : {"noise", "data"}
        Fresh chains of the buffer (when it is filled and when a chain re-initialises):
        ``"noise"`` draws N(0, init_scale² I), ``"data"`` a random row of the batch.
    energy_reg_weight : float >= 0
        Adds ``α (mean E(data)² + mean E(negatives)²)`` to the loss, which keeps the
        energies near zero (Du & Mordatch 2019).
    init_scale : float > 0
        Standard deviation of ``"noise"`` chains.
    seed : None, int or SeedSequence
        Seeds the buffer draws, re-initialisations and each call's sampler seed, so a
        training run with fixed seeds repeats exactly.

    Attributes
    ----------
    buffer : ndarray or None
        The replay buffer ``(buffer_size, dim)`` (persistent CD, after the first call).
    last_negatives, last_loss
        The negatives and the loss (a float, or the torch scalar) of the last call.

    Examples
    --------
    NumPy only:

    >>> from npebm.energies import MLPEnergy
    >>> from npebm.samplers import LangevinDynamics
    >>> energy = MLPEnergy(dim=2, hidden=32, confine=0.05, seed=0)
    >>> cd = ContrastiveDivergence(energy, LangevinDynamics(energy, step_size=0.01),
    ...                            k_steps=20, persistent=True, seed=0)
    >>> batch = np.random.default_rng(0).normal(size=(128, 2))
    >>> for name, g in cd.gradient(batch).items():
    ...     energy.params[name] -= 0.01 * g
    """

    def __init__(self, energy, sampler, k_steps=10, persistent=False, buffer_size=10000,
                 reinit_prob=0.05, init="noise", energy_reg_weight=0.0, *, init_scale=1.0,
                 seed=None):
        from ..samplers.base import ChainSampler, _is_torch_module

        if _is_torch_module(energy):
            # The module itself, as TorchEBM takes it: the energy the sampler wrapped it
            # in when that is the sampler's, else a new wrapper.
            if getattr(getattr(sampler, "energy", None), "module", None) is energy:
                energy = sampler.energy
            else:
                from ..adapters.torch import TorchEnergy

                energy = TorchEnergy(energy)
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an npebm Energy, got {type(energy).__name__}")
        from ..samplers.tempering import ParallelTempering

        if not isinstance(sampler, (ChainSampler, ParallelTempering)):
            raise TypeError("sampler must be an npebm sampler (LangevinDynamics, MALA, "
                            "HamiltonianMonteCarlo, UnderdampedLangevin or "
                            f"ParallelTempering), got {type(sampler).__name__}")
        if sampler.energy is not energy:
            raise ValueError("sampler samples a different energy than the one being trained: "
                             "build it with the same energy object")
        self.energy = energy
        self.sampler = sampler
        self.k_steps = check_int(k_steps, "k_steps", 1)
        self.persistent = check_bool(persistent, "persistent")
        self.buffer_size = check_int(buffer_size, "buffer_size", 1)
        self.reinit_prob = check_real(reinit_prob, "reinit_prob", nonnegative=True)
        if self.reinit_prob > 1:
            raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob}")
        self.init = check_choice(init, "init", ("noise", "data"))
        self.energy_reg_weight = check_real(energy_reg_weight, "energy_reg_weight",
                                            nonnegative=True)
        self.init_scale = check_real(init_scale, "init_scale", positive=True)
        if is_integer(seed) and seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self._rng = np.random.default_rng(seed)
        self.buffer = None
        self.last_negatives = None
        self.last_loss = None

    # ------------------------------------------------------------------ negatives
    def _check_batch(self, batch):
        home = np.asarray(to_numpy(batch))
        if home.ndim != 2 or home.shape[0] < 1:
            raise ValueError(f"batch must have shape (n, dim) with n >= 1, got {home.shape}")
        if home.dtype.kind not in "fiu":
            raise TypeError(f"batch must hold real numbers, got dtype {home.dtype}")
        if not np.all(np.isfinite(home)):
            raise ValueError("batch holds NaN or inf")
        if self.buffer is not None and home.shape[1] != self.buffer.shape[1]:
            raise ValueError(f"batch has dim {home.shape[1]} but the buffer holds dim "
                             f"{self.buffer.shape[1]}")
        dtype = home.dtype if home.dtype.kind == "f" else np.dtype(np.float64)
        return np.ascontiguousarray(home, dtype=dtype)

    def _fresh(self, n, data):
        """``n`` new chains: noise, or random rows of ``data``."""
        if self.init == "noise":
            return (self.init_scale * self._rng.standard_normal((n, data.shape[1]))).astype(
                data.dtype)
        return data[self._rng.integers(0, data.shape[0], size=n)]

    def negatives(self, batch):
        """Run the chains for one step of training; the negatives ``(n, dim)``.

        CD-k starts them at ``batch``; persistent CD draws them from the buffer (each
        re-initialised with probability ``reinit_prob``) and writes them back.
        """
        data = self._check_batch(batch)
        n = data.shape[0]
        if not self.persistent:
            start = data
        else:
            if self.buffer is None:
                self.buffer = self._fresh(self.buffer_size, data)
            idx = self._rng.choice(self.buffer_size, size=n, replace=n > self.buffer_size)
            start = self.buffer[idx].copy()
            restart = self._rng.random(n) < self.reinit_prob
            if restart.any():
                start[restart] = self._fresh(int(restart.sum()), data)
        seed = int(self._rng.integers(2**63))
        from ..samplers.base import NonFiniteStartError

        try:
            neg = np.asarray(to_numpy(self.sampler.sample(x=start, n_steps=self.k_steps,
                                                          seed=seed)))
        except NonFiniteStartError as exc:
            raise FloatingPointError(
                f"contrastive divergence loss is inf or nan: the energies diverged ({exc}); "
                "lower the learning rate or the sampler's step size, or raise "
                "energy_reg_weight") from None
        if self.persistent:
            self.buffer[idx] = neg
        return data, neg

    # ------------------------------------------------------------------ loss / gradient
    def __call__(self, batch):
        """One step of CD: ``(loss, negatives)``.

        Parameters
        ----------
        batch : ndarray or torch.Tensor, shape (n, dim)
            Data.

        Returns
        -------
        loss : torch scalar (TorchEnergy) or float
            ``mean E(batch) − mean E(negatives)`` (+ the energy regulariser); with a
            ``TorchEnergy`` it back-propagates into the module's parameters.
        negatives : same type as ``batch``, shape (n, dim)

        Raises
        ------
        FloatingPointError
            When the loss is not finite (the model's energies blew up), with the mean
            energies in the message; never replaced by a constant.
        """
        data, neg = self.negatives(batch)
        if _is_torch_energy(self.energy):
            import torch

            pos = batch if _is_tensor(batch) else data
            e_pos = self.energy.energy(self.energy._to_torch(pos))
            e_neg = self.energy.energy(self.energy._to_torch(neg))
            loss = e_pos.mean() - e_neg.mean()
            if self.energy_reg_weight:
                loss = loss + self.energy_reg_weight * ((e_pos ** 2).mean()
                                                        + (e_neg ** 2).mean())
            self._check_finite(float(loss.detach()), e_pos.detach(), e_neg.detach())
            negatives = (torch.as_tensor(neg, device=batch.device).to(batch.dtype)
                         if _is_tensor(batch) else neg)
        else:
            e_pos = np.asarray(to_numpy(self.energy.energy(data)), np.float64)
            e_neg = np.asarray(to_numpy(self.energy.energy(neg)), np.float64)
            loss = self._loss(e_pos, e_neg)
            self._check_finite(loss, e_pos, e_neg)
            negatives = neg
        self.last_loss, self.last_negatives = loss, negatives
        return loss, negatives

    def gradient(self, batch):
        """One step of CD for a NumPy :class:`~npebm.energies.ParametricEnergy`: the
        gradient of the loss with respect to each parameter.

        Returns
        -------
        dict of str -> ndarray
            ``mean ∂E/∂θ over batch − mean ∂E/∂θ over negatives`` (+ the regulariser's
            ``2α mean E ∂E/∂θ`` over both), shaped like ``energy.params``; subtract a
            multiple of it from the parameters (or hand it to your optimiser).  The loss
            and the negatives are kept in ``last_loss`` / ``last_negatives``.
        """
        from ..energies.parametric import ParametricEnergy

        if not isinstance(self.energy, ParametricEnergy):
            raise TypeError(f"gradient() needs a ParametricEnergy (params and "
                            f"parameter_gradient), got {type(self.energy).__name__}; a "
                            "TorchEnergy trains by loss.backward() on cd(batch)[0]")
        data, neg = self.negatives(batch)
        e_pos = np.asarray(to_numpy(self.energy.energy(data)), np.float64)
        e_neg = np.asarray(to_numpy(self.energy.energy(neg)), np.float64)
        loss = self._loss(e_pos, e_neg)
        self._check_finite(loss, e_pos, e_neg)
        alpha = self.energy_reg_weight
        # d/dθ [mean E+ − mean E− + α(mean E+² + mean E−²)] as weighted mean gradients.
        pos = self.energy.mean_parameter_gradient(data, 1.0 + 2 * alpha * e_pos)
        negs = self.energy.mean_parameter_gradient(neg, 2 * alpha * e_neg - 1.0)
        grads = {}
        for name, g in pos.items():
            total = np.asarray(to_numpy(g), np.float64) + np.asarray(to_numpy(negs[name]))
            if not np.all(np.isfinite(total)):
                raise FloatingPointError(f"the gradient for parameter {name!r} is not finite")
            grads[name] = total
        self.last_loss, self.last_negatives = loss, neg
        return grads

    def _loss(self, e_pos, e_neg):
        """The loss as a float from float64 energies (inf/NaN left for the check)."""
        with np.errstate(invalid="ignore", over="ignore"):
            loss = float(e_pos.mean() - e_neg.mean())
            if self.energy_reg_weight:
                loss += self.energy_reg_weight * float((e_pos ** 2).mean()
                                                       + (e_neg ** 2).mean())
        return loss

    @staticmethod
    def _check_finite(loss, e_pos, e_neg):
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"contrastive divergence loss is {loss} (mean energy of the data "
                f"{float(e_pos.mean())}, of the negatives {float(e_neg.mean())}): the "
                "energies diverged; lower the learning rate or the sampler's step size, "
                "or raise energy_reg_weight")

    def reset(self):
        """Forget the replay buffer (it refills on the next call)."""
        self.buffer = None

    def __repr__(self):
        kind = "persistent CD" if self.persistent else f"CD-{self.k_steps}"
        return (f"ContrastiveDivergence({kind}, k_steps={self.k_steps}, "
                f"sampler={type(self.sampler).__name__})")
