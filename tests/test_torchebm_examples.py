"""TorchEBM's documented sampler examples, ported to npebm and checked.

Each test follows an example from TorchEBM's documentation (soran-ghaderi/torchebm:
``README.md``, ``docs/examples/samplers/hmc.md``,
``docs/examples/samplers/langevin_dynamics.md``, ``docs/tutorials/samplers.md``,
``examples/samplers/langevin/advanced.py``) with the same energies, names and
parameters, more chains where a statistic needs them, and assertions: shapes, finite
values, the diagnostics record, and moments against exact values where the target (or,
for unadjusted Langevin, the chain's own law) is known in closed form.

Tolerances follow ``test_sampler_statistics.py``: the final states of independent
chains are independent draws, so each statistic has a known standard error under the
null, and every check uses the Bonferroni threshold ``_z(n_checks)`` for a family-wise
false-alarm rate ``ALPHA``.
"""
import math
from statistics import NormalDist

import numpy as np
import pytest

from npebm.energies import (
    DoubleWellEnergy,
    DoubleWellModel,
    GaussianEnergy,
    GaussianModel,
    HarmonicModel,
)
from npebm.schedulers import (
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    WarmupScheduler,
)
from npebm.samplers import MALA, BaseSampler, HamiltonianMonteCarlo, LangevinDynamics

ALPHA = 1e-4

# TorchEBM's 2-D example target (mean [1, -1], correlated covariance).
MEAN_2D = np.array([1.0, -1.0])
COV_2D = np.array([[1.0, 0.5], [0.5, 2.0]])


def _z(n_checks, alpha=ALPHA):
    """Two-sided normal threshold for ``n_checks`` simultaneous checks (Bonferroni)."""
    return NormalDist().inv_cdf(1.0 - alpha / (2.0 * n_checks))


def _assert_within(estimates, truths, ses, n_checks, what):
    estimates, truths, ses = (np.atleast_1d(np.asarray(a, dtype=np.float64))
                              for a in (estimates, truths, ses))
    z = np.abs(estimates - truths) / ses
    limit = _z(n_checks)
    assert np.all(z < limit), (
        f"{what}: |z| up to {z.max():.2f} (limit {limit:.2f} for {n_checks} checks)\n"
        f"estimates {estimates}\ntruths    {truths}\nSEs       {ses}"
    )


def _gaussian_checks(x, mean, cov):
    """Sample mean and covariance (ddof=1) of iid draws against N(mean, cov), with the
    exact SEs ``sqrt(cov_ii / n)`` and ``sqrt((cov_ij² + cov_ii cov_jj) / (n - 1))``."""
    x = np.asarray(x, dtype=np.float64)
    n, dim = x.shape
    s = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
    iu = np.triu_indices(dim)
    var = np.diag(cov)
    se_cov = np.sqrt((cov**2 + np.outer(var, var)) / (n - 1))
    return (np.concatenate([x.mean(0), s[iu]]), np.concatenate([mean, cov[iu]]),
            np.concatenate([np.sqrt(var / n), se_cov[iu]]))


def _assert_gaussian(x, mean, cov, what):
    est, truth, se = _gaussian_checks(x, mean, cov)
    _assert_within(est, truth, se, len(est), what)


def _ula_gaussian_law(mean, cov, x0, eta, noise_scale, decay, n_steps):
    """Exact law of unadjusted Langevin on N(mean, cov) after ``n_steps`` from ``x0``.

    x ← x - η(P(x - μ) + d x) + σ sqrt(2η) ξ, P = Σ⁻¹, is linear, x ← A x + ηPμ + noise
    with A = (1 - ηd) I - ηP, so from a fixed x0 the states are Gaussian with mean
    m ← A m + ηPμ and covariance C ← A C Aᵀ + 2ησ² I.
    """
    prec = np.linalg.inv(cov)
    dim = len(mean)
    a = (1.0 - eta * decay) * np.eye(dim) - eta * prec
    m, c = np.asarray(x0, dtype=np.float64), np.zeros((dim, dim))
    for _ in range(n_steps):
        m = a @ m + eta * prec @ mean
        c = a @ c @ a.T + 2.0 * eta * noise_scale**2 * np.eye(dim)
    return m, c


