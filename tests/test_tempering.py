"""Parallel tempering and annealed importance sampling: statistics against closed forms,
the adaptive schedules, exactness of resume and threads, and bad input.

Tolerances come from standard errors: log Z within 3 SE (the SE from the spread of
independent ladders), probabilities within 5 MCSE (ArviZ-style ESS over ladders).
"""
import math
import os
import textwrap

import numpy as np
import pytest
from helpers import assert_same_for_one_and_two_threads

from npebm.diagnostics import mcse, rhat
from npebm.energies import Energy, GaussianEnergy, GaussianMixtureEnergy, ManyWellEnergy
from npebm.samplers import (MALA, AnnealedImportanceSampling, HamiltonianMonteCarlo,
                            LangevinDynamics, ParallelTempering, SamplingWarning,
                            UnderdampedLangevin)


MANY_WELL = ManyWellEnergy(32)
MANY_WELL_LOG_Z = 16 * (math.log(11784.50927) + 0.5 * math.log(2 * math.pi))  # 164.6957
P_RIGHT = 0.8443  # P(x > 0) of each pair's first coordinate
W_LEFT = 0.3
# Normalised (log Z = 0): 0.3 N((-5, 0), I) + 0.7 N((5, 0), I).
MIXTURE = GaussianMixtureEnergy([[-5.0, 0.0], [5.0, 0.0]], 1.0, [W_LEFT, 1 - W_LEFT])


def test_many_well_normaliser():
    assert abs(MANY_WELL.log_z - MANY_WELL_LOG_Z) < 1e-6


def _indicator_mcse(series):
    """Mean and MCSE of a (chains, draws) series."""
    return float(series.mean()), float(mcse(series[:, :, None])[0])


def test_many_well_log_z_and_mode_weights():
    """Catches: a wrong swap test, a wrong stepping stone (sign, missing reference
    normaliser), a tempered gradient that is not the path's, or lost mode weights."""
    hmc = HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, n_leapfrog_steps=5, seed=3)
    pt = ParallelTempering(hmc, n_temperatures=12)
    x, d = pt.sample(n_samples=16, n_steps=1200, burn_in=600, return_trajectory=True,
                     return_diagnostics=True)
    assert x.shape == (16, 1200, 32)
    err = d["log_z"] - MANY_WELL_LOG_Z
    assert abs(err) < 3 * d["log_z_se"] and abs(err) < 0.5, (d["log_z"], d["log_z_se"])
    right = (x[:, :, 0::2] > 0).mean(axis=2)
    p, se = _indicator_mcse(right)
    assert abs(p - P_RIGHT) < 5 * se, (p, se)
    assert d["round_trips"].sum() > 0 and d["barrier"] > 0
    assert d["suggested_n_temperatures"] >= 2


def test_plain_hmc_fails_on_many_well():
    """The reason for tempering: HMC started in the left wells stays there."""
    hmc = HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, n_leapfrog_steps=5, seed=3)
    x0 = np.tile(np.array([-1.7, 0.0] * 16), (16, 1))
    x = hmc.sample(x=x0, n_steps=1200, return_trajectory=True)
    p, se = _indicator_mcse((x[:, :, 0::2] > 0).mean(axis=2))
    assert abs(p - P_RIGHT) > 5 * max(se, 1e-3), (p, se)


def test_mixture_weights_and_rhat():
    """Catches: mode proportions that follow the reference instead of the target."""
    hmc = HamiltonianMonteCarlo(MIXTURE, step_size=0.4, n_leapfrog_steps=5, seed=0)
    pt = ParallelTempering(hmc, n_temperatures=8, reference=([0.0, 0.0], 16.0))
    x, d = pt.sample(n_samples=16, n_steps=2000, burn_in=500, return_trajectory=True,
                     return_diagnostics=True)
    left, se = _indicator_mcse((x[:, :, 0] < 0).astype(float))
    assert abs(left - W_LEFT) < 5 * se, (left, se)
    assert rhat(x).max() < 1.01
    assert abs(d["log_z"]) < 3 * d["log_z_se"] + 1e-9
    plain = HamiltonianMonteCarlo(MIXTURE, step_size=0.4, n_leapfrog_steps=5, seed=0)
    y = plain.sample(n_samples=16, n_steps=2000, burn_in=500, return_trajectory=True)
    assert rhat(y).max() > 1.2


