"""Tests of npebm.datasets: shapes, seeding, argument checks and each generator's geometry.

Geometry is checked exactly with ``noise=0`` where the generator allows it; statistical
checks use bounds derived from the sampling distribution (6 standard errors, or exact
floor/ceil counts where the split of ``n`` is stratified), with fixed seeds.
"""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from npebm import datasets
from npebm.datasets import (
    make_checkerboard,
    make_circles,
    make_eight_gaussians,
    make_gaussian_mixture,
    make_pinwheel,
    make_swiss_roll,
    make_two_moons,
)

GENERATORS = [
    make_gaussian_mixture,
    make_eight_gaussians,
    make_two_moons,
    make_swiss_roll,
    make_circles,
    make_checkerboard,
    make_pinwheel,
]
IDS = [f.__name__ for f in GENERATORS]
TWO_PI = 2.0 * np.pi


def assert_balanced(labels, k, n):
    """Stratified split: k groups of n // k or n // k + 1 points."""
    counts = np.bincount(labels, minlength=k)
    assert len(counts) == k
    assert counts.sum() == n
    assert set(counts.tolist()) <= {n // k, n // k + 1}


def nearest(points, centres):
    d = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
    return d.argmin(axis=1), d.min(axis=1)


def _ring(k, r):
    theta = TWO_PI * np.arange(k) / k
    return r * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def within_6se(values, mean, sd):
    """|sample mean - mean| within 6 standard errors."""
    values = np.asarray(values)
    return abs(values.mean() - mean) <= 6.0 * sd / np.sqrt(values.size)


# -- common surface --------------------------------------------------------------------

def test_all_lists_the_generators():
    assert sorted(datasets.__all__) == sorted(IDS)


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 17, 100, 1001])
def test_shape_dtype_finite(make, n):
    x = make(n, seed=0)
    assert isinstance(x, np.ndarray)
    assert x.shape == (n, 2)
    assert x.dtype == np.float64
    assert np.isfinite(x).all()


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
def test_numpy_integer_n_and_positional_noise(make):
    x = make(np.int64(12), 0.1, seed=3)
    assert x.shape == (12, 2)
    np.testing.assert_array_equal(x, make(12, noise=0.1, seed=3))


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
def test_same_seed_same_array_different_seed_different(make):
    a = make(64, seed=11)
    np.testing.assert_array_equal(a, make(64, seed=11))
    assert not np.array_equal(a, make(64, seed=12))
    # A SeedSequence is the same seed as its int.
    np.testing.assert_array_equal(a, make(64, seed=np.random.SeedSequence(11)))
    # A Generator is used (and advanced), not copied.
    g = np.random.default_rng(11)
    np.testing.assert_array_equal(a, make(64, seed=g))
    assert not np.array_equal(a, make(64, seed=g))


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
def test_seed_none_draws_fresh_entropy(make):
    assert not np.array_equal(make(64, seed=None), make(64, seed=None))


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
def test_global_numpy_rng_untouched(make):
    np.random.seed(1234)
    before = np.random.get_state()
    make(50, seed=None)
    make(50, seed=7)
    make(50, seed=np.random.default_rng(7))
    after = np.random.get_state()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
def test_noise_is_isotropic_gaussian_sd_in_output_units(make):
    # For one seed the noise-free part is shared and the noise is one standard-normal
    # draw scaled by ``noise``.
    n = 4000
    x0 = make(n, noise=0.0, seed=5)
    z1 = (make(n, noise=0.1, seed=5) - x0) / 0.1
    z3 = (make(n, noise=0.3, seed=5) - x0) / 0.3
    np.testing.assert_allclose(z1, z3, rtol=1e-6, atol=1e-6)
    p_tail = 0.04550026389635842                     # P(|z| > 2) for a standard normal
    for col in z1.T:
        assert within_6se(col, 0.0, 1.0)
        assert within_6se(col ** 2, 1.0, np.sqrt(2.0))
        assert within_6se(np.abs(col) > 2.0, p_tail, np.sqrt(p_tail * (1 - p_tail)))
    assert abs(np.corrcoef(z1.T)[0, 1]) <= 6.0 / np.sqrt(n)