# ---------------------------------------------------------------------------- TorchEBM names

def test_torchebm_names_are_aliases():
    """``*Model`` energies and the ``model=`` / ``energy_function=`` keywords."""
    assert GaussianModel is GaussianEnergy and DoubleWellModel is DoubleWellEnergy
    energy = GaussianModel(MEAN_2D, COV_2D)
    runs = [
        HamiltonianMonteCarlo(energy, step_size=0.1, n_leapfrog_steps=5, seed=1),
        HamiltonianMonteCarlo(model=energy, step_size=0.1, n_leapfrog_steps=5, seed=1),
        HamiltonianMonteCarlo(energy_function=energy, step_size=0.1, n_leapfrog_steps=5,
                              seed=1),
    ]
    out = [s.sample(n_samples=8, n_steps=10) for s in runs]
    for s in runs:
        assert s.energy is energy
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    for cls in (LangevinDynamics, MALA):
        a = cls(energy, step_size=0.01, seed=2).sample(n_samples=4, n_steps=5)
        b = cls(model=energy, step_size=0.01, seed=2).sample(n_samples=4, n_steps=5)
        c = cls(energy_function=energy, step_size=0.01, seed=2).sample(n_samples=4, n_steps=5)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


# ------------------------------------------------------------------------------------- HMC

@pytest.mark.parametrize("mass", ["none", "diag", "dense"])
def test_hmc_gaussian_example(mass):
    """docs/examples/samplers/hmc.md: the 2-D Gaussian, with TorchEBM's defaults (ε = 0.1,
    L = 5), its custom diagonal mass [0.1, 1.0] (L = 10), and a dense mass — the target's
    precision, the ideal choice — each with the page's warm-up call first.

    Leapfrog angles per iteration are at most L ε ω_max ≈ 3.4 rad (diag mass, ω² from
    M⁻¹Σ⁻¹), i.e. |cos θ| <= 0.97, so a 300-step warm-up plus 100 steps leave < 1e-5 of
    the zero start, well below the SEs (~0.01) checked.
    """
    n = 5000
    energy_fn = GaussianModel(MEAN_2D, COV_2D)
    if mass == "none":
        sampler = HamiltonianMonteCarlo(energy_function=energy_fn, step_size=0.1,
                                        n_leapfrog_steps=5, seed=12)
    else:
        m = np.array([0.1, 1.0]) if mass == "diag" else np.linalg.inv(COV_2D)
        sampler = HamiltonianMonteCarlo(energy_function=energy_fn, step_size=0.1,
                                        n_leapfrog_steps=10, mass=m, seed=12)
    initial_state = np.zeros((n, 2))
    warm_up_samples = sampler.sample(x=initial_state, n_steps=300)
    samples = sampler.sample(x=warm_up_samples, n_steps=100)
    assert samples.shape == (n, 2) and samples.dtype == np.float64
    assert np.all(np.isfinite(samples))
    assert np.array_equal(initial_state, np.zeros((n, 2)))  # the input is not mutated
    _assert_gaussian(samples, MEAN_2D, COV_2D, f"HMC 2-D example, mass={mass}")


