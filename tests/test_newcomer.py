"""What a new user meets in the first ten minutes: TorchEBM's tutorial code unchanged but
for the lines that build arrays, torch inputs, broken starts and stuck chains told,
impossible requests refused before any work, and memory that does not grow with
``n_steps``.  Each test failed on the code before its fix.
"""
import tracemalloc
import warnings

import numpy as np
import pytest

from npebm.diagnostics import Diagnostics
from npebm.energies import CompiledEnergy, DoubleWellEnergy, Energy, GaussianEnergy
from npebm.samplers import (MALA, HamiltonianMonteCarlo, InsufficientMemoryError,
                            LangevinDynamics, SamplingWarning)
from npebm.schedulers import LinearScheduler

torch = pytest.importorskip("torch")

GAUSS = GaussianEnergy(mean=[0.0, 0.0], cov=[[1.0, 0.0], [0.0, 1.0]])


# --------------------------------------------------------------- TorchEBM's tutorial
def test_torchebm_langevin_tutorial_runs_unchanged():
    """TorchEBM's Langevin tutorial: one start point of shape (dim,), a trajectory read
    as trajectory[0, :, 0] and the energy of chain 0 as diagnostics[:, 2, 0, 0]."""
    energy_fn = DoubleWellEnergy(barrier_height=2.0)
    sampler = LangevinDynamics(energy_function=energy_fn, step_size=0.01, noise_scale=1.0,
                               seed=0)
    initial_state = np.array([0.0])  # torch.tensor([0.0]) in TorchEBM
    trajectory, diagnostics = sampler.sample(x=initial_state, n_steps=1000,
                                             return_trajectory=True,
                                             return_diagnostics=True)
    assert trajectory.shape == (1, 1000, 1)
    path = trajectory[0, :, 0]
    energies = diagnostics[:, 2, 0, 0]
    assert path.shape == energies.shape == (1000,)
    np.testing.assert_array_equal(energies, diagnostics["energy"][:, 0])
    np.testing.assert_allclose(energies, energy_fn(trajectory[0]), rtol=1e-12)
    # The final state keeps the chain axis too.
    assert sampler.sample(x=initial_state, n_steps=10).shape == (1, 1)


def test_torch_tensors_are_accepted_as_x_and_step_size():
    sampler = LangevinDynamics(GAUSS, step_size=torch.tensor(0.05), seed=3)
    from_torch = sampler.sample(x=torch.zeros(4, 2), n_steps=20)
    # torch's default float32 runs in float32, as a float32 NumPy x does
    from_numpy = LangevinDynamics(GAUSS, step_size=0.05, seed=3).sample(
        x=np.zeros((4, 2), np.float32), n_steps=20)
    assert isinstance(from_torch, np.ndarray)  # results are NumPy on the CPU
    np.testing.assert_array_equal(from_torch, from_numpy)
    # float32 tensors stay float32; one that requires grad is read, not refused
    x32 = torch.zeros(3, 2, requires_grad=True)
    assert sampler.sample(x=x32, n_steps=3).dtype == np.float32


def test_torch_module_is_wrapped_as_an_energy():
    from npebm.adapters.torch import TorchEnergy

    mlp = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    sampler = LangevinDynamics(model=mlp, step_size=0.01, dtype=np.float32, seed=0)
    assert isinstance(sampler.energy, TorchEnergy)
    assert sampler.sample(n_samples=5, dim=2, n_steps=3).shape == (5, 2)


@pytest.mark.parametrize("key", [(slice(None), 2, 0, 0), 0, slice(1, 3), (0, 1),
                                 (Ellipsis, 0)])
def test_diagnostics_index_like_torchebm(key):
    sampler = MALA(GAUSS, step_size=0.5, seed=1)
    _, d = sampler.sample(n_samples=3, dim=2, n_steps=5, return_diagnostics=True)
    np.testing.assert_array_equal(d[key], d.stacked()[key])
    assert d.stacked().shape == (5, 4, 3, 2)
    with pytest.raises(TypeError, match="indexed by a name"):
        d[1.5]
    with pytest.raises(KeyError, match="no diagnostic"):
        d["nope"]