def _gaussian_case(dim):
    """A diagonal Gaussian energy (unnormalised) and its log Z, (2π)^{d/2} |Σ|^{1/2}."""
    rng = np.random.default_rng(dim)
    scales = rng.uniform(0.5, 2.0, dim)
    energy = GaussianEnergy(rng.normal(size=dim), np.diag(scales ** 2))
    return energy, 0.5 * dim * math.log(2 * math.pi) + np.log(scales).sum()


@pytest.mark.parametrize("dim", [2, 50])
def test_gaussian_log_z(dim):
    """log Z of an unnormalised Gaussian within 3 SE."""
    energy, truth = _gaussian_case(dim)
    hmc = HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=5, seed=1)
    pt = ParallelTempering(hmc, n_temperatures=10 if dim == 50 else 6)
    _, d = pt.sample(n_samples=10, n_steps=300, burn_in=112, return_diagnostics=True)
    assert abs(d["log_z"] - truth) < 3 * d["log_z_se"], (d["log_z"], truth, d["log_z_se"])


def test_adaptation_equalises_rejection():
    hmc = HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, n_leapfrog_steps=3, seed=2)
    pt = ParallelTempering(hmc, n_temperatures=10)
    _, d = pt.sample(n_samples=8, n_steps=10, burn_in=16 + 32 + 64 + 128 + 256,
                     return_diagnostics=True)
    spread = d["rejection_history"].std(axis=1)
    assert len(spread) == 5
    assert spread[-1] < 0.5 * spread[0], spread
    assert d["betas"][0] == 0 and d["betas"][-1] == 1 and (np.diff(d["betas"]) > 0).all()


class _ArrayGaussian(Energy):
    """N(1, 0.25 I) as array code: it runs on the vectorised path (no compilation)."""

    def energy(self, x):
        return 0.5 * ((x - 1.0) ** 2).sum(axis=1) / 0.25

    def gradient(self, x):
        return (x - 1.0) / 0.25


def _final(sampler_type, energy, n_steps, resume_split=None, **kw):
    pt = ParallelTempering(sampler_type(energy, seed=4, **kw), n_temperatures=4,
                           schedule="fixed")
    if resume_split is None:
        return pt.sample(n_samples=5, dim=2, n_steps=n_steps, burn_in=7)
    pt.sample(n_samples=5, dim=2, n_steps=resume_split, burn_in=7)
    return pt.sample(n_steps=n_steps - resume_split, resume=True)


@pytest.mark.parametrize("sampler_type,energy,kw", [
    (LangevinDynamics, _ArrayGaussian(), {"step_size": 0.05}),
    (MALA, _ArrayGaussian(), {"step_size": 0.3}),
    (UnderdampedLangevin, _ArrayGaussian(), {"step_size": 0.1}),
    (HamiltonianMonteCarlo, MIXTURE, {"step_size": 0.2, "n_leapfrog_steps": 3})])
def test_resume_is_bit_identical(sampler_type, energy, kw):
    """Catches: swap parity or reference and swap streams that restart with a call."""
    one = _final(sampler_type, energy, 30, **kw)
    two = _final(sampler_type, energy, 30, resume_split=11, **kw)
    assert np.array_equal(one, two)


def test_state_round_trip_resumes_bit_identically():
    s = HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, n_leapfrog_steps=3, seed=9)
    pt = ParallelTempering(s, n_temperatures=5)
    pt.sample(n_samples=3, n_steps=20, burn_in=20)
    state = {k: np.array(v) for k, v in pt.get_state().items()}
    a = pt.sample(n_steps=15, resume=True)
    other = ParallelTempering(HamiltonianMonteCarlo(MANY_WELL, step_size=0.1,
                                                    n_leapfrog_steps=3, seed=9),
                              n_temperatures=5)
    other.set_state(state)
    b = other.sample(n_steps=15, resume=True)
    assert np.array_equal(a, b)