def test_hmc_diagnostics_example():
    """README: HMC on a 10-D standard Gaussian, ε = 0.1, L = 10 — 10 000 final samples,
    then a run with trajectory and diagnostics whose every field is checked against the
    trajectory it describes, and TorchEBM's stacked layout (k_steps, 4, n_samples, dim)."""
    dim = 10
    energy_fn = GaussianModel(np.zeros(dim), np.eye(dim))
    hmc_sampler = HamiltonianMonteCarlo(energy_function=energy_fn, step_size=0.1,
                                        n_leapfrog_steps=10, seed=13)
    # x = None starts from N(0, I), the target itself; 100 steps (the README runs 500)
    # are plenty to show the chains stay there.
    final_x = hmc_sampler.sample(dim=dim, n_steps=100, n_samples=10_000)
    assert final_x.shape == (10_000, dim)
    # Moments of N(0, I): means and variances (diagonal of the covariance only).
    n = final_x.shape[0]
    checks = 2 * dim
    _assert_within(np.r_[final_x.mean(0), final_x.var(0, ddof=1)],
                   np.r_[np.zeros(dim), np.ones(dim)],
                   np.r_[np.full(dim, 1 / math.sqrt(n)), np.full(dim, math.sqrt(2 / (n - 1)))],
                   checks, "README HMC, 10-D standard Gaussian")

    n_samples, n_steps = 250, 500
    trajectory, diagnostics = hmc_sampler.sample(
        n_samples=n_samples, n_steps=n_steps, dim=dim,
        return_trajectory=True, return_diagnostics=True,
    )
    assert trajectory.shape == (n_samples, n_steps, dim)
    assert np.all(np.isfinite(trajectory))
    d = diagnostics
    assert d.energy.shape == (n_steps, n_samples)
    assert d.acceptance_rate.shape == (n_steps,)
    assert d.mean.shape == d.var.shape == (n_steps, dim)
    assert d.grad_norm.shape == (n_steps, n_samples)
    assert d.step_size.shape == (n_steps,)
    assert d.divergences.shape == (n_samples,)
    assert np.issubdtype(d.divergences.dtype, np.integer) and np.all(d.divergences == 0)
    assert d["energy"] is d.energy
    # Every field describes the kept states.
    flat = trajectory.transpose(1, 0, 2).reshape(-1, dim)
    e, g = energy_fn.energy_and_gradient(flat)
    np.testing.assert_allclose(d.energy, e.reshape(n_steps, n_samples), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.grad_norm, np.linalg.norm(g, axis=1).reshape(n_steps, n_samples),
                               rtol=1e-12)
    np.testing.assert_allclose(d.mean, trajectory.mean(axis=0), rtol=1e-10, atol=1e-12)
    # Either ddof: the two differ by a factor n/(n - 1).
    np.testing.assert_allclose(d.var, trajectory.var(axis=0), rtol=1.5 / n_samples)
    np.testing.assert_array_equal(d.step_size, np.full(n_steps, 0.1))
    # Acceptance: a fraction of chains, so a multiple of 1/n_samples in [0, 1].
    rate = d.acceptance_rate
    assert np.all((rate >= 0) & (rate <= 1))
    np.testing.assert_allclose(rate * n_samples, np.round(rate * n_samples), atol=1e-9)
    assert 0.0 < rate.mean() < 1.0
    # TorchEBM's layout and its "acceptance at the last step" idiom.
    stacked = d.stacked()
    assert stacked.shape == (n_steps, 4, n_samples, dim)
    mean_values, variance_values = stacked[:, 0], stacked[:, 1]
    energy_values, acceptance_rates = stacked[:, 2], stacked[:, 3]
    np.testing.assert_allclose(mean_values[:, 0], d.mean)
    np.testing.assert_allclose(variance_values[:, 0], d.var)
    np.testing.assert_allclose(energy_values[..., 0], d.energy)
    assert acceptance_rates[-1].mean() == pytest.approx(rate[-1])

    # "Sample from a custom initialization".
    x_init = np.random.default_rng(0).standard_normal((n_samples, dim)).astype(np.float32)
    samples = hmc_sampler.sample(x=x_init, n_steps=100)
    assert samples.shape == (n_samples, dim)


