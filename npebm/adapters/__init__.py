"""Adapters that turn other libraries' models into npebm energies.

``npebm.adapters.torch.TorchEnergy`` wraps a torch module or function.  Nothing here
imports torch until that module is imported.
"""