def test_only_numpy_is_imported():
    code = ("import sys, npebm.datasets as d; d.make_pinwheel(5, seed=0); "
            "print(','.join(m for m in ('numba', 'scipy', 'torch', 'sklearn', 'matplotlib')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


@given(make=st.sampled_from(GENERATORS), n=st.integers(1, 300),
       seed=st.integers(0, 2 ** 63 - 1), noise=st.floats(0.0, 1.0))
def test_property_shape_and_determinism(make, n, seed, noise):
    x = make(n, noise, seed=seed)
    assert x.shape == (n, 2) and x.dtype == np.float64 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, make(n, noise, seed=seed))


# -- argument checks -------------------------------------------------------------------

@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
@pytest.mark.parametrize("n, exc", [
    (0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError),
    ("3", TypeError), (None, TypeError),
])
def test_bad_n(make, n, exc):
    with pytest.raises(exc, match=r"^n must"):
        make(n, seed=0)


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
@pytest.mark.parametrize("noise, exc", [
    (-0.1, ValueError), (np.nan, ValueError), (np.inf, ValueError), ("0.1", TypeError),
    (None, TypeError), (False, TypeError),
])
def test_bad_noise(make, noise, exc):
    with pytest.raises(exc, match=r"^noise must"):
        make(10, noise, seed=0)


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
@pytest.mark.parametrize("seed, exc", [
    (-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError),
])
def test_bad_seed(make, seed, exc):
    with pytest.raises(exc, match=r"^seed must"):
        make(10, seed=seed)


@pytest.mark.parametrize("make", GENERATORS, ids=IDS)
def test_checks_run_before_any_draw(make):
    g = np.random.default_rng(0)
    state = g.bit_generator.state
    with pytest.raises(ValueError, match="noise"):
        make(10, noise=-1.0, seed=g)
    assert g.bit_generator.state == state


@pytest.mark.parametrize("make, kwargs, exc, name", [
    (make_gaussian_mixture, {"n_components": 0}, ValueError, "n_components"),
    (make_gaussian_mixture, {"n_components": 2.5}, TypeError, "n_components"),
    (make_gaussian_mixture, {"radius": 0.0}, ValueError, "radius"),
    (make_gaussian_mixture, {"radius": -1.0}, ValueError, "radius"),
    (make_eight_gaussians, {"radius": np.inf}, ValueError, "radius"),
    (make_swiss_roll, {"arclength": 0.0}, ValueError, "arclength"),
    (make_swiss_roll, {"arclength": "3"}, TypeError, "arclength"),
    (make_circles, {"radius": -2.0}, ValueError, "radius"),
    (make_circles, {"factor": 0.0}, ValueError, "factor"),
    (make_circles, {"factor": 1.0}, ValueError, "factor"),
    (make_circles, {"factor": 1.5}, ValueError, "factor"),
    (make_checkerboard, {"range_limit": 0.0}, ValueError, "range_limit"),
    (make_checkerboard, {"range_limit": np.nan}, ValueError, "range_limit"),
    (make_pinwheel, {"n_arms": 0}, ValueError, "n_arms"),
    (make_pinwheel, {"n_arms": 5.0}, TypeError, "n_arms"),
    (make_pinwheel, {"radial_scale": 0.0}, ValueError, "radial_scale"),
    (make_pinwheel, {"angular_scale": -0.1}, ValueError, "angular_scale"),
    (make_pinwheel, {"spiral_scale": np.inf}, ValueError, "spiral_scale"),
    (make_pinwheel, {"spiral_scale": None}, TypeError, "spiral_scale"),
])
def test_bad_shape_arguments(make, kwargs, exc, name):
    with pytest.raises(exc, match=f"^{name} must"):
        make(10, seed=0, **kwargs)


# -- geometry --------------------------------------------------------------------------