def test_vectorised_energy_log_z():
    """An energy written as array code runs the vectorised path, tempered the same way."""
    pt = ParallelTempering(MALA(_ArrayGaussian(), step_size=0.1, seed=0), n_temperatures=5)
    _, d = pt.sample(dim=3, n_samples=8, n_steps=400, burn_in=200, return_diagnostics=True)
    truth = 1.5 * math.log(2 * math.pi * 0.25)
    assert abs(d["log_z"] - truth) < 3 * d["log_z_se"], (d["log_z"], truth)


_THREADS = textwrap.dedent("""
    import hashlib, sys
    sys.path.insert(0, {tests!r})
    from test_tempering import MANY_WELL
    from npebm import _threads
    from npebm.samplers import HamiltonianMonteCarlo, ParallelTempering
    pt = ParallelTempering(HamiltonianMonteCarlo(MANY_WELL, step_size=0.1,
                                                 n_leapfrog_steps=3, seed=5),
                           n_temperatures=6)
    x, d = pt.sample(n_samples=40, n_steps=30, burn_in=40, return_trajectory=True,
                     return_diagnostics=True)
    h = hashlib.sha256(x.tobytes())
    for k in ("betas", "log_z", "round_trips", "swap_acceptance", "energy"):
        h.update(d[k].tobytes())
    print(_threads._n_threads(), h.hexdigest())
""")


def test_bit_identical_for_one_and_two_threads():
    assert_same_for_one_and_two_threads(
        _THREADS.format(tests=os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("kwargs,match", [
    ({"betas": [0.0, 0.5, 0.4, 1.0]}, "strictly increasing"),
    ({"betas": [0.0, 0.5, 1.2]}, r"\[0, 1\]"),
    ({"betas": [0.0, 0.5, 0.9]}, "end at 1"),
    ({"betas": [0.1, 0.5, 1.0]}, "start at 0"),
    ({"n_temperatures": 1}, "n_temperatures"),
    ({"n_temperatures": 3, "betas": [0.0, 1.0]}, "disagrees"),
    ({"schedule": "geometric"}, "schedule"),
    ({"reference": "normal"}, "reference"),
])
def test_bad_arguments(kwargs, match):
    s = MALA(GaussianEnergy([0.0, 0.0], np.eye(2)))
    with pytest.raises((TypeError, ValueError), match=match):
        ParallelTempering(s, **kwargs)


def test_bad_reference_dim_and_sampler():
    s = MALA(GaussianEnergy([0.0, 0.0], np.eye(2)))
    pt = ParallelTempering(s, reference=([0.0, 0.0, 0.0], 1.0))
    with pytest.raises(ValueError, match="reference"):
        pt.sample(n_samples=2, n_steps=5)
    with pytest.raises(TypeError, match="sampler"):
        ParallelTempering(GaussianEnergy([0.0], [[1.0]]))
    with pytest.raises(RuntimeError, match="not run yet"):
        ParallelTempering(s).sample(n_steps=3, resume=True)


# ----------------------------------------------------------------------------- AIS

def test_ais_many_well_log_z():
    """Catches: a wrong weight increment (sign, β step), a missing reference normaliser,
    transitions that do not target π_β."""
    import npebm

    hmc = HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, n_leapfrog_steps=5, seed=1)
    ais = npebm.AnnealedImportanceSampling(transition=hmc, n_steps=2)
    r = ais.run(1024)
    err = r.log_z - MANY_WELL_LOG_Z
    assert abs(err) < 3 * r.log_z_se and abs(err) < 0.5, (r.log_z, r.log_z_se)
    assert r.weights.shape == (1024,) and abs(r.weights.sum() - 1) < 1e-12
    assert r.samples.shape == (1024, 32) and 1 <= r.ess <= 1024
    assert r.betas[0] == 0 and r.betas[-1] == 1 and (np.diff(r.betas) > 0).all()
    # Three stages cannot bridge the reference and the wells: a handful of particles
    # carry the weight, and the run says so.
    few = npebm.AnnealedImportanceSampling(transition=hmc, n_temperatures=3)
    with pytest.warns(SamplingWarning, match="ESS"):
        few.run(256)


@pytest.mark.parametrize("dim", [2, 50])
def test_ais_gaussian_log_z(dim):
    energy, truth = _gaussian_case(dim)
    hmc = HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=5, seed=2)
    r = AnnealedImportanceSampling(transition=hmc, reference=(np.zeros(dim), 4.0)).run(512)
    assert abs(r.log_z - truth) < 3 * r.log_z_se, (r.log_z, truth, r.log_z_se)


