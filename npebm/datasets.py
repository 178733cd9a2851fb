"""Two-dimensional toy data sets for training and checking energy-based models.

Each generator is ``make_*(n, noise=..., *, ..., seed=None)`` and returns an ``(n, 2)``
float64 array whose rows are in random order.  ``noise`` is always the standard deviation
of isotropic Gaussian noise in the output coordinates, so ``noise=0`` gives the exact
geometry.  The noise is drawn whatever its size, so for one seed the arrays for two noise
levels differ by the same standard-normal draws scaled by the difference.

Where ``n`` is split between components, moons, rings or arms, the counts differ by at
most one and the components that receive the extra points are chosen at random, so every
row is marginally a draw from the stated mixture.

The geometry follows TorchEBM's ``torchebm.datasets`` generators (eight Gaussians at the
compass points and diagonals of a circle of radius 2, two moons, a 2-D Swiss roll, a
checkerboard of unit squares on ``[-4, 4]^2``, a pinwheel with curved blades) with two
changes: the Swiss roll is scaled by a fixed factor rather than standardised with the
sample's own mean and spread, and ``make_circles`` draws two concentric rings.

Randomness comes only from ``numpy.random.default_rng(seed)``; the global NumPy state is
never read or changed.  ``seed`` may be None (fresh OS entropy), a non-negative int, a
``numpy.random.SeedSequence`` or a ``numpy.random.Generator`` (which is advanced).

Examples
--------
>>> x = make_two_moons(500, noise=0.05, seed=0)
>>> x.shape, x.dtype
((500, 2), dtype('float64'))
>>> bool((make_two_moons(500, 0.05, seed=0) == x).all())
True
"""

import numpy as np

from ._validation import check_int, check_real, is_integer

__all__ = [
    "make_gaussian_mixture",
    "make_eight_gaussians",
    "make_two_moons",
    "make_swiss_roll",
    "make_circles",
    "make_checkerboard",
    "make_pinwheel",
]


# -- argument checks (all run before any random draw) ----------------------------------

def _check_n(n, name="n"):
    return check_int(n, name, 1)


def _check_real(value, name, *, low=0.0, low_open=False, high=None):
    """A finite real scalar checked against ``low`` (``>=``, or ``>`` if open) and
    ``< high``; ``low`` is 0 unless told."""
    return check_real(value, name, low=low, low_open=low_open, high=high)


