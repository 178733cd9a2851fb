"""Diagnostics.to_arviz: the draws round-trip into ArviZ with the per-draw sample stats.

Small runs of HMC and MALA on a 2-D Gaussian written with array operations (the
vectorised path: nothing to compile).  ArviZ 0.x gives an InferenceData; the ArviZ >= 1
call (a DataTree from nested groups) is checked against a stand-in module.
"""
import subprocess
import sys
import types
import warnings

import arviz as az  # a test dependency
import numpy as np
import pytest

from npebm import diagnostics as D
from npebm.diagnostics import Diagnostics
from npebm.energies import Energy
from npebm.samplers import MALA, HamiltonianMonteCarlo

MEAN = np.array([0.0, 1.0])
PRECISION = np.linalg.inv(np.array([[1.0, 0.3], [0.3, 2.0]]))
N_CHAINS, N_STEPS = 4, 300


class ArrayGaussian(Energy):
    def energy(self, x):
        d = x - MEAN
        return 0.5 * np.einsum("ij,jk,ik->i", d, PRECISION, d)

    def gradient(self, x):
        return (x - MEAN) @ PRECISION


SAMPLERS = {
    "hmc": lambda: HamiltonianMonteCarlo(ArrayGaussian(), step_size=0.4, n_leapfrog_steps=4,
                                         seed=0),
    "mala": lambda: MALA(ArrayGaussian(), step_size=0.5, seed=1),
}


@pytest.fixture(scope="module", params=sorted(SAMPLERS))
def run(request):
    traj, diag = SAMPLERS[request.param]().sample(
        n_samples=N_CHAINS, dim=2, n_steps=N_STEPS, return_trajectory=True,
        return_diagnostics=True)
    return traj, diag


def test_draws_round_trip(run):
    traj, diag = run
    idata = diag.to_arviz()
    x = idata.posterior["x"]
    assert x.dims == ("chain", "draw", "x_dim_0")
    assert x.shape == traj.shape == (N_CHAINS, N_STEPS, 2)
    np.testing.assert_array_equal(x.values, traj)
    np.testing.assert_array_equal(x["chain"].values, np.arange(N_CHAINS))
    np.testing.assert_array_equal(x["draw"].values, np.arange(N_STEPS))
    assert idata.attrs["inference_library"] == "npebm"


def test_sample_stats(run):
    traj, diag = run
    stats = diag.to_arviz().sample_stats
    assert set(stats.data_vars) == {"lp", "acceptance_rate", "step_size", "grad_norm"}
    for name in stats.data_vars:
        assert stats[name].dims == ("chain", "draw")
        assert stats[name].shape == (N_CHAINS, N_STEPS)
    np.testing.assert_array_equal(stats["lp"].values, -diag.energy.T)
    np.testing.assert_array_equal(stats["acceptance_rate"].values, diag.accepted.T)
    np.testing.assert_array_equal(stats["grad_norm"].values, diag.grad_norm.T)
    np.testing.assert_array_equal(stats["step_size"].values,
                                  np.broadcast_to(diag.step_size, (N_CHAINS, N_STEPS)))
    # each chain's mean acceptance over draws is its acceptance rate
    np.testing.assert_allclose(stats["acceptance_rate"].values.mean(axis=1),
                               diag.n_accepted / N_STEPS)
    # lp is the log density of the draw itself
    d = traj - MEAN
    np.testing.assert_allclose(stats["lp"].values,
                               -0.5 * np.einsum("cti,ij,ctj->ct", d, PRECISION, d))


def test_summary_matches_npebm_statistics(run):
    traj, diag = run
    summary = az.summary(diag.to_arviz(), round_to="none")
    np.testing.assert_allclose(summary["mean"], traj.mean(axis=(0, 1)))
    np.testing.assert_allclose(summary["ess_bulk"], D.ess(traj, "bulk"), rtol=1e-8)
    np.testing.assert_allclose(summary["ess_tail"], D.ess(traj, "tail"), rtol=1e-8)
    np.testing.assert_allclose(summary["r_hat"], D.rhat(traj), rtol=1e-8)
    np.testing.assert_allclose(summary["mcse_mean"], D.mcse(traj, "mean"), rtol=1e-8)


