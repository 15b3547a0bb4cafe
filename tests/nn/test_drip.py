"""dtwin.nn.drip: the DRIP lower level (convex latent solve with implicit gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dtwin.nn import (
    ConvexRegularizer,
    Synthesis,
    check_convex,
    objective,
    operator_norm_sq,
    solve,
    solve_unrolled,
)
from dtwin.sim.imaging import GaussianBlur, Inpainting, Tomography, add_noise

DT = torch.float64
C, J, S = 4, 4, 8  # latent channels, filters, image side


pytestmark = pytest.mark.usefixtures("one_thread")


def _operator(name: str, side: int = S):
    if name == "blur":
        return GaussianBlur((side, side), sigma=1.0)
    if name == "inpainting":
        return Inpainting((side, side), observed=0.5, seed=1)
    return Tomography((side, side), n_angles=6)


def _problem(
    seed: int = 0, penalty: str = "pseudo_huber", mu: float = 0.05, channels: int = C, filters: int = J
):
    torch.manual_seed(seed)
    E = Synthesis(channels, kernel_size=3).to(DT)
    R = ConvexRegularizer(channels, filters, kernel_size=3, penalty=penalty, mu=mu, init_scale=0.2).to(DT)
    with torch.no_grad():
        R.bias.normal_(0.0, 0.1)
        R.raw_scale.add_(0.3 * torch.randn(filters, dtype=DT))
    return E, R


def _images(B: int, side: int = S, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(B, 1, side, side, generator=gen, dtype=DT)


def _dense(fn, in_shape) -> torch.Tensor:
    """The matrix of a linear map from unit inputs: [out numel, in numel]."""
    n = math.prod(in_shape)
    with torch.no_grad():
        cols = fn(torch.eye(n, dtype=DT).view(n, *in_shape))
    return cols.reshape(n, -1).T.contiguous()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-300))


# ------------------------------------------------------------------------------------------ modules


def test_synthesis_adjoint_and_norm_bound():
    E, _ = _problem()
    z, u = torch.randn(2, C, S, S, dtype=DT), torch.randn(2, 1, S, S, dtype=DT)
    torch.testing.assert_close((E(z) * u).sum(), (z * E.adjoint(u)).sum(), rtol=1e-12, atol=1e-12)
    exact = torch.linalg.matrix_norm(_dense(E, (C, S, S)), 2) ** 2
    bound = E.norm_sq((S, S))
    assert exact <= bound <= 1.5 * exact
    assert E(z).shape == (2, 1, S, S) and "latent_channels=4" in repr(E)


@pytest.mark.parametrize("penalty", ["pseudo_huber", "log_cosh"])
def test_regularizer_closed_forms(penalty):
    _, R = _problem(penalty=penalty)
    z, v = torch.randn(2, C, S, S, dtype=DT), torch.randn(2, C, S, S, dtype=DT)
    leaf = z.clone().requires_grad_()
    value = R(leaf)
    assert value.shape == (2,)
    (g,) = torch.autograd.grad(value.sum(), leaf, create_graph=True)
    torch.testing.assert_close(R.gradient(z), g.detach(), rtol=1e-10, atol=1e-12)
    (hv,) = torch.autograd.grad(g, leaf, v)
    torch.testing.assert_close(R.hvp(z, v), hv, rtol=1e-10, atol=1e-12)

    # the Lipschitz bound covers the largest curvature (phi'' is largest where K z + c = 0)
    def hessian(x):
        return torch.autograd.functional.hessian(lambda t: R(t.view(1, C, S, S)).sum(), x.reshape(-1))

    K = _dense(lambda t: F.conv2d(t, R.weight, padding=1), (C, S, S))
    c = R.bias.detach().repeat_interleave(S * S)
    flat = torch.linalg.lstsq(K, -c[:, None]).solution[:, 0]  # K z + c = 0: phi'' = 1 / eps everywhere
    H, H0 = hessian(z[:1]), hessian(flat)
    lip = float(R.lipschitz((S, S)))
    for h in (H, H0):
        assert float(torch.linalg.eigvalsh(h)[-1]) <= lip
    assert float(torch.linalg.eigvalsh(H0)[-1]) >= 0.3 * lip  # and is not far above it
    assert float(torch.linalg.eigvalsh(H)[0]) >= R.mu * (1 - 1e-9)  # mu-strongly convex


def test_regularizer_strength_scales_every_closed_form():
    """strength s: R_s = s R_1 in value, gradient (with and without a graph), Hessian, the
    Lipschitz bound and the modulus; the parameters are the same."""
    _, R1 = _problem()
    Rs = ConvexRegularizer(C, J, kernel_size=3, mu=0.05, init_scale=0.2, strength=37.5).to(DT)
    Rs.load_state_dict(R1.state_dict())
    z, v = torch.randn(2, C, S, S, dtype=DT), torch.randn(2, C, S, S, dtype=DT)
    close = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Rs(z), 37.5 * R1(z), **close)
    torch.testing.assert_close(Rs.gradient(z), 37.5 * R1.gradient(z), **close)
    with torch.no_grad():
        torch.testing.assert_close(Rs.gradient(z), 37.5 * R1.gradient(z), **close)
        torch.testing.assert_close(Rs.hvp(z, v), 37.5 * R1.hvp(z, v), **close)
    torch.testing.assert_close(Rs.hvp(z, v), 37.5 * R1.hvp(z, v), **close)
    torch.testing.assert_close(Rs.lipschitz((S, S)), 37.5 * R1.lipschitz((S, S)), **close)
    assert Rs.strong_convexity() == pytest.approx(37.5 * R1.strong_convexity())
    assert "strength=37.5" in repr(Rs) and "strength" not in repr(R1)


def test_strength_norm_sq_solves_the_normalised_problem():
    """1/2 ||A E z - b||^2 + ||A||^2 R(z) has the minimiser of 1/2 ||(A/||A||) E z - b/||A|| ||^2 +
    R(z): what the DRIP estimator's ``normalize`` relies on (a Radon operator, ||A||^2 >> 1)."""
    A = _operator("tomography")
    E, R1 = _problem()
    norm_sq = operator_norm_sq(A, margin=1.0)
    assert norm_sq > 10
    Rs = ConvexRegularizer(C, J, kernel_size=3, mu=0.05, init_scale=0.2, strength=norm_sq).to(DT)
    Rs.load_state_dict(R1.state_dict())
    y, _ = add_noise(A(_images(2)), 0.05, generator=torch.Generator().manual_seed(2))
    scaled = _ScaledOperator(A, norm_sq**-0.5)
    a = solve(A, E, Rs, y, tol=1e-12, max_iter=20000).z
    b = solve(scaled, E, R1, y * norm_sq**-0.5, tol=1e-12, max_iter=20000).z
    assert _rel(a, b) < 1e-8


