"""Training energy-based models: contrastive divergence and score matching.

``ContrastiveDivergence`` trains any npebm energy: a ``TorchEnergy`` (its loss is a torch
scalar that back-propagates into the module) or a NumPy ``ParametricEnergy`` (through
``cd.gradient(batch)``, no torch needed).  ``DenoisingScoreMatching`` and
``SlicedScoreMatching`` need torch.  torch is imported on first use only.
"""
import importlib

_EXPORTS = {
    "ContrastiveDivergence": "contrastive",
    "DenoisingScoreMatching": "score_matching",
    "SlicedScoreMatching": "score_matching",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