def test_ais_fixed_schedule_and_bad_input():
    hmc = HamiltonianMonteCarlo(MIXTURE, step_size=0.4, n_leapfrog_steps=5, seed=0)
    r = AnnealedImportanceSampling(transition=hmc, n_temperatures=200,
                                   reference=([0.0, 0.0], 16.0)).run(512)
    assert len(r.betas) == 200
    assert abs(r.log_z) < 3 * r.log_z_se
    with pytest.raises(ValueError, match="strictly increasing"):
        AnnealedImportanceSampling(MIXTURE, betas=[0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match="end at 1"):
        AnnealedImportanceSampling(MIXTURE, betas=[0.0, 0.5])
    with pytest.raises(TypeError, match="transition"):
        AnnealedImportanceSampling(MIXTURE, transition=MIXTURE)
    with pytest.raises(ValueError, match="reference"):
        AnnealedImportanceSampling(MIXTURE, reference=(np.zeros(3), 1.0)).run(10)
    with pytest.raises(ValueError, match="n_samples"):
        AnnealedImportanceSampling(MIXTURE).run(1)


def test_log_likelihood():
    import npebm

    energy = GaussianEnergy(np.zeros(2), np.eye(2))
    x = np.array([[0.0, 0.0], [1.0, 2.0]])
    ll = npebm.log_likelihood(energy, x, math.log(2 * math.pi))
    expected = -0.5 * (x ** 2).sum(axis=1) - math.log(2 * math.pi)
    assert np.allclose(ll, expected)
    with pytest.raises(ValueError, match="log_z"):
        npebm.log_likelihood(energy, x, float("nan"))


# ------------------------------------------------------- per-chain step-size factors

# Every step's factor code is checked on the vectorised path; compiled, the samplers
# whose temperatures ParallelTempering tunes (each compiled kernel costs the suite
# seconds to build).
@pytest.mark.parametrize("sampler_type,kw,compiled", [
    (LangevinDynamics, {}, False), (MALA, {}, False),
    (HamiltonianMonteCarlo, {"n_leapfrog_steps": 3}, False),
    (UnderdampedLangevin, {}, False), (UnderdampedLangevin, {"scheme": "OBABO"}, False),
    (MALA, {}, True), (HamiltonianMonteCarlo, {"n_leapfrog_steps": 3}, True)])
def test_a_chain_step_factor_is_a_step_size(sampler_type, kw, compiled):
    """ChainState.step_scale c gives chain i the step c_i η: the same chains (to
    rounding) as a sampler whose step size is c_i η.  Catches a factor applied to the
    step but not to the noise, MALA's proposal density or the O step of UL."""
    from npebm.random import key_from_seed
    from npebm.samplers import ChainState

    energy = MIXTURE if compiled else _ArrayGaussian()
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(6, 2))
    c = np.array([1.0, 0.5, 2.0, 1.0, 0.25, 1.5])
    extra = {"momentum": rng.normal(size=(6, 2))} if sampler_type is UnderdampedLangevin \
        else {}
    key = key_from_seed(3)

    def run(step, scale, rows):
        s = sampler_type(energy, step_size=step, dtype=np.float64, **kw)
        s.set_state(ChainState(x0[rows], np.zeros(len(rows), np.uint64), key, 0, rows[0],
                               {k: v[rows] for k, v in extra.items()}, step_scale=scale))
        return s.sample(n_steps=7, resume=True)

    together = run(0.1, c, np.arange(6))
    for i in range(6):
        alone = run(0.1 * c[i], None, np.arange(i, i + 1))
        assert np.allclose(together[i], alone[0], rtol=1e-9, atol=1e-12), (i, c[i])