def _rng(seed):
    if seed is None or isinstance(seed, (np.random.SeedSequence, np.random.Generator)):
        return np.random.default_rng(seed)
    if not is_integer(seed):
        raise TypeError(
            "seed must be None, a non-negative int, a numpy.random.SeedSequence or a "
            f"numpy.random.Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


# -- shared pieces ---------------------------------------------------------------------

def _labels(rng, n, k):
    """Random order of labels ``0..k-1`` with counts ``n // k`` or ``n // k + 1``.

    The ``n % k`` labels that get one extra point are a uniform random subset.
    """
    counts = np.full(k, n // k, dtype=np.int64)
    counts[rng.choice(k, size=n % k, replace=False)] += 1
    return rng.permutation(np.repeat(np.arange(k), counts))


def _add_noise(rng, x, noise):
    # Always drawn, so the stream (and the noise-free part) do not depend on ``noise``.
    x += noise * rng.standard_normal(x.shape)
    return x


def _ring(n_components, radius):
    theta = 2.0 * np.pi * np.arange(n_components) / n_components
    return radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)


# -- generators ------------------------------------------------------------------------

def make_gaussian_mixture(n, noise=0.05, *, n_components=8, radius=1.0, seed=None):
    """Equal-weight mixture of isotropic Gaussians centred evenly on a circle.

    Centre ``j`` is ``radius * (cos(2 pi j / n_components), sin(2 pi j / n_components))``.

    Parameters
    ----------
    n : int >= 1
        Number of points.
    noise : float >= 0
        Standard deviation of each component.
    n_components : int >= 1
        Number of components; each gets ``n // n_components`` or one more points.
    radius : float > 0
        Radius of the circle of centres.
    seed : None, int, SeedSequence or Generator

    Returns
    -------
    x : ndarray of float64, shape (n, 2)
    """
    n = _check_n(n)
    noise = _check_real(noise, "noise")
    n_components = _check_n(n_components, "n_components")
    radius = _check_real(radius, "radius", low_open=True)
    rng = _rng(seed)
    x = _ring(n_components, radius)[_labels(rng, n, n_components)]
    return _add_noise(rng, x, noise)


def make_eight_gaussians(n, noise=0.02, *, radius=2.0, seed=None):
    """The "8 Gaussians": equal mixture at the compass points and diagonals.

    Centres are ``radius * (cos(j pi / 4), sin(j pi / 4))``, ``j = 0..7``, as in
    TorchEBM's ``EightGaussiansDataset`` (its ``scale``).

    Parameters
    ----------
    n : int >= 1
        Number of points; each centre gets ``n // 8`` or one more.
    noise : float >= 0
        Standard deviation of each component.
    radius : float > 0
        Distance of the centres from the origin.
    seed : None, int, SeedSequence or Generator

    Returns
    -------
    x : ndarray of float64, shape (n, 2)
    """
    return make_gaussian_mixture(n, noise, n_components=8, radius=radius, seed=seed)


def make_two_moons(n, noise=0.05, *, seed=None):
    """Two interleaving half circles of radius 1.

    The upper moon is ``(cos t, sin t)`` and the lower moon ``(1 - cos t, 0.5 - sin t)``,
    ``t ~ Uniform(0, pi)`` (centres ``(0, 0)`` and ``(1, 0.5)``), half the points each.

    Parameters
    ----------
    n : int >= 1
        Number of points.
    noise : float >= 0
        Standard deviation of the Gaussian noise added to each coordinate.
    seed : None, int, SeedSequence or Generator

    Returns
    -------
    x : ndarray of float64, shape (n, 2)
    """
    n = _check_n(n)
    noise = _check_real(noise, "noise")
    rng = _rng(seed)
    moon = _labels(rng, n, 2)
    t = rng.uniform(0.0, np.pi, size=n)
    sign = 1.0 - 2.0 * moon                        # +1 upper moon, -1 lower moon
    x = np.empty((n, 2))
    x[:, 0] = moon + sign * np.cos(t)
    x[:, 1] = 0.5 * moon + sign * np.sin(t)
    return _add_noise(rng, x, noise)


def make_swiss_roll(n, noise=0.02, *, arclength=3.0, seed=None):
    """Two-dimensional Swiss roll: points on an Archimedean spiral.

    With ``t ~ Uniform(arclength pi, 3 arclength pi)`` the point is
    ``(t cos t, t sin t) / (3 arclength pi)``, so the radius ``t / (3 arclength pi)``
    grows linearly with the angle ``t`` from 1/3 to 1, and successive turns are
    ``2 / (3 arclength)`` apart.  TorchEBM instead standardises by the sample's own mean
    and spread, which depends on the draw (and is undefined for ``n = 1``); the fixed
    factor here gives a similar overall scale.

    Parameters
    ----------
    n : int >= 1
        Number of points.
    noise : float >= 0
        Standard deviation of the Gaussian noise, in output units.
    arclength : float > 0
        The spiral angle spans ``[arclength pi, 3 arclength pi]`` (``arclength`` turns).
    seed : None, int, SeedSequence or Generator

    Returns
    -------
    x : ndarray of float64, shape (n, 2)
    """
    n = _check_n(n)
    noise = _check_real(noise, "noise")
    arclength = _check_real(arclength, "arclength", low_open=True)
    rng = _rng(seed)
    t = arclength * np.pi * (1.0 + 2.0 * rng.random(n))
    r = t / (3.0 * arclength * np.pi)
    x = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    return _add_noise(rng, x, noise)


def make_circles(n, noise=0.05, *, radius=1.0, factor=0.5, seed=None):
    """Two concentric circles of radii ``radius`` and ``factor * radius``.

    Half the points lie on each circle at ``Uniform(0, 2 pi)`` angles.

    Parameters
    ----------
    n : int >= 1
        Number of points.
    noise : float >= 0
        Standard deviation of the Gaussian noise added to each coordinate.
    radius : float > 0
        Radius of the outer circle.
    factor : float in (0, 1)
        Ratio of the inner radius to the outer one.
    seed : None, int, SeedSequence or Generator

    Returns
    -------
    x : ndarray of float64, shape (n, 2)
    """
    n = _check_n(n)
    noise = _check_real(noise, "noise")
    radius = _check_real(radius, "radius", low_open=True)
    factor = _check_real(factor, "factor", low_open=True, high=1.0)
    rng = _rng(seed)
    r = np.array([radius, factor * radius])[_labels(rng, n, 2)]
    theta = rng.uniform(0.0, 2.0 * np.pi, size=n)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return _add_noise(rng, x, noise)


def make_checkerboard(n, noise=0.01, *, range_limit=4.0, seed=None):
    """Uniform on the "black" unit squares of a checkerboard on ``[-L, L]^2``.

    A point ``(x, y)`` of the square is kept when ``floor(x) + floor(y)`` is odd (rejection
    sampling from the uniform square, as in TorchEBM); ``L = range_limit``.

    Parameters
    ----------
    n : int >= 1
        Number of points.
    noise : float >= 0
        Standard deviation of the Gaussian noise added to each coordinate.
    range_limit : float > 0
        Half-width ``L`` of the board; an integer ``L`` gives ``2 L^2`` whole black squares.
    seed : None, int, SeedSequence or Generator

    Returns
    -------
    x : ndarray of float64, shape (n, 2)
    """
    n = _check_n(n)
    noise = _check_real(noise, "noise")
    lim = _check_real(range_limit, "range_limit", low_open=True)
    rng = _rng(seed)
    kept, have = [], 0
    while have < n:
        # The acceptance rate is about 1/2; oversample so one batch almost always suffices.
        cand = rng.uniform(-lim, lim, size=(2 * (n - have) + 64, 2))
        cand = cand[np.floor(cand).sum(axis=1) % 2 == 1]
        kept.append(cand[: n - have])
        have += len(kept[-1])
    x = np.concatenate(kept)
    return _add_noise(rng, x, noise)


def make_pinwheel(n, noise=0.05, *, n_arms=5, radial_scale=2.0, angular_scale=0.1,
                  spiral_scale=5.0, seed=None):
    """Pinwheel of ``n_arms`` curved blades, as TorchEBM's ``PinwheelDataset``.

    A point of arm ``j`` has radius ``r = radial_scale * sqrt(u)``, ``u ~ Uniform(0, 1)``,
    and angle ``2 pi j / n_arms + spiral_scale * r / radial_scale + angular_scale * z``,
    ``z ~ N(0, 1)``; ``noise`` is then added in Cartesian coordinates.

    Parameters
    ----------
    n : int >= 1
        Number of points; each arm gets ``n // n_arms`` or one more.
    noise : float >= 0
        Standard deviation of the final Cartesian Gaussian noise.
    n_arms : int >= 1
        Number of blades.
    radial_scale : float > 0
        Length of the blades (largest radius).
    angular_scale : float >= 0
        Standard deviation of the angle about each blade's centre line (its thickness).
    spiral_scale : float
        Angle, in radians, by which a blade turns from the centre to its tip.
    seed : None, int, SeedSequence or Generator

    Returns
    -------
    x : ndarray of float64, shape (n, 2)
    """
    n = _check_n(n)
    noise = _check_real(noise, "noise")
    n_arms = _check_n(n_arms, "n_arms")
    radial_scale = _check_real(radial_scale, "radial_scale", low_open=True)
    angular_scale = _check_real(angular_scale, "angular_scale")
    spiral_scale = _check_real(spiral_scale, "spiral_scale", low=None)
    rng = _rng(seed)
    arm = _labels(rng, n, n_arms)
    s = np.sqrt(rng.random(n))
    theta = ((2.0 * np.pi / n_arms) * arm + spiral_scale * s
             + angular_scale * rng.standard_normal(n))
    r = radial_scale * s
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return _add_noise(rng, x, noise)