def test_diagnostics_string_keys_unchanged():
    d = Diagnostics(energy=np.zeros((2, 3)))
    assert d["energy"].shape == (2, 3) and d.energy.shape == (2, 3)


# --------------------------------------------------------- broken starts, stuck chains
class Walled(Energy):
    """A Gaussian that is infinite for x0 > 3: chains started there cannot move."""

    def energy(self, x):
        return np.where(x[:, 0] > 3, np.inf, 0.5 * (x * x).sum(axis=1))

    def gradient(self, x):
        return x.copy()


@pytest.mark.parametrize("make", [
    lambda e: LangevinDynamics(e, step_size=0.1, seed=0),
    lambda e: MALA(e, step_size=0.1, seed=0),
    lambda e: HamiltonianMonteCarlo(e, step_size=0.1, n_leapfrog_steps=3, seed=0),
])
def test_every_chain_non_finite_at_start_is_refused(make):
    x = np.full((4, 2), 5.0)
    with pytest.raises(ValueError, match=r"every chain \(4, first chain 0\)"):
        make(Walled()).sample(x=x, n_steps=5)


def test_compiled_energy_non_finite_at_start_is_refused():
    def wall(x, grad, params):
        for i in range(x.shape[0]):
            grad[i] = x[i]
        return np.inf if x[0] > 3 else 0.5 * (x @ x)

    with pytest.raises(ValueError, match="every chain"):
        MALA(CompiledEnergy(wall), step_size=0.1).sample(x=np.full((3, 2), 4.0),
                                                         n_steps=2)


def test_some_chains_non_finite_at_start_are_named():
    x = np.zeros((6, 2))
    x[[1, 4], 0] = 5.0
    sampler = MALA(Walled(), step_size=0.5, seed=0)
    with pytest.warns(SamplingWarning, match=r"2 of 6 chains \(1, 4\)"):
        out = sampler.sample(x=x, n_steps=60)
    assert np.isfinite(out).all()