def test_hmc_acceptance_falls_as_step_size_grows():
    """docs/examples/samplers/hmc.md: "if the rate is too low, the step size should be
    decreased".  With one leapfrog step the expected acceptance on a Gaussian falls
    monotonically in ε; chains start from the target (x = None draws N(0, I)), so each
    step's acceptance count is Binomial(n, a) and the mean over kept steps has SE at most
    sqrt(ā(1 - ā)/n) (an average of correlated rates has no larger variance than one).

    With more leapfrog steps it need not fall: a trajectory that ends half a period away
    conserves H exactly.  ε = 1, L = 3 on N(μ, I) turns every leapfrog step by π/3, so one
    iteration maps x to 2μ - x and accepts every proposal — checked too, as an exact
    property of the integrator.
    """
    dim, n = 10, 4000
    energy_fn = GaussianModel(np.zeros(dim), np.eye(dim))
    step_sizes = [0.4, 0.8, 1.2, 1.6]
    rates = []
    for eps in step_sizes:
        sampler = HamiltonianMonteCarlo(energy_fn, step_size=eps, n_leapfrog_steps=1, seed=14)
        _, diag = sampler.sample(dim=dim, n_samples=n, n_steps=20, return_diagnostics=True)
        assert np.all(diag.step_size == eps)
        rates.append(float(diag.acceptance_rate.mean()))
    rates = np.array(rates)
    assert np.all((rates > 0) & (rates < 1)), rates
    se = np.sqrt(rates * (1 - rates) / n)
    drops = rates[:-1] - rates[1:]
    se_drop = np.sqrt(se[:-1] ** 2 + se[1:] ** 2)
    assert np.all(drops > _z(len(drops)) * se_drop), (rates, se)

    mu = np.array([1.0, -1.0, 0.5])
    x0 = np.random.default_rng(1).standard_normal((500, 3))
    sampler = HamiltonianMonteCarlo(GaussianModel(mu, np.eye(3)), step_size=1.0,
                                    n_leapfrog_steps=3, seed=15)
    x1, diag = sampler.sample(x=x0, n_steps=1, return_diagnostics=True)
    assert diag.acceptance_rate[0] == 1.0
    np.testing.assert_allclose(x1, 2 * mu - x0, atol=1e-12)


def test_hmc_double_well_tutorial_example():
    """docs/tutorials/samplers.md: HMC on ``DoubleWellModel()`` (h = 2), ε = 0.1, L = 10,
    from N(0, I) in 2-D for 500 steps.  The energy is a sum over coordinates, so the 2n
    coordinates of the final states are iid draws of the 1-D law exp(-h (x² - 1)²):
    mean 0, P(x > 0) = 1/2, and E[x²], P(|x| < 1/2) from quadrature."""
    n, h = 4000, 2.0
    model = DoubleWellModel()
    hmc_sampler = HamiltonianMonteCarlo(model=model, step_size=0.1, n_leapfrog_steps=10,
                                        seed=16)
    x0 = np.random.default_rng(2).standard_normal((n, 2))
    samples, diag = hmc_sampler.sample(x=x0, n_steps=500, return_diagnostics=True)
    assert samples.shape == (n, 2) and np.all(np.isfinite(samples))
    assert 0.0 < diag.acceptance_rate.mean() < 1.0
    x = samples.ravel()
    grid = np.linspace(-4.0, 4.0, 400_001)
    w = np.exp(-h * (grid**2 - 1.0) ** 2)
    w /= np.trapezoid(w, grid)
    m2, m4 = (np.trapezoid(grid**k * w, grid) for k in (2, 4))
    p_mid = np.trapezoid((np.abs(grid) < 0.5) * w, grid)
    m = x.size
    _assert_within(
        [x.mean(), np.mean(x > 0), np.mean(x**2), np.mean(np.abs(x) < 0.5)],
        [0.0, 0.5, m2, p_mid],
        [math.sqrt(m2 / m), math.sqrt(0.25 / m), math.sqrt((m4 - m2**2) / m),
         math.sqrt(p_mid * (1 - p_mid) / m)],
        4, "HMC on DoubleWellModel()",
    )


# -------------------------------------------------------------------------------- Langevin

