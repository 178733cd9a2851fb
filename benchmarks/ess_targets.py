"""Issue 17's targets for bench_ess.py, each as a Numba per-point energy (for npebm's
``CompiledEnergy``) and the same log density in JAX (BlackJAX, NumPyro) and NumPy
(nutpie's Python callback).

Every per-point function takes ``params = (count, *data)``: ``count`` is an int64 array
of 64 x 8 slots, and each call adds one to a slot picked from the bits of ``z[0]`` (one
slot per cache line), so that npebm's threads rarely collide; the sum over slots is the
number of gradient evaluations (every call computes the gradient).

- ``illcond100``: Inference Gym's IllConditionedGaussian, d = 100, seed 10: covariance
  Q diag(lambda) Q^T with lambda ~ Gamma(0.5, 1) (numpy RandomState(10)) and Q the
  sign-fixed Q of a QR of a standard normal matrix drawn next; mean 0.
- ``banana``: Inference Gym's Banana, d = 2, curvature 0.03: x0 ~ N(0, 10^2),
  x1 | x0 ~ N(0.03 (x0^2 - 100), 1); true sds (10, sqrt(19) = 4.359).
- ``funnel101``: the issue's funnel, which is nutpie's documented one (docs/nf-adapt.qmd:
  ``log_sigma ~ N(0, 1)``, 100 ``x ~ N(0, exp(log_sigma / 2))``): v ~ N(0, 1),
  x_i | v ~ N(0, e^v), i = 1..100.  nutpie's published figure is on this target.
- ``neal101``: Neal's funnel in the standard parametrisation, v ~ N(0, 3^2),
  x_i | v ~ N(0, e^v), i = 1..100: the same family with a three times wider neck prior,
  far harder (no contender reaches the neck in 1000 draws).
- ``eightschools``: eight schools, non-centred, z = (mu, log tau, eta_1..8), mu ~
  N(0, 5^2), tau ~ HalfCauchy(5) (as tests/test_bayesian_models.py).
- ``logistic100``: Bayesian logistic regression, 100 coefficients, 300 observations
  X ~ N(0, 1) (default_rng(17)), true b ~ N(0, 0.5^2), prior b ~ N(0, 1).
"""
import math

import numpy as np
from numba import njit

TARGETS17 = ("illcond100", "banana", "funnel101", "neal101", "eightschools", "logistic100")
#: The prior variance of a funnel's v.
FUNNEL_V_VAR = {"funnel101": 1.0, "neal101": 9.0}
COUNT_SLOTS = 64 * 8
#: The targets compiled with ``fastmath=True`` (sums over a data matrix, as XLA's matrix
#: product reorders them); illcond100's product is not (its table row predates the option).
FASTMATH_TARGETS = ("logistic100",)
BANANA_SD = np.array([10.0, math.sqrt(19.0)])
Y8 = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA8 = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def illcond_cov(d=100, seed=10, shape=0.5):
    rng = np.random.RandomState(seed & (2 ** 32 - 1))
    lam = rng.gamma(shape=shape, scale=1.0, size=d)
    q, r = np.linalg.qr(rng.randn(d, d))
    q = q * np.sign(np.diag(r))
    return (q * lam) @ q.T


def logistic_data(n=300, d=100):
    rng = np.random.default_rng(17)
    x = rng.normal(size=(n, d))
    b = 0.5 * rng.normal(size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-x @ b))).astype(np.float64)
    return x, y


@njit(inline="always")
def _tick(count, z):
    k = int(abs(z[0]) * 1048576.0) & 63
    count[8 * k] += 1


# ---------------------------------------------------------------- Numba per-point energies
def quadratic_point(z, grad, params):
    """E = 1/2 z^T H z - c^T z."""
    count, h, c = params
    _tick(count, z)
    d = z.shape[0]
    e = 0.0
    for i in range(d):
        g = -c[i]
        for j in range(d):
            g += h[i, j] * z[j]
        grad[i] = g
        e += 0.5 * z[i] * (g - c[i])
    return e