def test_temperature_step_sizes_adapt():
    """Per-temperature dual averaging: each temperature's acceptance near the target,
    hot temperatures with larger steps than the target's."""
    hmc = HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, n_leapfrog_steps=3, seed=2)
    pt = ParallelTempering(hmc, n_temperatures=6)
    _, d = pt.sample(n_samples=16, n_steps=400, burn_in=16 + 32 + 64 + 128 + 256,
                     return_diagnostics=True)
    steps = d["temperature_step_size"]
    assert steps[1] > steps[-1] and np.all(steps > 0)
    # Dual averaging converges in the mean, not exactly: within 0.1 of 0.8 (with 16
    # ladders x 400 steps the per-temperature mean has an SE near 0.005).
    assert np.all(np.abs(d["temperature_acceptance"][1:] - 0.8) < 0.1), \
        d["temperature_acceptance"]
    fixed = ParallelTempering(HamiltonianMonteCarlo(MANY_WELL, step_size=0.1,
                                                    n_leapfrog_steps=3, seed=2),
                              n_temperatures=6, adapt_step_size=False)
    _, d0 = fixed.sample(n_samples=16, n_steps=50, burn_in=100, return_diagnostics=True)
    assert np.allclose(d0["temperature_step_size"], 0.1)
    with pytest.raises(ValueError, match="acceptance"):
        ParallelTempering(LangevinDynamics(MANY_WELL), adapt_step_size=True)


# ------------------------------------- exact properties (each caught a planted bug)

STANDARD = GaussianEnergy(np.zeros(2), np.eye(2))  # the reference itself: every swap taken


def test_beta_zero_is_an_exact_reference_draw():
    """After one step whose swap is always taken, the cold chain holds the β = 0 chain's
    fresh reference draw, not the (nearly frozen) start at 5."""
    n = 400
    hmc = HamiltonianMonteCarlo(STANDARD, step_size=1e-6, n_leapfrog_steps=1, seed=0)
    pt = ParallelTempering(hmc, betas=[0.0, 1.0], schedule="fixed")
    x = pt.sample(x=np.full((n, 2), 5.0), n_steps=1)
    assert np.abs(x.mean(axis=0)).max() < 5 / math.sqrt(n)
    assert np.abs(x.var(axis=0, ddof=1) - 1).max() < 5 * math.sqrt(2 / (n - 1))


def test_round_trips_and_swap_acceptance_are_counted_exactly():
    pt = ParallelTempering(HamiltonianMonteCarlo(STANDARD, step_size=0.3, seed=0),
                           betas=np.linspace(0, 1, 4), schedule="fixed")
    _, d = pt.sample(n_samples=10, n_steps=2, return_diagnostics=True)
    assert d["round_trips"].sum() == 0  # a round trip needs at least 2 (T - 1) steps
    assert np.array_equal(d["swap_acceptance"], np.ones(3))
    _, d = pt.sample(n_steps=40, resume=True, return_diagnostics=True)
    # Every swap taken: each replica goes 0 -> 3 -> 0 in 6 steps, deterministically.
    assert d["round_trips"].sum() > 0


def test_the_last_kept_state_is_the_final_state():
    t = 4
    pt = ParallelTempering(HamiltonianMonteCarlo(MIXTURE, step_size=0.3, seed=1),
                           n_temperatures=t, schedule="fixed")
    traj = pt.sample(n_samples=20, n_steps=5, return_trajectory=True)
    assert np.array_equal(traj[:, -1], pt.get_state()["x"][t - 1::t])


