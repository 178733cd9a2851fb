"""ESS, R-hat, MCSE and autocorrelation against ArviZ on the same draws (to 1 %)."""
import arviz as az  # a test dependency: the comparison always runs
import numpy as np
import pytest

from npebm import diagnostics as D


@pytest.fixture(autouse=True)
def _arviz_without_numba():
    # ArviZ's numba branch of mcse(method="sd") fails on plain arrays (0.23.4); its
    # NumPy branch is the reference anyway.
    az.Numba.disable_numba()
    yield
    az.Numba.enable_numba()


def _ar1(seed, n_chains, n_draws, dim, phi, offsets=0.0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n_chains, n_draws, dim))
    x[:, 0] = rng.normal(size=(n_chains, dim)) / np.sqrt(1 - phi ** 2)
    for t in range(1, n_draws):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=(n_chains, dim))
    return x + np.reshape(offsets, (-1, 1, 1)) if np.ndim(offsets) else x + offsets


def _arviz(func, x, **kwargs):
    out = func(az.convert_to_dataset({"x": x}), **kwargs)["x"].values
    return np.asarray(out, dtype=float)


CASES = [
    dict(seed=0, n_chains=4, n_draws=500, dim=3, phi=0.9),
    dict(seed=1, n_chains=2, n_draws=101, dim=2, phi=0.0),
    dict(seed=2, n_chains=8, n_draws=64, dim=1, phi=-0.5),
    dict(seed=3, n_chains=4, n_draws=300, dim=2, phi=0.95, offsets=[0.0, 0.0, 0.5, 1.0]),
]


@pytest.mark.parametrize("case", CASES)
def test_matches_arviz(case):
    x = _ar1(**case)
    for method in ("bulk", "tail", "mean", "sd"):
        np.testing.assert_allclose(D.ess(x, method), _arviz(az.ess, x, method=method),
                                   rtol=0.01, err_msg=method)
    np.testing.assert_allclose(D.rhat(x), _arviz(az.rhat, x), rtol=0.01)
    for method in ("mean", "sd"):
        np.testing.assert_allclose(D.mcse(x, method), _arviz(az.mcse, x, method=method),
                                   rtol=0.01, err_msg=method)
    lag = D.autocorrelation(x)
    assert lag.shape == x.shape
    np.testing.assert_allclose(lag[1, :, 0], az.autocorr(x[1, :, 0]), atol=1e-10)


def test_statistics_see_what_they_should():
    iid = _ar1(4, 4, 1000, 1, 0.0)
    sticky = _ar1(4, 4, 1000, 1, 0.95)
    assert D.ess(iid)[0] > 2000 and D.ess(sticky)[0] < 400
    assert D.rhat(iid)[0] < 1.01
    assert D.rhat(iid + np.array([0.0, 0.0, 0.0, 3.0])[:, None, None])[0] > 1.2
    # A 2-D input (n_chains, n_draws) gives scalars.
    assert isinstance(D.ess(iid[:, :, 0]), float)


def test_edge_cases_and_errors():
    assert np.isnan(D.rhat(np.zeros((1, 100, 1))))[0]  # one chain
    assert np.isnan(D.ess(np.zeros((2, 3, 1))))[0]  # too few draws
    assert D.ess(np.ones((2, 50, 1)))[0] == 100  # constant draws: ArviZ's convention
    with pytest.raises(ValueError, match="trajectory"):
        D.ess(np.zeros(5))
    with pytest.raises(ValueError, match="method"):
        D.ess(np.zeros((2, 10)), method="median")


def test_sampler_summary_reports_ess_and_rhat():
    from npebm.energies import GaussianEnergy
    from npebm.samplers import MALA

    traj, d = MALA(GaussianEnergy([0.0], [[1.0]]), step_size=0.5, seed=0).sample(
        n_samples=8, n_steps=200, burn_in=50, return_trajectory=True, return_diagnostics=True)
    assert d.trajectory is traj
    s = d.summary()
    assert s["ess_bulk_min"] == pytest.approx(D.ess(traj)[0])
    assert s["rhat_max"] == pytest.approx(D.rhat(traj)[0]) and s["rhat_max"] < 1.05
    assert "ess_bulk_min" not in MALA(GaussianEnergy([0.0], [[1.0]]), seed=0).sample(
        n_samples=8, n_steps=20, return_diagnostics=True)[1].summary()


def test_ess_of_ar1_matches_its_closed_form():
    # For AR(1) with coefficient phi the integrated autocorrelation time is
    # (1 + phi) / (1 - phi), so ESS = N (1 - phi) / (1 + phi).  With 8 x 4000 draws the
    # estimator's own sampling error is a few percent; allow 10 %.
    for phi in (0.0, 0.5, 0.9, -0.3):
        x = _ar1(10, 8, 4000, 2, phi)
        expected = x.shape[0] * x.shape[1] * (1 - phi) / (1 + phi)
        np.testing.assert_allclose(D.ess(x, "mean"), expected, rtol=0.1, err_msg=str(phi))