def banana_point(z, grad, params):
    count, c = params
    _tick(count, z)
    x0 = z[0]
    r = z[1] - c * (x0 * x0 - 100.0)
    grad[0] = x0 / 100.0 - 2.0 * c * x0 * r
    grad[1] = r
    return x0 * x0 / 200.0 + 0.5 * r * r


def funnel_point(z, grad, params):
    """v ~ N(0, s2), x_i | v ~ N(0, e^v); params = (count, s2)."""
    count, s2v = params
    _tick(count, z)
    v = z[0]
    d = z.shape[0] - 1
    s2 = 0.0
    for i in range(1, d + 1):
        s2 += z[i] * z[i]
    w = math.exp(-v)
    grad[0] = v / s2v + 0.5 * d - 0.5 * s2 * w
    for i in range(1, d + 1):
        grad[i] = z[i] * w
    return 0.5 * v * v / s2v + 0.5 * d * v + 0.5 * s2 * w


def eightschools_point(z, grad, params):
    count, y, s = params
    _tick(count, z)
    mu = z[0]
    tau = math.exp(z[1])
    e = mu * mu / 50.0 + math.log1p(tau * tau / 25.0) - z[1]
    g_mu = mu / 25.0
    g_tau = 0.0
    for j in range(y.shape[0]):
        eta = z[2 + j]
        w = 1.0 / (s[j] * s[j])
        r = y[j] - mu - tau * eta
        e += 0.5 * r * r * w + 0.5 * eta * eta
        g_mu -= r * w
        g_tau -= r * eta * w
        grad[2 + j] = eta - r * tau * w
    grad[0] = g_mu
    grad[1] = tau * g_tau + (2.0 * tau * tau / 25.0) / (1.0 + tau * tau / 25.0) - 1.0
    return e


def logistic_point(b, grad, params):
    count, x, y = params
    _tick(count, b)
    n, d = x.shape
    e = 0.0
    for j in range(d):
        grad[j] = b[j]
        e += 0.5 * b[j] * b[j]
    for i in range(n):
        eta = 0.0
        for j in range(d):
            eta += x[i, j] * b[j]
        # log(1 + e^eta) and the sigmoid from one exponential, e^-|eta| (no overflow)
        q = math.exp(-abs(eta))
        e += max(eta, 0.0) + math.log1p(q) - y[i] * eta
        p = 1.0 / (1.0 + q) if eta > 0 else q / (1.0 + q)
        for j in range(d):
            grad[j] += x[i, j] * (p - y[i])
    return e


def second_moments(target):
    """``(E x^2, Var x^2)`` per coordinate, each ``(d,)``, where known exactly; else None.

    Banana: x0 = 10 z, x1 = a (x0^2 - 100) + e with z, e ~ N(0, 1): E x1^2 = 2e4 a^2 + 1,
    E x1^4 = 6e9 a^4 + 1.2e5 a^2 + 3 (from E (z^2 - 1)^2 = 2, E (z^2 - 1)^4 = 60).
    Funnels: v ~ N(0, s2), x | v ~ N(0, e^v): E v^2 = s2, E v^4 = 3 s2^2, E x^2 = e^(s2/2),
    E x^4 = 3 E e^(2v) = 3 e^(2 s2).
    """
    if target == "illcond100":
        var = np.diag(illcond_cov())
        return var, 2.0 * var ** 2
    if target == "banana":
        a = 0.03
        m2 = np.array([100.0, 2e4 * a * a + 1.0])
        m4 = np.array([3e4, 6e9 * a ** 4 + 1.2e5 * a * a + 3.0])
        return m2, m4 - m2 ** 2
    if target in FUNNEL_V_VAR:
        s2 = FUNNEL_V_VAR[target]
        m2 = np.array([s2] + [math.exp(s2 / 2)] * 100)
        m4 = np.array([3 * s2 * s2] + [3.0 * math.exp(2 * s2)] * 100)
        return m2, m4 - m2 ** 2
    return None