def test_log_z_standard_error_is_calibrated():
    """Over 20 seeds, Σ z² of (log Z − truth) / SE lies within the χ² bounds (scaled for
    an SE from 12 ladders, z ~ t with 11 degrees of freedom); the SE is the spread of
    the per-ladder estimates over √L."""
    from scipy import stats

    energy, truth = _gaussian_case(2)
    k, n_ladders, zs = 20, 12, []
    for seed in range(k):
        hmc = HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=5,
                                    seed=100 + seed)
        _, d = ParallelTempering(hmc, n_temperatures=5).sample(
            n_samples=n_ladders, n_steps=200, burn_in=100, return_diagnostics=True)
        ladder = d["ladder_log_z"]
        assert d["log_z_se"] == pytest.approx(ladder.std(ddof=1) / math.sqrt(n_ladders),
                                              rel=1e-12)
        zs.append((d["log_z"] - truth) / d["log_z_se"])
    s = float(np.sum(np.square(zs)))
    t_var = (n_ladders - 1) / (n_ladders - 3)
    assert stats.chi2.ppf(0.001, k) * t_var < s < stats.chi2.ppf(0.999, k) * t_var, zs


def test_dense_reference():
    from npebm.energies.tempered import GaussianReference

    cov = np.array([[2.0, 1.2, 0.3], [1.2, 1.5, -0.4], [0.3, -0.4, 0.8]])
    ref = GaussianReference(3, np.zeros(3), cov)
    assert ref.log_z == pytest.approx(
        1.5 * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(cov)[1], rel=1e-12)
    n = 200_000
    y = ref.transform(np.random.default_rng(0).standard_normal((n, 3)))
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    assert (np.abs(np.cov(y.T) - cov) < 5 * se).all()
    e, g = ref.energy_and_gradient(y[:5])
    prec = np.linalg.inv(cov)
    assert np.allclose(e, 0.5 * np.einsum("ij,jk,ik->i", y[:5], prec, y[:5]))
    assert np.allclose(g, y[:5] @ prec)


class _ArrayStandard(Energy):
    """N(0, I) as array code (no kernel to compile): the reference itself."""

    def energy(self, x):
        return 0.5 * (x * x).sum(axis=1)

    def gradient(self, x):
        return x.copy()


def test_a_swap_carries_the_momentum():
    pt = ParallelTempering(UnderdampedLangevin(_ArrayStandard(), step_size=1e-9, gamma=0.0,
                                               seed=3),
                           betas=[0.0, 1.0], schedule="fixed")
    pt.sample(n_samples=6, dim=2, n_steps=2)  # steps 0 (a swap) and 1 (none)
    before = pt.get_state()["momentum"].copy()
    pt.sample(n_steps=1, resume=True)  # step 2: even, the swap is taken
    after = pt.get_state()["momentum"]
    swapped = before.reshape(6, 2, 2)[:, ::-1].reshape(12, 2)
    assert np.allclose(after, swapped, atol=1e-6) and not np.allclose(before, swapped)


def test_beta_zero_ignores_the_target():
    from npebm.energies.tempered import GaussianReference, TemperedEnergy

    ref = GaussianReference(2)
    path = TemperedEnergy(STANDARD, ref, np.array([0.0, 0.25, 1.0]))
    x = np.array([[0.3, -1.0], [1.0, 2.0], [0.5, 0.5]])
    e = np.array([np.nan, 3.0, 4.0])
    g = np.array([[np.nan, np.nan], [1.0, 2.0], [3.0, 4.0]])
    e_ref, g_ref = ref.energy_and_gradient(x)
    et, gt = path.combine(e, g, e_ref, g_ref, np.float64)
    assert np.array_equal(et, [e_ref[0], 0.25 * 3.0 + 0.75 * e_ref[1], 4.0])
    assert np.array_equal(gt[0], g_ref[0]) and np.allclose(gt[1], 0.25 * g[1] + 0.75 * g_ref[1])
    assert np.array_equal(gt[2], g[2])


# ------------------------------------------------------------------ Dask shards

def _pt_for_shards(kind="hmc"):
    if kind == "nuts":
        from npebm.samplers import NUTS
        inner = NUTS(MANY_WELL, step_size=0.1, max_tree_depth=3, seed=8)
    else:
        inner = HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, n_leapfrog_steps=3, seed=8)
    return ParallelTempering(inner, n_temperatures=5, schedule="fixed", adapt_step_size=False)


