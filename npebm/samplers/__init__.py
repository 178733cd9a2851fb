"""Samplers over arrays of parallel chains: Langevin dynamics, MALA, HMC, NUTS,
ChEES-HMC, underdamped Langevin, and parallel tempering around any of them.

Every sampler runs its chains × steps loop as one compiled kernel for compiled energies
(built-ins and :class:`~npebm.energies.CompiledEnergy`) and as array operations over
chains for any other :class:`~npebm.energies.Energy`.  Importing this module does not
load Numba; the first compiled run does.
"""
from .annealing import AISResult, AnnealedImportanceSampling, log_likelihood
from .base import BaseSampler, ChainSampler, InsufficientMemoryError, SamplingWarning
from .chees import ChEESHMC
from .hmc import HamiltonianMonteCarlo
from .langevin import LangevinDynamics
from .mala import MALA
from .nuts import NUTS
from .state import ChainState, InfoField, StateField
from .tempering import ParallelTempering
from .underdamped import UnderdampedLangevin

__all__ = ["BaseSampler", "ChainSampler", "LangevinDynamics", "MALA", "HamiltonianMonteCarlo",
           "NUTS", "ChEESHMC", "UnderdampedLangevin", "ParallelTempering",
           "AnnealedImportanceSampling", "AISResult", "log_likelihood",
           "InsufficientMemoryError", "SamplingWarning", "ChainState", "StateField",
           "InfoField"]
