"""Samplers over arrays of parallel chains: Langevin dynamics, MALA and HMC.

Every sampler runs its chains × steps loop as one compiled kernel for compiled energies
(built-ins and :class:`~npebm.energies.CompiledEnergy`) and as array operations over
chains for any other :class:`~npebm.energies.Energy`.  Importing this module does not
load Numba; the first compiled run does.
"""
from .base import BaseSampler, InsufficientMemoryError, SamplingWarning
from .hmc import HamiltonianMonteCarlo
from .langevin import LangevinDynamics
from .mala import MALA

__all__ = ["BaseSampler", "LangevinDynamics", "MALA", "HamiltonianMonteCarlo",
           "InsufficientMemoryError", "SamplingWarning"]
