"""Samplers over arrays of parallel chains: Langevin dynamics, MALA, HMC and underdamped
Langevin.

Every sampler runs its chains × steps loop as one compiled kernel for compiled energies
(built-ins and :class:`~npebm.energies.CompiledEnergy`) and as array operations over
chains for any other :class:`~npebm.energies.Energy`.  Importing this module does not
load Numba; the first compiled run does.
"""
from .base import BaseSampler, ChainSampler, InsufficientMemoryError, SamplingWarning
from .hmc import HamiltonianMonteCarlo
from .langevin import LangevinDynamics
from .mala import MALA
from .state import ChainState, InfoField, StateField
from .underdamped import UnderdampedLangevin

__all__ = ["BaseSampler", "ChainSampler", "LangevinDynamics", "MALA", "HamiltonianMonteCarlo",
           "UnderdampedLangevin",
           "InsufficientMemoryError", "SamplingWarning", "ChainState", "StateField",
           "InfoField"]