@pytest.mark.parametrize("n_shards,kind", [(1, "hmc"), (3, "hmc"), (3, "nuts")])
def test_shards_are_bit_identical_to_one_process(n_shards, kind):
    """Shards split the ladders; samples, the state, log Z, swaps and moments are the
    single run's bits, and a resumed distributed run continues them (NUTS: with its own
    per-step fields, tree depth and the rest, at β = 1)."""
    from concurrent.futures import ThreadPoolExecutor

    import npebm.distributed as nd

    ref = _pt_for_shards(kind)
    want, want_d = ref.sample(n_samples=7, n_steps=12, burn_in=5, thin=2,
                              return_trajectory=True, return_diagnostics=True)
    if kind == "nuts":
        assert want_d["tree_depth"].shape == (6, 7) and want_d["tree_depth"].min() >= 1
    more = ref.sample(n_steps=6, resume=True)
    pt = _pt_for_shards(kind)
    with ThreadPoolExecutor(2) as pool:
        client = nd.FuturesExecutor(pool)
        got, got_d = nd.sample(pt, 7, 12, burn_in=5, thin=2, client=client,
                               n_shards=n_shards, return_trajectory=True,
                               return_diagnostics=True)
        assert np.array_equal(got, want)
        assert list(got_d) == list(want_d)
        for name in want_d:
            np.testing.assert_array_equal(got_d[name], want_d[name], err_msg=name)
        got_more = nd.sample(pt, None, 6, client=client, n_shards=n_shards, resume=True)
    assert np.array_equal(got_more, more)
    for name, value in ref.get_state().items():
        np.testing.assert_array_equal(pt.get_state()[name], value, err_msg=name)


def test_distributed_tuning_is_refused():
    import npebm.distributed as nd

    pt = ParallelTempering(HamiltonianMonteCarlo(MANY_WELL, step_size=0.1, seed=8),
                           n_temperatures=4)
    with pytest.raises(ValueError, match="one process"):
        nd.sample(pt, 4, 10, burn_in=10, client=nd.Executor())


def test_impossible_memory_is_refused_up_front():
    from npebm.samplers import InsufficientMemoryError

    pt = ParallelTempering(MALA(MIXTURE, step_size=0.3), n_temperatures=64)
    with pytest.raises(InsufficientMemoryError, match="n_samples"):
        pt.sample(n_samples=10 ** 9, n_steps=10)


def test_tempered_nuts_on_array_code_matches_the_compiled_run():
    """NUTS's array twin evaluates only the chains still building their trees: each
    must get its own β (catches: a tempered energy that took every chain's row, or the
    first rows' βs), and NUTS's fields of the β = 1 chains are recorded as on the
    compiled path."""
    from helpers import ArrayGaussian

    from npebm.energies import GaussianEnergy
    from npebm.samplers import NUTS

    gauss = GaussianEnergy([0.5, -1.0], [[1.0, 0.3], [0.3, 0.5]])
    runs = []
    for energy in (gauss, ArrayGaussian(gauss)):
        pt = ParallelTempering(NUTS(energy, step_size=0.3, max_tree_depth=3, seed=2),
                               n_temperatures=3, schedule="fixed", adapt_step_size=False)
        runs.append(pt.sample(dim=2, n_samples=4, n_steps=30, burn_in=2,
                              return_trajectory=True, return_diagnostics=True))
    (x, d), (x_array, d_array) = runs
    # The two paths' reference energies round differently (1 ulp), never a decision.
    np.testing.assert_allclose(x_array, x, rtol=1e-12, atol=1e-12)
    depth, n_leapfrog = d_array["tree_depth"], d_array["n_leapfrog"]
    assert depth.shape == n_leapfrog.shape == (30, 4)
    np.testing.assert_array_equal(depth, d["tree_depth"])
    np.testing.assert_array_equal(n_leapfrog, d["n_leapfrog"])
    assert depth.min() >= 1 and depth.max() <= 3
    assert np.all((2 ** depth - 1 <= n_leapfrog) & (n_leapfrog <= 2 ** (depth + 1) - 1))