EIGHT_UNIT = np.array([
    (1, 0), (-1, 0), (0, 1), (0, -1),
    (np.sqrt(0.5), np.sqrt(0.5)), (np.sqrt(0.5), -np.sqrt(0.5)),
    (-np.sqrt(0.5), np.sqrt(0.5)), (-np.sqrt(0.5), -np.sqrt(0.5)),
])


@pytest.mark.parametrize("n", [1, 7, 8, 9, 803])
def test_eight_gaussians_noise_free_points_are_the_centres(n):
    centres = 2.0 * EIGHT_UNIT
    x = make_eight_gaussians(n, noise=0.0, seed=n)
    label, dist = nearest(x, centres)
    np.testing.assert_allclose(dist, 0.0, atol=1e-12)
    assert_balanced(label, 8, n)


def test_eight_gaussians_cluster_at_the_centres_with_sd_noise():
    n, noise = 8000, 0.02
    centres = 2.0 * EIGHT_UNIT
    x = make_eight_gaussians(n, noise=noise, seed=1)
    label, dist = nearest(x, centres)
    # Centres are 4 sin(pi / 8) = 1.53 apart, i.e. 76 sd: the nearest centre is the one
    # drawn, and a 2-D Gaussian exceeds 6 sd with probability exp(-18).
    assert dist.max() <= 6.0 * noise
    assert_balanced(label, 8, n)
    dev = (x - centres[label]) / noise
    for col in dev.T:
        assert within_6se(col ** 2, 1.0, np.sqrt(2.0))


def test_eight_gaussians_radius_scales_the_centres():
    x = make_eight_gaussians(80, noise=0.0, radius=3.5, seed=0)
    _, dist = nearest(x, 3.5 * EIGHT_UNIT)
    np.testing.assert_allclose(dist, 0.0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("n", [1, 5, 9, 100])
def test_gaussian_mixture_centres_on_circle(k, n):
    centres = 1.5 * np.stack([np.cos(TWO_PI * np.arange(k) / k),
                              np.sin(TWO_PI * np.arange(k) / k)], axis=1)
    x = make_gaussian_mixture(n, noise=0.0, n_components=k, radius=1.5, seed=k * n)
    label, dist = nearest(x, centres)
    np.testing.assert_allclose(dist, 0.0, atol=1e-12)
    assert_balanced(label, k, n)


def test_gaussian_mixture_leftover_points_go_to_random_components():
    # With n < k the components that get a point must vary with the seed, not always be
    # the first ones.  P(a centre never chosen in 200 draws) = 8 (7/8)^200 < 1e-10.
    centres = 2.0 * EIGHT_UNIT
    seen = {int(nearest(make_eight_gaussians(1, 0.0, seed=s), centres)[0][0])
            for s in range(200)}
    assert seen == set(range(8))


def test_gaussian_mixture_rows_are_shuffled():
    x = make_gaussian_mixture(400, noise=0.0, n_components=4, seed=0)
    label = nearest(x, _ring(4, 1.0))[0]
    assert (np.diff(label) != 0).sum() > 100   # a sorted array would change label 3 times


def on_upper_moon(x):
    return (np.abs(np.hypot(x[:, 0], x[:, 1]) - 1.0) < 1e-12) & (x[:, 1] >= -1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 999, 4000])
def test_two_moons_noise_free_points_lie_on_the_two_half_circles(n):
    x = make_two_moons(n, noise=0.0, seed=n)
    upper = on_upper_moon(x)
    lower = ((np.abs(np.hypot(x[:, 0] - 1.0, x[:, 1] - 0.5) - 1.0) < 1e-12)
             & (x[:, 1] <= 0.5 + 1e-12))
    # The two arcs do not meet, so every point is on exactly one of them.
    assert not (upper & lower).any()
    assert (upper | lower).all()
    assert_balanced(lower.astype(int), 2, n)
    assert (x[upper, 0] >= -1 - 1e-12).all() and (x[upper, 0] <= 1 + 1e-12).all()
    assert (x[lower, 0] >= -1e-12).all() and (x[lower, 0] <= 2 + 1e-12).all()