@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_langevin_gaussian_example_exact_law(decay):
    """docs/examples/samplers/langevin_dynamics.md, basic example: the 2-D Gaussian,
    step 0.01, noise 0.1, all chains from 0, 100 steps.  Unadjusted Langevin on a Gaussian
    is linear, so the states after 100 steps are exactly N(m, C) with m and C from the
    recursion in ``_ula_gaussian_law`` (far from stationary here).  ``decay`` enters A and
    so shrinks C by a predicted amount, resolved by many SE below."""
    n, eta, sigma, n_steps = 20_000, 0.01, 0.1, 100
    energy_fn = GaussianModel(MEAN_2D, COV_2D)
    sampler = LangevinDynamics(energy_function=energy_fn, step_size=eta, noise_scale=sigma,
                               decay=decay, seed=17)
    samples = sampler.sample(x=np.zeros((n, 2)), n_steps=n_steps, n_samples=n)
    assert samples.shape == (n, 2)
    m, c = _ula_gaussian_law(MEAN_2D, COV_2D, np.zeros(2), eta, sigma, decay, n_steps)
    _assert_gaussian(samples, m, c, f"Langevin 2-D example, decay={decay}")
    if decay:
        m0, c0 = _ula_gaussian_law(MEAN_2D, COV_2D, np.zeros(2), eta, sigma, 0.0, n_steps)
        _, _, se = _gaussian_checks(samples, m, c)
        # Ignoring decay would be caught: the laws differ by many SE in every variance.
        assert np.all(np.abs(np.diag(c - c0)) > _z(5) * se[[2, 4]])
        assert np.all(np.diag(c) < np.diag(c0))


def test_harmonic_diagnostics_example():
    """docs/examples/samplers/langevin_dynamics.md, "Working with Diagnostics":
    ``HarmonicEnergy()``, step 0.01, noise 0.1, chains from x = 2, 50 steps.  The law at
    step k is N(2 (1 - η)^k, 2ησ² Σ_{j<k} (1 - η)^{2j}); the per-step mean and variance
    across chains in the diagnostics must follow it within MCSE (SEs sd/sqrt(n) and
    var sqrt(2/(n - 1)); the difference between ddof 0 and 1 is 1/sqrt(2n) SE)."""
    n, eta, sigma, n_steps, thin = 4000, 0.01, 0.1, 50, 5
    sampler = LangevinDynamics(energy_function=HarmonicModel(), step_size=eta,
                               noise_scale=sigma, seed=18)
    initial_state = np.full((n, 1), 2.0)
    samples, diag = sampler.sample(x=initial_state, n_steps=n_steps, n_samples=n, thin=thin,
                                   return_diagnostics=True)
    assert samples.shape == (n, 1)
    n_kept = n_steps // thin
    steps = np.arange(thin, n_steps + 1, thin)
    mean = 2.0 * (1 - eta) ** steps
    var = np.array([2 * eta * sigma**2 * np.sum((1 - eta) ** (2 * np.arange(k)))
                    for k in steps])
    assert diag.mean.shape == diag.var.shape == (n_kept, 1)
    _assert_within(np.r_[diag.mean[:, 0], diag.var[:, 0]], np.r_[mean, var],
                   np.r_[np.sqrt(var / n), var * math.sqrt(2 / (n - 1))], 2 * n_kept,
                   "Langevin on HarmonicModel, per-step diagnostics")
    np.testing.assert_array_equal(diag.acceptance_rate, np.ones(n_kept))  # unadjusted
    np.testing.assert_array_equal(diag.step_size, np.full(n_kept, eta))
    np.testing.assert_allclose(diag.energy[-1], 0.5 * samples[:, 0] ** 2, rtol=1e-12)
    assert np.all(diag.divergences == 0)


