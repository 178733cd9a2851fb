"""Denoising and sliced score matching against closed forms on a Gaussian.

For data x ~ N(0, Σ) and the energy E(x) = ½ xᵀPx (P symmetric), with d = dim:

    E[DSM] = ½ [tr(PΣP) + d/σ² − 2 tr P + σ² tr P²],  minimised by P = (Σ + σ²I)⁻¹,
    E[SSM] = ½ tr(PΣP) − tr P,                       minimised by P = Σ⁻¹.

Monte Carlo estimates are compared with these within 5 standard errors estimated from
the same samples (per-sample losses, or per-batch gradients), never a tuned tolerance.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the no-torch tests below still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

D = 3
SIGMA = 0.5
COV = np.array([[1.5, 0.4, 0.1],
                [0.4, 1.0, -0.2],
                [0.1, -0.2, 0.6]])
P0 = np.array([[1.2, 0.2, 0.0],
               [0.2, 0.8, 0.1],
               [0.0, 0.1, 1.5]])
P_DSM = np.linalg.inv(COV + SIGMA ** 2 * np.eye(D))
P_SSM = np.linalg.inv(COV)
IU = np.triu_indices(D)
Z = 5.0   # standard errors allowed


def dsm_closed_form(P, cov=COV, sigma=SIGMA):
    d = P.shape[0]
    return 0.5 * (np.trace(P @ cov @ P) + d / sigma ** 2 - 2 * np.trace(P)
                  + sigma ** 2 * np.trace(P @ P))


def ssm_closed_form(P, cov=COV):
    return 0.5 * np.trace(P @ cov @ P) - np.trace(P)


def data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, D)) @ np.linalg.cholesky(COV).T


if torch is not None:
    from npebm.adapters.torch import TorchEnergy
    from npebm.losses.score_matching import DenoisingScoreMatching, SlicedScoreMatching

    class Quadratic(torch.nn.Module):
        """E(x) = ½ xᵀPx, P symmetric, parametrised by its upper triangle θ (6,)."""

        def __init__(self, P):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.as_tensor(np.asarray(P)[IU],
                                                            dtype=torch.float64))

        def P(self):
            upper = torch.zeros(D, D, dtype=self.theta.dtype)
            upper = upper.index_put((torch.as_tensor(IU[0]), torch.as_tensor(IU[1])),
                                    self.theta)
            return upper + upper.T - torch.diag(torch.diagonal(upper))

        def forward(self, x):
            return 0.5 * ((x @ self.P()) * x).sum(-1)

    def make(kind, module, **kw):
        if kind == "dsm":
            return DenoisingScoreMatching(module, noise_scale=SIGMA, **kw)
        return SlicedScoreMatching(module, **kw)

    def draws(kind, n, seed, n_projections=1):
        """Fixed ε (n, dim) for DSM or v (n_projections, n, dim) for SSM."""
        rng = np.random.default_rng(seed)
        if kind == "dsm":
            return "noise", torch.as_tensor(rng.standard_normal((n, D)))
        return "projections", torch.as_tensor(rng.standard_normal((n_projections, n, D)))

    def flipped_loss(kind, module, x, fixed):
        """Per-sample sign-flipped losses: DSM with the target +(x̃ − x)/σ² (the
        historical sign error) and SSM with +∇E taken as the score."""
        x = x.detach().clone()
        if kind == "dsm":
            noisy = (x + SIGMA * fixed).requires_grad_(True)
            g = torch.autograd.grad(module(noisy).sum(), noisy, create_graph=True)[0]
            return 0.5 * (-g - fixed / SIGMA).square().sum(1)
        x.requires_grad_(True)
        g = torch.autograd.grad(module(x).sum(), x, create_graph=True)[0]
        v = fixed[0]
        vg = (v * g).sum(1)
        hv = torch.autograd.grad(vg.sum(), x, create_graph=True)[0]
        return (v * hv).sum(1) + 0.5 * vg.square()

    def batch_gradients(loss_fn, model, x, name, fixed, n_batches):
        """θ-gradients of the loss on n_batches equal batches: (n_batches, 6)."""
        m = x.shape[0] // n_batches
        out = []
        for b in range(n_batches):
            rows = slice(b * m, (b + 1) * m)
            loss = loss_fn(x[rows], **{name: fixed[..., rows, :]})
            out.append(torch.autograd.grad(loss, model.theta)[0])
        return torch.stack(out)


# ----------------------------------------------------------------------------- exact values

def _hand_energy_grad_hess(x, P):
    """E = Σ log cosh x_i + ½ xᵀPx: gradient and Hessian per row, in NumPy."""
    grad = np.tanh(x) + x @ P
    hess = P[None] + np.einsum("ni,ij->nij", 1 - np.tanh(x) ** 2, np.eye(x.shape[1]))
    return grad, hess


@needs_torch
@pytest.mark.parametrize("wrap", [False, True])
def test_exact_values_against_numpy(wrap):
    P = torch.as_tensor(P0)

    def energy(x):
        return torch.log(torch.cosh(x)).sum(1) + 0.5 * ((x @ P) * x).sum(1)

    module = TorchEnergy(energy, dtype=np.float64) if wrap else energy
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, D))
    eps = rng.standard_normal((7, D))
    v = rng.standard_normal((4, 7, D))

    g, _ = _hand_energy_grad_hess(x + SIGMA * eps, P0)
    dsm_hand = 0.5 * ((g - eps / SIGMA) ** 2).sum(1)
    g, h = _hand_energy_grad_hess(x, P0)
    vg = np.einsum("kni,ni->kn", v, g)
    vhv = np.einsum("kni,nij,knj->kn", v, h, v)
    ssm_hand = (0.5 * vg ** 2 - vhv).mean(0)

    for reduction, reduce in [("mean", np.mean), ("sum", np.sum), ("none", lambda a: a)]:
        dsm = DenoisingScoreMatching(module, SIGMA, reduction=reduction)
        ssm = SlicedScoreMatching(module, n_projections=4, reduction=reduction)
        # NumPy input takes the TorchEnergy's dtype (a plain function would get
        # torch's default dtype); a tensor keeps its own with a plain function.
        for xin in (x, torch.as_tensor(x)) if wrap else (torch.as_tensor(x),):
            a = dsm(xin, noise=eps)
            b = ssm(xin, projections=v)
            assert isinstance(a, torch.Tensor) and a.dtype == torch.float64
            np.testing.assert_allclose(a.detach().numpy(), reduce(dsm_hand), rtol=1e-12)
            np.testing.assert_allclose(b.detach().numpy(), reduce(ssm_hand), rtol=1e-12)


@needs_torch
def test_generator_and_projection_laws():
    x = torch.as_tensor(data(64, 2))
    module = Quadratic(P0)
    dsm = DenoisingScoreMatching(module, SIGMA)
    # ε drawn from the generator is torch.randn(x.shape, generator=...).
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    assert torch.equal(dsm(x, generator=torch.Generator().manual_seed(5)), dsm(x, noise=eps))
    for projection in ("gaussian", "rademacher", "sphere"):
        ssm = SlicedScoreMatching(module, 3, projection)
        v = ssm._draw(x, torch.Generator().manual_seed(0))
        assert v.shape == (3, 64, D) and v.dtype == x.dtype
        if projection == "rademacher":
            assert set(v.unique().tolist()) == {-1.0, 1.0}
        if projection == "sphere":
            np.testing.assert_allclose(v.norm(dim=-1).numpy(), np.sqrt(D), rtol=1e-12)
        a = ssm(x, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a, ssm(x, projections=v))
        assert torch.equal(a, ssm(x, generator=torch.Generator().manual_seed(0)))


@needs_torch
def test_lazy_export():
    import npebm.losses as losses
    assert losses.DenoisingScoreMatching is DenoisingScoreMatching
    assert losses.SlicedScoreMatching is SlicedScoreMatching


# ----------------------------------------------------------------------------- closed forms

@needs_torch
@pytest.mark.parametrize("kind, projection", [("dsm", None), ("ssm", "gaussian"),
                                              ("ssm", "rademacher"), ("ssm", "sphere")])
@pytest.mark.parametrize("P", [P0, P_DSM, P_SSM], ids=["P0", "P_dsm", "P_ssm"])
def test_monte_carlo_matches_closed_form(kind, projection, P):
    kw = {} if projection is None else {"projection": projection, "n_projections": 2}
    loss = make(kind, Quadratic(P), reduction="none", **kw)
    x = torch.as_tensor(data(50_000, 3))
    per_sample = loss(x, generator=torch.Generator().manual_seed(4)).detach().numpy()
    truth = dsm_closed_form(P) if kind == "dsm" else ssm_closed_form(P)
    se = per_sample.std(ddof=1) / np.sqrt(per_sample.size)
    assert abs(per_sample.mean() - truth) < Z * se


@needs_torch
@pytest.mark.parametrize("kind", ["dsm", "ssm"])
def test_signs_gradient_vanishes_at_the_minimiser(kind):
    """At the closed-form minimiser the θ-gradient is zero within MC error; the
    sign-flipped loss's gradient there is not; the loss is lower there than at
    perturbed P (common random numbers), and the flipped loss is not."""
    P_star = P_DSM if kind == "dsm" else P_SSM
    model = Quadratic(P_star)
    loss = make(kind, model)
    x = torch.as_tensor(data(100_000, 5))
    name, fixed = draws(kind, x.shape[0], 6)
    n_batches = 50

    g = batch_gradients(loss, model, x, name, fixed, n_batches)
    mean, se = g.mean(0), g.std(0) / np.sqrt(n_batches)
    assert torch.all(mean.abs() < Z * se), (mean, se)

    def flip(xb, **kw):
        return flipped_loss(kind, model, xb, kw[name]).mean()

    gf = batch_gradients(flip, model, x, name, fixed, n_batches)
    assert torch.max(gf.mean(0).abs() / (gf.std(0) / np.sqrt(n_batches))) > 10 * Z

    # Per-sample differences against perturbed P, same x and ε / v.
    def per_sample(P, flipped=False):
        m = Quadratic(P)
        if flipped:
            return flipped_loss(kind, m, x, fixed).detach().numpy()
        ls = make(kind, m, reduction="none")
        return ls(x, **{name: fixed}).detach().numpy()

    base = per_sample(P_star)
    for delta in (0.3 * np.eye(D), -0.3 * np.eye(D), 0.3 * np.outer([1, -1, 0], [1, -1, 0])):
        diff = per_sample(P_star + delta) - base
        assert diff.mean() > Z * diff.std(ddof=1) / np.sqrt(diff.size)
    flipped_diff = per_sample(0.7 * P_star, True) - per_sample(P_star, True)
    assert flipped_diff.mean() < -Z * flipped_diff.std(ddof=1) / np.sqrt(flipped_diff.size)


@needs_torch
@pytest.mark.parametrize("kind", ["dsm", "ssm"])
def test_adam_from_identity_finds_the_minimiser(kind):
    """With fixed x and ε / v the loss is a quadratic in θ: Adam must reach its
    minimiser θ̂ = θ* − Ĥ⁻¹ĝ(θ*), and θ̂ lies within 5 SE of θ* (delta method,
    Cov θ̂ ≈ Ĥ⁻¹ Cov(ĝ) Ĥ⁻¹ with Cov(ĝ) from per-batch gradients)."""
    P_star = P_DSM if kind == "dsm" else P_SSM
    theta_star = torch.as_tensor(P_star[IU])
    x = torch.as_tensor(data(5_000, 7))
    name, fixed = draws(kind, x.shape[0], 8)

    model = Quadratic(np.eye(D))
    loss = make(kind, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1 / 300))
    for _ in range(300):
        opt.zero_grad()
        loss(x, **{name: fixed}).backward()
        opt.step()
        sched.step()
    theta_adam = model.theta.detach()

    at_star = Quadratic(P_star)
    loss_star = make(kind, at_star)
    grad = torch.autograd.grad(loss_star(x, **{name: fixed}), at_star.theta,
                               create_graph=True)[0]
    hess = torch.stack([torch.autograd.grad(grad[k], at_star.theta, retain_graph=True)[0]
                        for k in range(grad.numel())])
    theta_hat = theta_star - torch.linalg.solve(hess, grad.detach())
    g = batch_gradients(loss_star, at_star, x, name, fixed, 40)
    cov_g = torch.cov(g.T) / g.shape[0]
    h_inv = torch.linalg.inv(hess)
    se = torch.sqrt(torch.diagonal(h_inv @ cov_g @ h_inv.T))

    assert torch.all((theta_adam - theta_hat).abs() < 0.1 * se), (theta_adam, theta_hat, se)
    assert torch.all((theta_hat - theta_star).abs() < Z * se), (theta_hat, theta_star, se)
    # ... and the test can tell: the start, I, is many SE away.
    assert torch.any((theta_hat - torch.as_tensor(np.eye(D)[IU])).abs() > Z * se)


# ----------------------------------------------------------------------------- training

@needs_torch
@pytest.mark.parametrize("kind", ["dsm", "ssm"])
@pytest.mark.parametrize("wrap", [False, True])
def test_backpropagates_into_an_mlp(kind, wrap):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.SiLU(),
                              torch.nn.Linear(16, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 1)).double()
    loss_fn = make(kind, TorchEnergy(mlp) if wrap else mlp, **(
        {} if kind == "dsm" else {"n_projections": 2, "projection": "rademacher"}))
    x = data(256, 9)
    name, fixed = draws(kind, 256, 10, n_projections=1 if kind == "dsm" else 2)
    loss = loss_fn(x, **{name: fixed})
    assert loss.shape == () and loss.requires_grad
    assert all(p.grad is None for p in mlp.parameters())    # nothing until backward
    loss.backward()
    params = list(mlp.named_parameters())
    # A constant shift of E leaves the score, hence the loss, unchanged: the last
    # bias is not in the loss's graph and gets no gradient.
    assert dict(params)["4.bias"].grad is None
    for pname, p in params[:-1]:
        assert torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, pname

    # One small gradient step lowers the loss on the same x and ε / v.
    with torch.no_grad():
        for _, p in params[:-1]:
            p -= 1e-3 * p.grad
    assert float(loss_fn(x, **{name: fixed}).detach()) < float(loss.detach())


@needs_torch
def test_dtype_device_and_no_grad():
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1))
    x = np.random.default_rng(0).standard_normal((10, 2))     # float64 NumPy
    for loss_fn in (DenoisingScoreMatching(mlp), SlicedScoreMatching(mlp, 2)):
        loss = loss_fn(x)
        assert loss.dtype == torch.float32 and loss.requires_grad
        with torch.no_grad():
            quiet = loss_fn(torch.as_tensor(x))
        assert quiet.dtype == torch.float32 and not quiet.requires_grad
    # A plain function follows the tensor's dtype; NumPy goes to the default dtype.
    assert DenoisingScoreMatching(lambda t: (t ** 2).sum(1))(
        torch.zeros(4, 2, dtype=torch.float64)).dtype == torch.float64
    assert SlicedScoreMatching(lambda t: (t ** 2).sum(1))(
        np.zeros((4, 2))).dtype == torch.get_default_dtype()
    # An energy linear in x has zero Hessian: SSM is then ½ mean (vᵀ∇E)².
    v = torch.ones(1, 4, 2)
    assert float(SlicedScoreMatching(lambda t: t.sum(1))(np.zeros((4, 2)),
                                                         projections=v)) == 2.0


# ----------------------------------------------------------------------------- errors

@needs_torch
def test_bad_arguments_name_themselves():
    q = Quadratic(P0)
    x = data(5, 0)
    with pytest.raises(TypeError, match="energy"):
        DenoisingScoreMatching(3.0)
    with pytest.raises(TypeError, match="energy"):
        SlicedScoreMatching("mlp")
    for bad, exc in [(0.0, ValueError), (-1.0, ValueError), (np.nan, ValueError),
                     (np.inf, ValueError), ("0.1", TypeError), (None, TypeError)]:
        with pytest.raises(exc, match="noise_scale"):
            DenoisingScoreMatching(q, bad)
    for bad, exc in [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)]:
        with pytest.raises(exc, match="n_projections"):
            SlicedScoreMatching(q, bad)
    with pytest.raises(ValueError, match="projection"):
        SlicedScoreMatching(q, 1, "uniform")
    with pytest.raises(ValueError, match="reduction"):
        DenoisingScoreMatching(q, reduction="avg")

    for loss_fn in (DenoisingScoreMatching(q), SlicedScoreMatching(q)):
        for bad in (x[0], x[None], np.zeros((0, D)), np.zeros((5, 0))):
            with pytest.raises(ValueError, match="x"):
                loss_fn(bad)
        for bad in (np.ones((5, D), dtype=int), torch.ones(5, D, dtype=torch.int64)):
            with pytest.raises(TypeError, match="x"):
                loss_fn(bad)
        bad = x.copy()
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match="x"):
            loss_fn(bad)
        with pytest.raises(TypeError, match="generator"):
            loss_fn(x, generator=np.random.default_rng(0))
    dsm, ssm = DenoisingScoreMatching(q), SlicedScoreMatching(q, 2)
    with pytest.raises(ValueError, match="noise"):
        dsm(x, noise=np.zeros((4, D)))
    with pytest.raises(ValueError, match="noise"):
        dsm(x, noise=np.full((5, D), np.inf))
    with pytest.raises(ValueError, match="projections"):
        ssm(x, projections=np.zeros((1, 5, D)))
    with pytest.raises(ValueError, match=r"\(n,\)"):
        DenoisingScoreMatching(lambda t: t)(x)
    with pytest.raises(TypeError, match="tensor"):
        SlicedScoreMatching(lambda t: 1.0)(x)


@needs_torch
@pytest.mark.parametrize("kind", ["dsm", "ssm"])
@pytest.mark.parametrize("energy", [lambda t: torch.exp(1e3 * t).sum(1),
                                    lambda t: (t * float("nan")).sum(1) ** 2],
                         ids=["overflow", "nan"])
def test_non_finite_loss_raises(kind, energy):
    loss_fn = make(kind, energy)
    with pytest.raises(FloatingPointError, match="not finite"):
        loss_fn(np.ones((4, D)))


# ----------------------------------------------------------------------------- imports

def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def test_import_does_not_import_torch():
    out = _run("import sys, npebm.losses.score_matching\n"
               "assert 'torch' not in sys.modules, 'torch imported'\n")
    assert out.returncode == 0, out.stderr


def test_without_torch_constructing_raises_the_install_hint():
    code = ("import sys\n"
            "sys.modules['torch'] = None\n"
            "from npebm.losses import DenoisingScoreMatching, SlicedScoreMatching\n"
            "for cls in (DenoisingScoreMatching, SlicedScoreMatching):\n"
            "    try:\n"
            "        cls(lambda x: x)\n"
            "    except ImportError as exc:\n"
            "        print(exc)\n"
            "    else:\n"
            "        raise SystemExit('no ImportError')\n")
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("pip install npebm[torch]") == 2
    assert "torch==2.13.0" in out.stdout