def npebm_energy(target):
    """(CompiledEnergy, count array it increments)."""
    from npebm.energies import CompiledEnergy
    count = np.zeros(COUNT_SLOTS, np.int64)
    if target == "illcond100":
        f, data, d = quadratic_point, (np.linalg.inv(illcond_cov()), np.zeros(100)), 100
    elif target == "banana":
        f, data, d = banana_point, (0.03,), 2
    elif target in FUNNEL_V_VAR:
        f, data, d = funnel_point, (FUNNEL_V_VAR[target],), 101
    elif target == "eightschools":
        f, data, d = eightschools_point, (Y8, SIGMA8), 10
    elif target == "logistic100":
        f, data, d = logistic_point, logistic_data(), 100
    else:
        raise ValueError(target)
    # XLA reorders its matrix products' sums; npebm's energies with a dot product may
    # too (fastmath), so that both sides run their products on the vector units.
    fast = target in FASTMATH_TARGETS
    energy = CompiledEnergy(f, params=(count, *data), dim=d, fastmath=fast)
    return energy, energy.params[0]


def dim_of(target):
    return {"illcond100": 100, "banana": 2, "funnel101": 101, "neal101": 101,
            "eightschools": 10, "logistic100": 100}[target]


# ---------------------------------------------------------------- log densities
def logdensity(target, xp):
    """log p(z) up to a constant, written with the array module ``xp`` (jax.numpy or
    numpy), for one point z of shape (d,)."""
    if target == "illcond100":
        h = xp.asarray(np.linalg.inv(illcond_cov()))
        return lambda z: -0.5 * z @ (h @ z)
    if target == "banana":
        return lambda z: -z[0] ** 2 / 200 - 0.5 * (z[1] - 0.03 * (z[0] ** 2 - 100)) ** 2
    if target in FUNNEL_V_VAR:
        s2 = FUNNEL_V_VAR[target]

        def funnel(z):
            v = z[0]
            return -0.5 * v * v / s2 - 50.0 * v - 0.5 * xp.sum(z[1:] ** 2) * xp.exp(-v)
        return funnel
    if target == "eightschools":
        y, s = xp.asarray(Y8), xp.asarray(SIGMA8)

        def schools(z):
            mu, lt, eta = z[0], z[1], z[2:]
            tau = xp.exp(lt)
            r = y - mu - tau * eta
            return -(xp.sum(0.5 * r * r / s ** 2 + 0.5 * eta * eta) + mu * mu / 50
                     + xp.log1p(tau * tau / 25) - lt)
        return schools
    if target == "logistic100":
        x, y = (xp.asarray(a) for a in logistic_data())

        def logistic(b):
            eta = x @ b
            return -(xp.sum(xp.logaddexp(0.0, eta) - y * eta) + 0.5 * b @ b)
        return logistic
    raise ValueError(target)


def numpy_logp_grad(target):
    """``f(z) -> (log p, grad log p)`` in NumPy for nutpie's Python callback."""
    if target == "illcond100":
        h = np.linalg.inv(illcond_cov())

        def f(z):
            g = h @ z
            return -0.5 * z @ g, -g
        return f
    fn = {"banana": banana_point, "funnel101": funnel_point, "neal101": funnel_point,
          "eightschools": eightschools_point, "logistic100": logistic_point}[target]
    import numba

    from npebm.energies._compile import FASTMATH
    jf = numba.njit(fn, fastmath=set(FASTMATH) if target in FASTMATH_TARGETS else False)
    energy, count = npebm_energy(target)
    params = energy.params

    def f(z):
        g = np.empty_like(z)
        e = jf(z, g, params)
        return -e, -g
    return f