class _ScaledOperator:
    """c A, for the test above."""

    def __init__(self, A, c):
        self.A, self.c, self.in_shape, self.out_shape = A, c, A.in_shape, A.out_shape

    def forward(self, x):
        return self.c * self.A(x)

    __call__ = forward

    def adjoint(self, y):
        return self.c * self.A.adjoint(y)


def test_regularizer_is_convex_midpoint():
    for penalty in ("pseudo_huber", "log_cosh"):
        _, R = _problem(penalty=penalty)
        gen = torch.Generator().manual_seed(3)
        for scale in (0.01, 0.1, 1.0, 10.0):
            z1, z2 = (scale * torch.randn(8, C, S, S, generator=gen, dtype=DT) for _ in range(2))
            with torch.no_grad():
                assert bool((R(0.5 * (z1 + z2)) <= 0.5 * (R(z1) + R(z2)) + 1e-12).all())
        check_convex(R, torch.zeros(2, C, S, S, dtype=DT))


def test_conv_norm_bound_matches_the_transfer_matrices():
    """The Gram matrices from the kernels' cross-correlations (and, on grids smaller than the
    kernel, from the transfer matrices) give the largest spectral norm over the frequencies."""
    from dtwin.nn.drip import _conv_norm_sq

    gen = torch.Generator().manual_seed(7)
    cases = [(5, 3, 3, 8), (3, 5, 3, 8), (4, 6, 5, 7), (3, 4, 5, 3), (1, 4, 3, 8), (4, 1, 3, 8)]
    for J, Cin, k, side in cases:
        weight = torch.randn(J, Cin, k, k, generator=gen, dtype=DT)
        scale = torch.rand(J, generator=gen, dtype=DT)
        m = torch.fft.rfft2(weight * scale[:, None, None, None], s=(side + k - 1, side + k - 1))
        m = m.permute(2, 3, 0, 1).reshape(-1, J, Cin)
        expected = torch.linalg.matrix_norm(m, 2).max() ** 2 * (1 + 1e3 * torch.finfo(DT).eps)
        torch.testing.assert_close(_conv_norm_sq(weight, (side, side), scale), expected, rtol=1e-12, atol=0)


