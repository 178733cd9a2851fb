"""Energies with explicit gradients: the base classes, the built-ins, and trainable
NumPy energies (``ParametricEnergy``, ``MLPEnergy``).

TorchEBM's ``*Model`` names are accepted as aliases of the ``*Energy`` classes.
"""
from .base import CompiledEnergy, Energy
from .parametric import MLPEnergy, ParametricEnergy
from .builtin import (
    AckleyEnergy,
    BoothEnergy,
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    HarmonicEnergy,
    HimmelblauEnergy,
    ManyWellEnergy,
    RastriginEnergy,
    RosenbrockEnergy,
    StyblinskiTangEnergy,
)

BUILTINS = {
    "gaussian": GaussianEnergy,
    "double_well": DoubleWellEnergy,
    "harmonic": HarmonicEnergy,
    "rosenbrock": RosenbrockEnergy,
    "rastrigin": RastriginEnergy,
    "ackley": AckleyEnergy,
    "gaussian_mixture": GaussianMixtureEnergy,
    "many_well": ManyWellEnergy,
    "himmelblau": HimmelblauEnergy,
    "booth": BoothEnergy,
    "styblinski_tang": StyblinskiTangEnergy,
}

# TorchEBM's names.
GaussianModel = GaussianEnergy
DoubleWellModel = DoubleWellEnergy
HarmonicModel = HarmonicEnergy
RosenbrockModel = RosenbrockEnergy
RastriginModel = RastriginEnergy
AckleyModel = AckleyEnergy
GaussianMixtureModel = GaussianMixtureEnergy
ManyWellModel = ManyWellEnergy
HimmelblauModel = HimmelblauEnergy
BoothModel = BoothEnergy
StyblinskiTangModel = StyblinskiTangEnergy

__all__ = [
    "Energy",
    "CompiledEnergy",
    "ParametricEnergy",
    "MLPEnergy",
    "BUILTINS",
    *(cls.__name__ for cls in BUILTINS.values()),
    *(cls.__name__.replace("Energy", "Model") for cls in BUILTINS.values()),
]