def test_two_moons_angles_uniform_on_half_circle():
    x = make_two_moons(6000, noise=0.0, seed=2)
    upper = on_upper_moon(x)
    t_up = np.arctan2(x[upper, 1], x[upper, 0])
    t_lo = np.arctan2(0.5 - x[~upper, 1], 1.0 - x[~upper, 0])
    for t in (t_up, t_lo):
        assert (t >= -1e-12).all() and (t <= np.pi + 1e-12).all()
        assert within_6se(t, np.pi / 2, np.pi / np.sqrt(12.0))


def test_two_moons_odd_extra_point_goes_to_either_moon():
    seen = {bool(on_upper_moon(make_two_moons(1, 0.0, seed=s))[0]) for s in range(40)}
    assert seen == {True, False}


@pytest.mark.parametrize("radius, factor", [(1.0, 0.5), (2.0, 0.3)])
@pytest.mark.parametrize("n", [1, 3, 10, 2001])
def test_circles_radii(n, radius, factor):
    x = make_circles(n, noise=0.0, radius=radius, factor=factor, seed=n)
    r = np.hypot(x[:, 0], x[:, 1])
    on_outer = np.abs(r - radius) < 1e-12
    on_inner = np.abs(r - factor * radius) < 1e-12
    assert (on_outer ^ on_inner).all()
    assert_balanced(on_inner.astype(int), 2, n)


def test_circles_angles_uniform_and_noisy_radii():
    n, noise = 8000, 0.05
    x0 = make_circles(n, noise=0.0, seed=4)
    phi = np.arctan2(x0[:, 1], x0[:, 0])
    assert within_6se(np.cos(phi), 0.0, np.sqrt(0.5))
    assert within_6se(np.sin(phi), 0.0, np.sqrt(0.5))
    x = make_circles(n, noise=noise, seed=4)
    r = np.hypot(x[:, 0], x[:, 1])
    # Rings 0.5 apart = 10 sd: every noisy point is nearest its own ring.
    inner = np.abs(np.hypot(x0[:, 0], x0[:, 1]) - 0.5) < 1e-12
    assert (np.abs(r[inner] - 0.5) < 0.25).all() and (np.abs(r[~inner] - 1.0) < 0.25).all()


@pytest.mark.parametrize("arclength", [1.0, 3.0])
def test_swiss_roll_radius_grows_linearly_with_unwrapped_angle(arclength):
    n = 20000
    x = make_swiss_roll(n, noise=0.0, arclength=arclength, seed=6)
    r = np.hypot(x[:, 0], x[:, 1])
    order = np.argsort(r)
    phi = np.unwrap(np.arctan2(x[order, 1], x[order, 0]))
    # Sorted by radius, the polar angle (unwrapped) never decreases ...
    assert (np.diff(phi) >= -1e-9).all()
    # ... spans arclength turns' worth, [arclength pi, 3 arclength pi] ...
    span = phi[-1] - phi[0]
    assert abs(span - 2.0 * np.pi * arclength) < 0.01 * span
    # ... and the radius is exactly angle / (3 arclength pi), from 1/3 to 1.
    t_max = 3.0 * np.pi * arclength
    phi += np.round((r[order[0]] * t_max - phi[0]) / TWO_PI) * TWO_PI
    np.testing.assert_allclose(r[order], phi / t_max, atol=1e-9)
    assert r.min() >= 1 / 3 - 1e-12 and r.max() <= 1 + 1e-12
    # The angle t = r t_max is uniform on its range.
    assert within_6se(r * t_max, 2 * np.pi * arclength, 2 * np.pi * arclength / np.sqrt(3))


@pytest.mark.parametrize("n", [1, 2, 33, 5000])
def test_checkerboard_noise_free_points_in_black_squares_only(n):
    x = make_checkerboard(n, noise=0.0, seed=n)
    assert (np.abs(x) <= 4.0).all()
    assert (np.floor(x).sum(axis=1) % 2 == 1).all()