def test_synthesis_layouts_and_the_solvers_adjoint():
    """E by products over the taps equals the zero-padded correlation for either memory format;
    the solver's channels-last E^T added into a base equals base + E.adjoint, with and without a
    graph (bit for bit), and differentiates correctly."""
    from dtwin.nn.drip import _UnfoldTaps

    torch.manual_seed(3)
    for k in (1, 3, 5):
        E = Synthesis(C, kernel_size=k).to(DT)
        z = torch.randn(2, C, S, S, dtype=DT)
        ref = F.conv2d(z, E.weight, padding=k // 2)
        for x in (z, z.contiguous(memory_format=torch.channels_last), z.mT.contiguous().mT):
            torch.testing.assert_close(E(x), ref, rtol=1e-12, atol=1e-13)
        u = torch.randn(2, 1, S, S, dtype=DT)
        base = torch.randn(2, C, S, S, dtype=DT).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            fresh = E._adjoint_add(u, base.clone())
        graph = E._adjoint_add(u, base)
        assert torch.equal(fresh, graph.detach())
        assert fresh.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fresh, base + E.adjoint(u), rtol=1e-12, atol=1e-13)
    taps = torch.randn(9, 3, dtype=DT, requires_grad=True)
    u = torch.randn(2, 1, 5, 4, dtype=DT, requires_grad=True)
    base = torch.randn(2, 20, 3, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, t, b: _UnfoldTaps.apply(u, t, b, 3), (u, taps, base))


@pytest.mark.parametrize("penalty", ["pseudo_huber", "log_cosh"])
def test_regularizer_without_graph_is_the_same_arithmetic(penalty):
    """Without a graph the closed forms work in place; the results are bit for bit those with one
    (solve and solve_unrolled then iterate identically)."""
    _, R = _problem(penalty=penalty)
    z = torch.randn(2, C, S, S, dtype=DT).contiguous(memory_format=torch.channels_last)
    v = torch.randn_like(z)
    with torch.no_grad():
        g0, h0 = R.gradient(z), R.hessian(z)(v)
    z.requires_grad_()
    g1, h1 = R.gradient(z), R.hessian(z)(v)
    assert torch.equal(g0, g1.detach()) and torch.equal(h0, h1.detach())


class _Cosine(nn.Module):
    """A user regularizer that breaks the contract: not convex."""

    latent_channels = C

    def forward(self, z):
        return torch.cos(z).flatten(1).sum(1)

    def lipschitz(self, shape):
        return 1.0


class _Softplus(nn.Module):
    """A convex user regularizer with no closed forms (gradient and Hessian by autograd) and one
    learned parameter: a softplus(z) + mu/2 |z|^2, a = exp(log_a)."""

    latent_channels = C

    def __init__(self, mu: float = 0.1):
        super().__init__()
        self.log_a = nn.Parameter(torch.tensor(-1.0, dtype=DT))
        self.mu = mu

    def forward(self, z):
        return (self.log_a.exp() * F.softplus(z) + 0.5 * self.mu * z * z).flatten(1).sum(1)

    def lipschitz(self, shape):
        return float(self.log_a.exp()) * 0.25 + self.mu

    def strong_convexity(self):
        return self.mu