def test_chains_that_never_accept_are_reported_once():
    # Chains far out on a steep double well reject every HMC proposal at this step.
    x = np.zeros((8, 2))
    x[3] = [4.0, 0.0]
    sampler = HamiltonianMonteCarlo(DoubleWellEnergy(barrier_height=3.0), step_size=0.3,
                                    n_leapfrog_steps=10, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler.sample(x=x, n_steps=60)
    stuck = [str(w.message) for w in caught if "never accepted" in str(w.message)]
    assert len(stuck) == 1 and "1 of 8 chains" in stuck[0] and "(chains 3)" in stuck[0]


def test_many_divergences_are_reported():
    sampler = HamiltonianMonteCarlo(GAUSS, step_size=3.5, n_leapfrog_steps=5, seed=0)
    with pytest.warns(SamplingWarning, match=r"of proposals diverged .* smaller step_size"):
        sampler.sample(n_samples=20, dim=2, n_steps=10)


def test_a_healthy_run_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MALA(GAUSS, step_size=0.8, seed=0).sample(n_samples=50, dim=2, n_steps=100)


# ------------------------------------------------------------- impossible requests
def test_impossible_memory_is_refused_before_any_work():
    sampler = LangevinDynamics(GAUSS, step_size=0.1)
    tracemalloc.start()
    try:
        with pytest.raises(InsufficientMemoryError, match=r"GiB.*return_trajectory"):
            sampler.sample(n_samples=10**8, dim=2, n_steps=1000, return_trajectory=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # nothing of the run's size was allocated
    with pytest.raises(MemoryError, match="return_diagnostics"):
        sampler.sample(n_samples=10**6, dim=2, n_steps=10**6, return_diagnostics=True)


def test_chain_count_error_names_the_users_argument():
    with pytest.raises(ValueError, match=r"n_samples gives \d+ chains, but at most 2\*\*32"):
        LangevinDynamics(GAUSS).sample(n_samples=2**32 + 1, dim=2, n_steps=1)
    with pytest.raises(ValueError, match="from chain_offset=10"):
        LangevinDynamics(GAUSS).sample(n_samples=2**32 - 5, dim=2, chain_offset=10)


def test_float16_x_is_named():
    with pytest.raises(TypeError, match="x must be float32 or float64, got float16"):
        MALA(GAUSS).sample(x=np.zeros((2, 2), np.float16), n_steps=1)


def test_float32_step_size_that_overflows_is_refused():
    with pytest.raises(ValueError, match=r"step_size=1e\+39 .* overflows float32"):
        LangevinDynamics(GAUSS, step_size=1e39, dtype=np.float32).sample(n_samples=2, dim=2)


def test_state_of_another_sampler_is_refused():
    hmc = HamiltonianMonteCarlo(GAUSS, step_size=0.2, seed=0)
    hmc.sample(n_samples=3, dim=2, n_steps=2)
    state = hmc.get_state()
    with pytest.raises(ValueError, match="saved by HamiltonianMonteCarlo, not MALA"):
        MALA(GAUSS).set_state(state)
    # A state written before the name was saved: its mass tells it is not a sampler
    # without one (MALA has a mass too since adapt="fisher").
    del state["sampler"]
    with pytest.raises(ValueError, match="not LangevinDynamics"):
        LangevinDynamics(GAUSS).set_state(state)
    HamiltonianMonteCarlo(GAUSS).set_state(hmc.get_state())  # its own kind loads


# ------------------------------------------------------ memory that does not grow
def test_memory_does_not_grow_with_n_steps():
    sampler = LangevinDynamics(GAUSS, step_size=LinearScheduler(0.1, 0.01, 10**6), seed=0)
    sampler.sample(n_samples=2, dim=2, n_steps=10)  # compile outside the measurement
    n_steps = 3 * 10**6
    tracemalloc.start()
    try:
        sampler.sample(n_samples=2, dim=2, n_steps=n_steps, seed=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Schedules held for every step take 8 bytes a step for each of several arrays (163
    # MiB at 3e6 steps before the fix; 12 MiB after, for any n_steps).
    assert peak < 8 * n_steps


@pytest.mark.parametrize("energy", [GAUSS, Walled()], ids=["compiled", "array"])
def test_schedules_are_computed_a_chunk_at_a_time(energy, monkeypatch):
    import npebm.samplers.base as base

    monkeypatch.setattr(base, "MAX_CHUNK", 512)
    monkeypatch.setattr(base, "SCHEDULE_PIECE", 512)
    sampler = LangevinDynamics(energy, step_size=LinearScheduler(0.1, 0.01, 10**4), seed=0)
    asked = []
    schedules = sampler._schedules
    monkeypatch.setattr(sampler, "_schedules",
                        lambda start, n: asked.append(n) or schedules(start, n))
    x = sampler.sample(n_samples=2, dim=2, n_steps=5000, thin=7, return_trajectory=True)
    assert max(asked) <= 512 and x.shape == (2, 714, 2)
    whole = LangevinDynamics(energy, step_size=LinearScheduler(0.1, 0.01, 10**4), seed=0)
    np.testing.assert_array_equal(x, whole.sample(n_samples=2, dim=2, n_steps=5000, thin=7,
                                                  return_trajectory=True))


def test_diagnostics_combine_in_pieces_with_the_same_bits(monkeypatch):
    import npebm.samplers.base as base

    def run():
        return MALA(GaussianEnergy(mean=[1.0, 2.0, 3.0], cov=np.eye(3)), step_size=0.5,
                    seed=4).sample(n_samples=130, dim=3, n_steps=40, thin=3,
                                   return_diagnostics=True)[1]

    whole = run()
    # A moment buffer of a few slots: kept steps combine a few at a time.
    monkeypatch.setattr(base, "MOMENT_BYTES", 3 * 3 * 3 * 8 * 3)
    pieces = run()
    for field in ("mean", "var", "energy", "step_size", "accepted"):
        np.testing.assert_array_equal(whole[field], pieces[field], err_msg=field)


def test_contrastive_divergence_takes_the_module_too():
    from npebm.losses import ContrastiveDivergence

    mlp = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    sampler = LangevinDynamics(mlp, step_size=0.01, seed=0)
    cd = ContrastiveDivergence(mlp, sampler, k_steps=2)
    assert cd.energy is sampler.energy
    loss, negatives = cd(torch.zeros(4, 2))
    loss.backward()
    assert negatives.shape == (4, 2) and mlp[0].weight.grad is not None