def test_checkerboard_fills_all_32_black_squares_evenly():
    n = 32000
    x = make_checkerboard(n, noise=0.0, seed=8)
    cell = np.floor(x).astype(int) + 4                    # 0..7 in each axis
    counts = np.zeros((8, 8), dtype=int)
    np.add.at(counts, (cell[:, 0], cell[:, 1]), 1)
    black = (np.add.outer(np.arange(8), np.arange(8)) % 2 == 1)   # (i-4)+(j-4) odd
    assert (counts[~black] == 0).all()
    p = 1 / 32
    assert (np.abs(counts[black] - n * p) <= 6 * np.sqrt(n * p * (1 - p))).all()
    # Uniform inside each square.
    frac = x - np.floor(x)
    for col in frac.T:
        assert within_6se(col, 0.5, np.sqrt(1 / 12))


def test_checkerboard_non_integer_range_limit():
    x = make_checkerboard(3000, noise=0.0, range_limit=2.5, seed=0)
    assert (np.abs(x) <= 2.5).all()
    assert (np.floor(x).sum(axis=1) % 2 == 1).all()
    assert (np.abs(x) > 2.0).any()                     # the half squares are used


def _unwound_arm_angle(x, radial_scale, spiral_scale):
    r = np.hypot(x[:, 0], x[:, 1])
    return np.mod(np.arctan2(x[:, 1], x[:, 0]) - spiral_scale * r / radial_scale, TWO_PI)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("n", [1, 4, 50, 701])
def test_pinwheel_thin_arms_are_exactly_k_spirals(k, n):
    x = make_pinwheel(n, noise=0.0, n_arms=k, angular_scale=0.0, seed=k + n)
    base = _unwound_arm_angle(x, 2.0, 5.0)
    arm = np.round(base / (TWO_PI / k)).astype(int) % k
    dev = np.angle(np.exp(1j * (base - TWO_PI * arm / k)))
    np.testing.assert_allclose(dev, 0.0, atol=1e-9)
    assert_balanced(arm, k, n)
    assert (np.hypot(x[:, 0], x[:, 1]) <= 2.0 + 1e-12).all()


def test_pinwheel_has_the_stated_number_of_arms():
    # Unwound angles cluster at k equally spaced values, within a few angular sds.
    n, k, ang = 5000, 5, 0.1
    x = make_pinwheel(n, noise=0.0, n_arms=k, angular_scale=ang, seed=9)
    base = _unwound_arm_angle(x, 2.0, 5.0)
    arm = np.round(base / (TWO_PI / k)).astype(int) % k
    dev = np.angle(np.exp(1j * (base - TWO_PI * arm / k)))
    assert np.abs(dev).max() <= 6 * ang                  # arms are 2 pi / 5 = 12.6 sd apart
    assert_balanced(arm, k, n)
    assert within_6se(dev ** 2, ang ** 2, np.sqrt(2) * ang ** 2)


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_pinwheel_arm_count_from_circular_moments(k):
    # For k balanced arms with angular sd a, the unwound angle has
    # E exp(i m phi) = exp(-m^2 a^2 / 2) when k divides m and 0 otherwise, so the first
    # non-vanishing moment names the number of arms.
    n, ang = 4200, 0.1
    x = make_pinwheel(n, noise=0.0, n_arms=k, angular_scale=ang, seed=k)
    base = _unwound_arm_angle(x, 2.0, 5.0)
    tol = 6.0 / np.sqrt(n)
    for m in range(1, 2 * k + 1):
        moment = abs(np.exp(1j * m * base).mean())
        expected = np.exp(-0.5 * (m * ang) ** 2) if m % k == 0 else 0.0
        assert abs(moment - expected) <= tol, (m, moment, expected)


def test_pinwheel_radius_density_and_length():
    x = make_pinwheel(6000, noise=0.0, radial_scale=3.0, seed=10)
    s2 = (np.hypot(x[:, 0], x[:, 1]) / 3.0) ** 2        # uniform on (0, 1)
    assert s2.max() <= 1 + 1e-12
    assert within_6se(s2, 0.5, np.sqrt(1 / 12))