def _ula_well_law(h, eta, sigma, decay, lo, hi):
    """Stationary law of 1-D ULA in the right well of E = h (x² - 1)², on a grid.

    The kernel x → N(x - η(E'(x) + d x), 2ησ²) is discretised on a grid finer than its
    width (Nyström's method: spectrally accurate for a Gaussian kernel) and raised to a
    power far beyond the chain's relaxation time.  Chains cannot cross the barrier at
    this temperature (h/σ² = 200), so each well holds its own copy of this law, and x²
    has the same law in both wells by symmetry.
    """
    s = math.sqrt(2 * eta) * sigma
    grid = np.arange(lo, hi, s / 4)
    drift = grid - eta * (4 * h * grid * (grid**2 - 1) + decay * grid)
    k = np.exp(-0.5 * ((grid[None, :] - drift[:, None]) / s) ** 2)
    k /= k.sum(axis=1, keepdims=True)
    for _ in range(14):  # k^16384: the relaxation time is 1/(η E''(1)) ~ 60 steps
        k = k @ k
    return grid, k[len(grid) // 2]


def test_langevin_double_well_decay_example():
    """examples/samplers/langevin/advanced.py: ``DoubleWellEnergy(barrier_height=2.0)``,
    step 0.001, noise 0.1, decay 0.1 "for stability", 1000 steps.  Weight decay pulls the
    chains toward 0: E[x²] (the spread about 0) must match the exact law of the chain
    (``_ula_well_law``) with and without decay, and shrink by the predicted ~1 % (~25 SE).
    The spread within a well, Var|x|, is checked too (it tests the noise scale; decay
    barely changes it, as the well it shifts to is slightly flatter).  Chains start in the
    wells (±1): TorchEBM's single chain from 0 would spend hundreds of steps on the
    barrier top, and 1000 steps are 16 relaxation times of a well."""
    n, h, eta, sigma, n_steps = 10_000, 2.0, 0.001, 0.1, 1000
    energy_fn = DoubleWellEnergy(barrier_height=h)
    rng = np.random.default_rng(3)
    x0 = rng.choice([-1.0, 1.0], size=(n, 1)) + 0.02 * rng.standard_normal((n, 1))
    est, truth, se = [], [], []
    for decay in (0.1, 0.0):
        sampler = LangevinDynamics(energy_function=energy_fn, step_size=eta,
                                   noise_scale=sigma, decay=decay, seed=19)
        samples = sampler.sample(x=x0, n_steps=n_steps)
        assert samples.shape == (n, 1) and np.all(np.isfinite(samples))
        grid, p = _ula_well_law(h, eta, sigma, decay, 0.8, 1.2)
        a = np.abs(samples[:, 0])
        # E[x²], and E[(|x| - μ)²] about the exact μ = E|x| (a plain mean, SE from the law).
        mu = p @ grid
        for f in (lambda t: t**2, lambda t: (t - mu) ** 2):
            m1, m2 = p @ f(grid), p @ f(grid) ** 2
            est.append(f(a).mean())
            truth.append(m1)
            se.append(math.sqrt((m2 - m1**2) / n))
    _assert_within(est, truth, se, 5, "ULA on the double well, with and without decay")
    # The fifth check: decay shrinks E[x²], by more than the noise.
    assert est[0] < est[2]
    assert truth[2] - truth[0] > _z(5) * math.hypot(se[0], se[2])


# ------------------------------------------------------------------------------ schedulers

def _tutorial_warmup():
    scheduler_linear = LinearScheduler(initial_value=0.05, final_value=0.03, total_steps=100)
    return WarmupScheduler(main_scheduler=scheduler_linear, warmup_steps=10,
                           warmup_init_factor=0.01)


@pytest.mark.parametrize("thin", [1, 7])
def test_warmup_scheduler_example(thin):
    """docs/tutorials/samplers.md, "Sampler Visualizations": a warmed-up linear step-size
    schedule for Langevin on ``DoubleWellModel(barrier_height=5.0)`` from (-2, 0).  The
    recorded step size is the schedule's value at each kept step; a new call starts the
    schedule again, and ``resume=True`` carries it on."""
    model = DoubleWellModel(barrier_height=5.0)
    scheduler = _tutorial_warmup()
    sampler = LangevinDynamics(model=model, step_size=scheduler)
    initial_point = np.array([[-2.0, 0.0]])
    n_steps = 1000
    trajectory, diag = sampler.sample(x=initial_point, dim=2, n_steps=n_steps, thin=thin,
                                      return_trajectory=True, return_diagnostics=True)
    n_kept = n_steps // thin
    assert trajectory.shape == (1, n_kept, 2)
    assert np.all(np.isfinite(trajectory))
    values = _tutorial_warmup().values(2 * n_steps)
    kept = np.arange(thin - 1, n_kept * thin, thin)  # step i is kept when (i + 1) % thin == 0
    np.testing.assert_allclose(diag.step_size, values[kept], rtol=1e-15)
    assert diag.step_size[0] < 0.05 and diag.step_size[-1] == pytest.approx(0.03)
    _, again = sampler.sample(x=initial_point, n_steps=n_steps, thin=thin,
                              return_diagnostics=True)
    np.testing.assert_allclose(again.step_size, diag.step_size, rtol=1e-15)
    _, resumed = sampler.sample(n_steps=n_steps, thin=thin, resume=True,
                                return_diagnostics=True)
    np.testing.assert_allclose(resumed.step_size, values[n_steps + kept], rtol=1e-15)


@pytest.mark.parametrize("cls", [MALA, HamiltonianMonteCarlo])
def test_exponential_decay_step_size(cls):
    """A decaying step size for the MH samplers is recorded step by step."""
    schedule = ExponentialDecayScheduler(start_value=0.3, decay_rate=0.97, min_value=0.05)
    sampler = cls(GaussianModel(MEAN_2D, COV_2D), step_size=schedule, seed=20)
    x, diag = sampler.sample(n_samples=64, n_steps=80, thin=4, return_diagnostics=True)
    assert x.shape == (64, 2) and np.all(np.isfinite(x))
    ref = ExponentialDecayScheduler(start_value=0.3, decay_rate=0.97, min_value=0.05)
    np.testing.assert_allclose(diag.step_size, ref.values(80)[3::4], rtol=1e-15)
    assert np.all((diag.acceptance_rate >= 0) & (diag.acceptance_rate <= 1))


def _ula_variance_path(eta, sigma, v0=1.0):
    """Variance of ULA on N(0, 1) after steps with step sizes ``eta`` and noise ``sigma``:
    v ← (1 - η_k)² v + 2 η_k σ_k², exactly."""
    v = v0
    for e, s in zip(eta, sigma):
        v = (1.0 - e) ** 2 * v + 2.0 * e * s**2
    return v


def test_scheduled_langevin_follows_its_schedule():
    """docs/tutorials/samplers.md, "Dynamic Parameter Scheduling": cosine-annealed step
    size and noise scale.  On N(0, 1) from N(0, 1) the final variance is known exactly
    from the schedules' values at each step (``_ula_variance_path``) and is checked within
    MCSE.  The schedules were chosen so that the chain remembers their path: either
    parameter frozen at its start, or both frozen at their start or end values, would
    miss by 24 to 700 SE — so the check shows both schedules drive the dynamics."""
    n, n_steps = 20_000, 100

    def schedules():
        return (CosineScheduler(start_value=0.2, end_value=0.02, n_steps=n_steps),
                CosineScheduler(start_value=1.0, end_value=0.3, n_steps=n_steps))

    step_size_scheduler, noise_scheduler = schedules()
    sampler = LangevinDynamics(GaussianModel([0.0], [[1.0]]), step_size=step_size_scheduler,
                               noise_scale=noise_scheduler, seed=21)
    x = sampler.sample(n_samples=n, n_steps=n_steps)[:, 0]
    eta, sig = (sch.values(n_steps) for sch in schedules())
    v = _ula_variance_path(eta, sig)
    se = v * math.sqrt(2 / (n - 1))
    _assert_within([x.mean(), x.var(ddof=1)], [0.0, v], [math.sqrt(v / n), se], 2,
                   "Langevin with cosine schedules")
    const = np.ones(n_steps)
    for alt_eta, alt_sig in ((eta[0] * const, sig[0] * const), (eta[-1] * const, sig[-1] * const),
                             (eta[0] * const, sig), (eta, sig[0] * const)):
        assert abs(_ula_variance_path(alt_eta, alt_sig) - v) > _z(2) * se


# ---------------------------------------------------------------------------- custom sampler

class SimpleLangevin(BaseSampler):
    """docs/tutorials/samplers.md, "Example: Simplified Langevin Dynamics", in NumPy."""

    def __init__(self, model, step_size=0.01, noise_scale=1.0, dtype=np.float64, seed=None):
        super().__init__(model=model, dtype=dtype)
        if not hasattr(step_size, "values"):
            step_size = ConstantScheduler(step_size)
        self.register_scheduler("step_size", step_size)
        self.register_scheduler("noise_scale", ConstantScheduler(noise_scale))
        self.rng = np.random.default_rng(seed)

    def langevin_step(self, x):
        step_size = self.get_scheduled_value("step_size")
        noise_scale = self.get_scheduled_value("noise_scale")
        gradient = self.energy.gradient(x)
        noise = self.rng.standard_normal(x.shape)
        return x - step_size * gradient + math.sqrt(2.0 * step_size) * noise_scale * noise

    def sample(self, x=None, dim=10, n_steps=100, n_samples=1, thin=1,
               return_trajectory=False, return_diagnostics=False):
        self.reset_schedulers()
        if x is None:
            x = self.rng.standard_normal((n_samples, dim)).astype(self.dtype)
        else:
            x = np.asarray(x, dtype=self.dtype)
        if return_trajectory:
            trajectory = np.empty((x.shape[0], n_steps, x.shape[1]), dtype=self.dtype)
        for i in range(n_steps):
            self.step_schedulers()
            x = self.langevin_step(x).astype(self.dtype)
            if return_trajectory:
                trajectory[:, i, :] = x
        return trajectory if return_trajectory else x


def test_custom_sampler_like_torchebm_docs():
    """A ``BaseSampler`` subclass written as in TorchEBM's tutorial runs with the scheduler
    API and samples the exact ULA law: on N(μ, Σ) with step η its stationary law is
    N(μ, S), S = V diag(λ / (1 - η/(2λ))) Vᵀ for Σ = V diag(λ) Vᵀ (the fixed point of
    S = A S Aᵀ + 2ηI, A = I - ηΣ⁻¹).  1 - η/λ_max = 0.977 per step, so 600 steps leave
    < 1e-6 of the start."""
    eta, n = 0.05, 10_000
    model = GaussianModel(MEAN_2D, COV_2D)
    sampler = SimpleLangevin(model=model, step_size=eta, seed=22)
    assert sampler.energy is model and sampler.device == "cpu"
    assert np.dtype(sampler.dtype) == np.float64
    assert sampler.get_scheduled_value("step_size") == eta
    samples = sampler.sample(dim=2, n_steps=600, n_samples=n)
    assert samples.shape == (n, 2) and samples.dtype == np.float64
    lam, v = np.linalg.eigh(COV_2D)
    s = (v * (lam / (1 - eta / (2 * lam)))) @ v.T
    _assert_gaussian(samples, MEAN_2D, s, "custom SimpleLangevin sampler")
    traj = sampler.sample(x=samples[:5], n_steps=3, return_trajectory=True)
    assert traj.shape == (5, 3, 2)


def test_custom_sampler_scheduler_api():
    """register_scheduler / get_scheduled_value / step_schedulers / reset_schedulers, and
    the ``energy_function=`` alias, on a bare ``BaseSampler``."""
    model = GaussianModel(MEAN_2D, COV_2D)
    sampler = BaseSampler(energy_function=model)
    assert sampler.energy is model
    sampler.register_scheduler("step_size", ExponentialDecayScheduler(0.1, 0.5))
    sampler.register_scheduler("my_parameter", LinearScheduler(1.0, 0.0, 4))
    assert sampler.get_scheduled_value("step_size") == pytest.approx(0.1)
    assert sampler.get_scheduled_value("my_parameter") == pytest.approx(1.0)
    values = sampler.step_schedulers()
    assert values == {"step_size": pytest.approx(0.05), "my_parameter": pytest.approx(0.75)}
    sampler.step_schedulers()
    assert sampler.get_scheduled_value("step_size") == pytest.approx(0.025)
    sampler.reset_schedulers()
    assert sampler.get_scheduled_value("step_size") == pytest.approx(0.1)
    assert sampler.get_scheduled_value("my_parameter") == pytest.approx(1.0)
    custom = SimpleLangevin(model, step_size=ExponentialDecayScheduler(0.02, 0.99), seed=1)
    custom.sample(dim=2, n_steps=10, n_samples=3)
    assert custom.get_scheduled_value("step_size") == pytest.approx(0.02 * 0.99**10)