def test_trajectory_argument_names_and_coords(run):
    traj, diag = run
    bare = Diagnostics(**{k: v for k, v in diag.items() if k != "trajectory"})
    with pytest.raises(ValueError, match="return_trajectory=True"):
        bare.to_arviz()
    idata = bare.to_arviz(traj, var_name="theta", dims={"theta": ["coord"]},
                          coords={"coord": ["a", "b"]})
    theta = idata.posterior["theta"]
    assert theta.dims == ("chain", "draw", "coord")
    assert list(theta["coord"].values) == ["a", "b"]
    np.testing.assert_array_equal(theta.sel(coord="b").values, traj[..., 1])
    several = bare.to_arviz({"first": traj[..., 0], "both": traj})
    assert several.posterior["first"].dims == ("chain", "draw")
    np.testing.assert_array_equal(several.posterior["both"].values, traj)
    # the final states are not draws; nor are the draws of another run
    with pytest.raises(ValueError, match="final states"):
        bare.to_arviz(traj[:, -1])
    with pytest.raises(ValueError, match="kept steps"):
        bare.to_arviz(traj[:, :10])


def _record(n_kept=5, n_chains=8, dim=8, **extra):
    rng = np.random.default_rng(0)
    return Diagnostics(
        energy=rng.normal(size=(n_kept, n_chains)),
        acceptance_rate=rng.uniform(size=n_kept),
        mean=rng.normal(size=(n_kept, dim)),  # (n_kept, dim) == (n_kept, n_chains) here
        var=rng.uniform(size=(n_kept, dim)),
        grad_norm=rng.uniform(size=(n_kept, n_chains)),
        step_size=np.linspace(0.1, 0.05, n_kept),
        divergences=np.arange(n_chains),
        accepted=rng.uniform(size=(n_kept, n_chains)) < 0.5,
        n_accepted=np.arange(n_chains),
        trajectory=rng.normal(size=(n_chains, n_kept, dim)),
        **extra)


def test_info_fields_under_arviz_names():
    rng = np.random.default_rng(1)
    shape = (5, 8)
    info = dict(tree_depth=rng.integers(1, 6, size=shape),
                n_leapfrog=rng.integers(1, 31, size=shape),
                divergent=rng.uniform(size=shape) < 0.1,
                hamiltonian=rng.normal(size=shape), custom=rng.normal(size=shape))
    diag = _record(**info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 8 chains of 5 draws: no "More chains" warning
        stats = diag.to_arviz().sample_stats
    assert set(stats.data_vars) == {"lp", "acceptance_rate", "step_size", "grad_norm",
                                    "tree_depth", "n_steps", "diverging", "energy", "custom"}
    np.testing.assert_array_equal(stats["tree_depth"].values, info["tree_depth"].T)
    np.testing.assert_array_equal(stats["n_steps"].values, info["n_leapfrog"].T)
    assert stats["diverging"].dtype == bool
    np.testing.assert_array_equal(stats["diverging"].values, info["divergent"].T)
    np.testing.assert_array_equal(stats["energy"].values, info["hamiltonian"].T)
    np.testing.assert_array_equal(stats["custom"].values, info["custom"].T)
    for name in stats.data_vars:
        assert stats[name].dims == ("chain", "draw") and stats[name].shape == (8, 5)


def test_missing_arviz_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(ImportError, match=r"pip install arviz.*npebm\[arviz\]"):
        _record().to_arviz()


def test_arviz_1_gets_nested_groups(monkeypatch):
    calls = []
    fake = types.ModuleType("arviz")
    fake.__version__ = "1.2.0"
    fake.from_dict = lambda *args, **kwargs: calls.append((args, kwargs)) or "tree"
    monkeypatch.setitem(sys.modules, "arviz", fake)
    diag = _record()
    assert diag.to_arviz(dims={"x": ["coord"]}) == "tree"
    (groups,), kwargs = calls[0]
    assert set(groups) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(groups["posterior"]["x"], diag.trajectory)
    assert groups["sample_stats"]["lp"].shape == (8, 5)
    assert kwargs["dims"] == {"x": ["coord"]}
    assert kwargs["attrs"]["/"]["inference_library"] == "npebm"


def test_import_npebm_does_not_import_arviz():
    code = ("import sys, npebm, npebm.diagnostics, npebm.samplers; "
            "assert 'arviz' not in sys.modules, 'arviz imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