def test_check_convex_catches_a_nonconvex_regularizer():
    z = torch.zeros(2, C, S, S, dtype=DT)
    with pytest.raises(ValueError, match="_Cosine is not convex"):
        check_convex(_Cosine(), z)
    check_convex(_Softplus(), z)
    E, _ = _problem()
    A = _operator("blur")
    with pytest.raises(ValueError, match="_Cosine is not convex"):
        solve(A, E, _Cosine(), A(_images(2)))
    with pytest.raises(ValueError, match="one value per sample"):
        check_convex(lambda z: z.sum(), z)


def test_operator_norm_estimate_is_an_upper_bound():
    for name in ("blur", "inpainting", "tomography"):
        A = _operator(name)
        exact = float(torch.linalg.matrix_norm(_dense(A, A.in_shape), 2) ** 2)
        est = operator_norm_sq(A)
        assert exact <= est <= 1.06 * exact, name
        assert operator_norm_sq(A) == est  # cached


# ---------------------------------------------------------------------------------------- the solve


def _cvxpy_solve(A, E, R, b: torch.Tensor) -> np.ndarray:
    cp = pytest.importorskip("cvxpy")
    AE = (_dense(A, A.in_shape) @ _dense(E, (C, S, S))).numpy()
    K = _dense(lambda t: F.conv2d(t, R.weight, padding=R.kernel_size // 2), (C, S, S)).numpy()
    c = R.bias.detach().repeat_interleave(S * S).numpy()
    w = R.scales.detach().repeat_interleave(S * S).numpy()
    eps, mu = R.eps, R.mu
    out = []
    for bb in b.reshape(b.shape[0], -1).numpy():
        z = cp.Variable(C * S * S)
        s = K @ z + c
        if R.penalty == "pseudo_huber":
            phi = cp.norm(cp.vstack([s, eps * np.ones(s.shape)]), 2, axis=0) - eps
        else:
            phi = eps * (cp.log_sum_exp(cp.vstack([s / eps, -s / eps]), axis=0) - math.log(2.0))
        f = 0.5 * cp.sum_squares(AE @ z - bb) + w @ phi + 0.5 * mu * cp.sum_squares(z)
        problem = cp.Problem(cp.Minimize(f))
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        assert problem.status == cp.OPTIMAL
        out.append(z.value)
    return np.stack(out)


@pytest.mark.parametrize(
    "op_name,penalty", [("blur", "pseudo_huber"), ("inpainting", "pseudo_huber"), ("blur", "log_cosh")]
)
def test_solve_reaches_the_cvxpy_optimum(op_name, penalty):
    A = _operator(op_name)
    E, R = _problem(penalty=penalty)
    u = _images(2)
    b, _ = add_noise(A(u), 0.05, generator=torch.Generator().manual_seed(2))
    res = solve(A, E, R, b, tol=1e-12, max_iter=20000)
    assert bool(res.converged.all())
    z_cvx = torch.from_numpy(_cvxpy_solve(A, E, R, b)).view(2, C, S, S)
    with torch.no_grad():
        ours, theirs = objective(A, E, R, b, res.z), objective(A, E, R, b, z_cvx)
    assert float(((ours - theirs) / theirs.abs()).max()) <= 1e-6, (ours, theirs)
    # the optimality condition holds at our solution
    with torch.no_grad():
        g = E.adjoint(A.adjoint(A(E(res.z)) - b)) + R.gradient(res.z)
    assert float(g.flatten(1).norm(dim=1).max()) <= 1e-8


def test_solve_float32_and_fista():
    A = _operator("blur")
    E, R = _problem()
    E, R = E.float(), R.float()
    b = A(_images(2).float())
    res = solve(A, E, R, b, tol=1e-5, max_iter=3000)
    assert res.z.dtype == torch.float32 and bool(res.converged.all())
    ref = solve(A, E.double(), R.double(), b.double(), tol=1e-12, max_iter=20000).z
    assert _rel(res.z.double(), ref) < 1e-3
    # a convex user regularizer without strong convexity: FISTA momentum, autograd gradients
    reg = _Softplus(mu=0.05)
    reg.strong_convexity = lambda: 0.0
    res = solve(A, E.double(), reg, b.double(), tol=1e-9, max_iter=20000)
    assert bool(res.converged.all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("penalty", ["pseudo_huber", "log_cosh"])
def test_solve_and_unrolled_iterate_bit_for_bit(penalty, dtype):
    A = _operator("inpainting", side=9)
    E, R = _problem(penalty=penalty)
    E, R = Synthesis(C, kernel_size=5).to(dtype), R.to(dtype)
    b = A(_images(3, side=9).to(dtype))
    res = solve(A, E, R, b, tol=1e-6, max_iter=150)
    ref = solve_unrolled(A, E, R, b, tol=1e-6, max_iter=150)
    assert torch.equal(res.iterations, ref.iterations)
    assert torch.equal(res.z, ref.z.detach()) and res.z.is_contiguous()


# ----------------------------------------------------------------------------------------- gradients


def _grads(result_z, E, R, b, u, weights):
    loss = ((E(result_z) - u) ** 2 * weights).sum()
    params = [b, *E.parameters(), *R.parameters()]
    return torch.autograd.grad(loss, params)


@pytest.mark.parametrize("op_name", ["blur", "tomography"])
def test_implicit_gradients_match_unrolled(op_name):
    A = _operator(op_name)
    E, R = _problem()
    u = _images(3)
    b = A(u).detach().requires_grad_()
    weights = torch.rand(3, 1, S, S, generator=torch.Generator().manual_seed(5), dtype=DT)
    implicit = solve(A, E, R, b, tol=1e-13, max_iter=20000, cg_tol=1e-13)
    unrolled = solve_unrolled(A, E, R, b, tol=1e-13, max_iter=20000)
    assert torch.equal(implicit.iterations, unrolled.iterations)
    assert bool(implicit.converged.all())
    g_imp = _grads(implicit.z, E, R, b, u, weights)
    g_unr = _grads(unrolled.z, E, R, b, u, weights)
    names = ["b"] + [f"E.{n}" for n, _ in E.named_parameters()] + [f"R.{n}" for n, _ in R.named_parameters()]
    for name, gi, gu in zip(names, g_imp, g_unr, strict=True):
        assert _rel(gi, gu) < 1e-5, (name, _rel(gi, gu))


def test_implicit_gradients_with_autograd_regularizer():
    A = _operator("inpainting")
    E, _ = _problem()
    R = _Softplus(mu=0.2)
    u = _images(2)
    b = A(u).detach().requires_grad_()
    imp = solve(A, E, R, b, tol=1e-13, max_iter=20000, cg_tol=1e-13).z
    unr = solve_unrolled(A, E, R, b, tol=1e-13, max_iter=20000).z
    for gi, gu in zip(_grads(imp, E, R, b, u, 1.0), _grads(unr, E, R, b, u, 1.0), strict=True):
        assert _rel(gi, gu) < 1e-5


def test_gradcheck_implicit_solve():
    A = Inpainting((4, 4), observed=0.75, seed=0)
    torch.manual_seed(0)
    E = Synthesis(2, kernel_size=3).to(DT)
    R = ConvexRegularizer(2, 2, kernel_size=3, mu=0.5, init_scale=0.3).to(DT)
    b = A(_images(2, side=4)).detach().requires_grad_()

    def fn(b, *params):
        return solve(A, E, R, b, tol=1e-15, max_iter=5000, cg_tol=1e-15).z

    params = [E.weight, R.weight, R.bias, R.raw_scale]
    assert torch.autograd.gradcheck(fn, (b, *params), eps=1e-6, atol=1e-6, fast_mode=True)


def _saved_bytes(fn) -> int:
    """Bytes of distinct storages that autograd saves for backward while ``fn`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_memory_does_not_grow_with_iterations():
    A = _operator("blur")
    E, R = _problem()
    b = A(_images(2))

    def run(method, n):
        return _saved_bytes(lambda: method(A, E, R, b, tol=0.0, max_iter=n).z.sum())

    assert run(solve, 10) == run(solve, 100)
    assert run(solve_unrolled, 100) > 5 * run(solve_unrolled, 10) > 5 * run(solve, 10)


# ------------------------------------------------------------------------------------- discrepancy


def test_discrepancy_principle():
    A = _operator("blur")
    torch.manual_seed(0)
    E = Synthesis(C, kernel_size=3).to(DT)
    R = ConvexRegularizer(C, J, kernel_size=3, mu=1e-4, init_scale=1e-4).to(DT)
    u = _images(4)
    level = torch.tensor([0.03, 0.06, 0.12, 0.24], dtype=DT)
    b, sigma = add_noise(A(u), level, generator=torch.Generator().manual_seed(4))
    tau = 1.2
    res = solve(A, E, R, b, sigma=sigma, tau=tau, tol=1e-12, max_iter=20000)
    target = tau * sigma * math.sqrt(S * S)
    assert bool(res.discrepancy.all()) and bool(res.converged.all())
    assert bool((res.misfit <= target * (1 + 1e-12)).all())
    assert bool((res.misfit >= 0.75 * target).all()), res.misfit / target
    for i, k in enumerate(res.iterations.tolist()):  # no earlier tested iterate was below the target
        early = solve(A, E, R, b, sigma=sigma, tau=tau, tol=1e-12, max_iter=k)
        assert not bool(early.discrepancy[i]) and not bool(early.converged[i])
    assert len(set(res.iterations.tolist())) == 4  # each sample stopped at its own iteration
    assert bool((res.iterations[:-1] > res.iterations[1:]).all())  # less noise, more iterations
    unrolled = solve_unrolled(A, E, R, b, sigma=sigma, tau=tau, tol=1e-12, max_iter=20000)
    assert torch.equal(unrolled.iterations, res.iterations)
    torch.testing.assert_close(unrolled.z, res.z, rtol=0, atol=0)
    # a scalar sigma and sigma = 0 (never reached: the step tolerance stops)
    res0 = solve(A, E, R, b, sigma=0.0, tol=1e-6, max_iter=20000)
    assert not bool(res0.discrepancy.any()) and bool(res0.converged.all())


# ----------------------------------------------------------------------------------------- bad input


class _Strided(Synthesis):
    """A synthesis map that breaks the contract: it halves the image."""

    def forward(self, z):
        return F.conv2d(z, self.weight, padding=1, stride=2)


class _WrongShape(GaussianBlur):
    @property
    def in_shape(self):
        return (2, *self.shape)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(b=torch.zeros(2, 1, S, S + 1, dtype=DT)), "b must be the data Tensor"),
        (dict(b=torch.zeros(2, S, S, dtype=DT)), "b must be the data Tensor"),
        (dict(b=torch.full((2, 1, S, S), float("nan"), dtype=DT)), "b contains non-finite"),
        (dict(b=torch.zeros(2, 1, S, S)), "dtype torch.float64 .* b is torch.float32"),
        (dict(sigma=-0.1), "sigma .* >= 0"),
        (dict(sigma=torch.tensor([0.1, -0.1], dtype=DT)), "sigma .* >= 0"),
        (dict(sigma=torch.ones(3, dtype=DT)), r"sigma must be a number or a Tensor\[2\]"),
        (dict(sigma="0.1"), "sigma must be None"),
        (dict(tau=0.0), "tau must be a finite number > 0"),
        (dict(tol=-1.0), "tol must be a finite number >= 0"),
        (dict(max_iter=0), "max_iter must be an integer >= 1"),
        (dict(z0=torch.zeros(2, C + 1, S, S, dtype=DT)), r"z0 must be a latent Tensor\[2, 4, 8, 8\]"),
        (dict(z0=torch.full((2, C, S, S), float("inf"), dtype=DT)), "z0 contains non-finite"),
        (dict(R=ConvexRegularizer(C + 1, J).to(DT)), "R has latent_channels=5 but E has latent_channels=4"),
        (dict(A=_WrongShape((S, S))), r"A.in_shape must be \(1, H, W\)"),
        (dict(E=nn.Identity()), "E .Identity. does not satisfy the contract"),
        (dict(E=_Strided(C, 3).to(DT)), r"E .* must map latents Tensor\[B, 4, 8, 8\] to images"),
        (dict(R=lambda z: z.sum()), "R .function. does not satisfy the contract"),
    ],
)
def test_bad_input(change, match):
    E, R = _problem()
    args = dict(A=_operator("blur"), E=E, R=R, b=torch.zeros(2, 1, S, S, dtype=DT))
    args.update(change)
    kwargs = {k: v for k, v in args.items() if k not in ("A", "E", "R", "b")}
    for fn in (solve, solve_unrolled):
        with pytest.raises(ValueError, match=match):
            fn(args["A"], args["E"], args["R"], args["b"], **kwargs)


def test_image_shape_mismatch_between_operator_and_latent():
    E, R = _problem()
    A = _operator("blur", side=6)
    with pytest.raises(ValueError, match=r"b must be the data Tensor\[B, 1, 6, 6\]"):
        solve(A, E, R, torch.zeros(2, 1, S, S, dtype=DT))
    with pytest.raises(ValueError, match="Synthesis: z must be a latent Tensor"):
        E(torch.zeros(2, C + 1, S, S, dtype=DT))


def test_identity_synthesis_and_tv_regularizer_starts():
    torch.manual_seed(0)
    E = Synthesis(C, 3).double().select_channel_(2, noise=0.0)
    z = torch.randn(3, C, S, S, dtype=DT)
    assert torch.equal(E(z), z[:, 2:3])
    R = (
        ConvexRegularizer(C, J, 3, eps=0.05, mu=1e-3, strength=7.0)
        .double()
        .init_tv_(0.2, channel=2, noise=0.0)
    )
    u = z[:, 2]
    dx = F.pad(u[..., :, 1:], (0, 1)) - u
    dy = F.pad(u[..., 1:, :], (0, 0, 0, 1)) - u
    phi = lambda s: torch.sqrt(s * s + 0.05**2) - 0.05  # noqa: E731
    expected = 0.2 * (phi(dx) + phi(dy)).flatten(1).sum(1) + 0.5 * 7.0 * 1e-3 * z.flatten(1).square().sum(1)
    torch.testing.assert_close(R(z), expected)
    # with noise the other weights shrink but stay random (no symmetric zero start)
    E2 = Synthesis(C, 3)
    before = E2.weight.detach().clone()
    E2.select_channel_(0, noise=0.01)
    torch.testing.assert_close(E2.weight[0, 1:], 0.01 * before[0, 1:])
    with pytest.raises(ValueError, match="select_channel_: channel must be an integer in"):
        Synthesis(C).select_channel_(C)
    with pytest.raises(ValueError, match="init_tv_: weight must be a finite number > 0"):
        ConvexRegularizer(C, J).init_tv_(0.0)
    with pytest.raises(ValueError, match="init_tv_: needs n_filters >= 2"):
        ConvexRegularizer(C, 1).init_tv_(0.1)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Synthesis(0), "Synthesis: latent_channels must be an integer >= 1"),
        (lambda: Synthesis(4, kernel_size=4), "Synthesis: kernel_size must be an odd integer"),
        (lambda: ConvexRegularizer(4, penalty="l1"), "ConvexRegularizer: penalty must be one of"),
        (lambda: ConvexRegularizer(4, mu=0.0), "ConvexRegularizer: mu must be a finite number > 0"),
        (lambda: ConvexRegularizer(4, eps=-1.0), "ConvexRegularizer: eps must be a finite number > 0"),
        (lambda: ConvexRegularizer(4, strength=0.0), "ConvexRegularizer: strength must be a finite"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_finite_checks_are_restored():
    E, R = _problem()
    A = _operator("blur")
    solve(A, E, R, A(_images(1)), max_iter=5)
    assert A.check_finite is True and "check_finite" not in vars(A)
    A.check_finite = False
    solve(A, E, R, A(_images(1)), max_iter=5)
    assert A.check_finite is False
