"""dtwin.nn.variational: Tikhonov and total-variation baselines and the choice of their weight."""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import pytest
import torch

from dtwin.nn import (
    discrepancy_lambda,
    image_gradient,
    image_gradient_adjoint,
    select_lambda,
    tikhonov,
    total_variation,
    tv_norm,
)
from dtwin.sim.imaging import GaussianBlur, Inpainting, Tomography, add_noise

DT = torch.float64
S = 8  # image side
OPERATORS = ("blur", "inpainting", "tomography")


pytestmark = pytest.mark.usefixtures("one_thread")


def _operator(name: str, side: int = S):
    if name == "blur":
        return GaussianBlur((side, side), sigma=1.0)
    if name == "inpainting":
        return Inpainting((side, side), observed=0.5, seed=1)
    return Tomography((side, side), n_angles=6)


def _images(B: int, side: int = S, seed: int = 0) -> torch.Tensor:
    """Piecewise-constant squares plus a little texture, in [0, 1]: Tensor[B, 1, side, side]."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(B, 1, side, side, generator=g, dtype=DT)
    for b in range(B):
        i, j = 1 + b % 3, 2 + b % 2
        x[b, 0, i : i + side // 2, j : j + side // 2] += 0.7
    return x


def _data(A, B: int, level: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = _images(B, seed=seed)
    y, sigma = add_noise(A(x), level, generator=torch.Generator().manual_seed(seed + 1))
    return x, y, sigma


def _dense(linear, n_in: int, in_shape: tuple[int, ...]) -> np.ndarray:
    """The matrix of a linear map on Tensor[B, *in_shape], by applying it to the basis vectors."""
    basis = torch.eye(n_in, dtype=DT).view(n_in, *in_shape)
    return linear(basis).reshape(n_in, -1).T.numpy()


def _differences(side: int = S) -> tuple[np.ndarray, np.ndarray]:
    Dy, Dx = _dense(image_gradient, side * side, (1, side, side)).reshape(2, side * side, side * side)
    return Dy, Dx


def _tv_objective(A, y, x, lam) -> torch.Tensor:
    return 0.5 * (A(x) - y).flatten(1).square().sum(1) + lam * tv_norm(x)


# ------------------------------------------------------------------------------- finite differences


def test_gradient_adjoint_and_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 5, 7, generator=g, dtype=DT)
    p = torch.randn(2, 2, 5, 7, generator=g, dtype=DT)
    lhs = (image_gradient(x) * p).sum()
    rhs = (x * image_gradient_adjoint(p)).sum()
    assert abs(float(lhs - rhs)) < 1e-12 * float(lhs.abs() + 1)
    # Neumann: the last row / column of the differences vanish, constants have no gradient
    d = image_gradient(x)
    assert d[:, 0, -1].abs().max() == 0 and d[:, 1, :, -1].abs().max() == 0
    assert image_gradient(torch.ones(1, 1, 5, 7, dtype=DT)).abs().max() == 0
    G = _dense(image_gradient, 35, (1, 5, 7))
    assert np.linalg.norm(G, 2) ** 2 < 8.0
    # isotropic TV: the Euclidean norm of the two differences per pixel
    expected = np.sqrt(d[:, 0].numpy() ** 2 + d[:, 1].numpy() ** 2).reshape(2, -1).sum(1)
    np.testing.assert_allclose(tv_norm(x).numpy(), expected, rtol=1e-13)


# ----------------------------------------------------------------------------------------- Tikhonov


@pytest.mark.parametrize("regularizer", ["gradient", "identity"])
@pytest.mark.parametrize("name", OPERATORS)
def test_tikhonov_matches_closed_form(name, regularizer):
    A = _operator(name)
    _, y, _ = _data(A, 2)
    lam = torch.tensor([1e-2, 0.5], dtype=DT)
    x = tikhonov(A, y, lam, regularizer=regularizer, tol=1e-14, max_iter=1000)
    assert x.shape == (2, 1, S, S) and x.dtype == DT
    Am = _dense(A, S * S, (1, S, S))
    if regularizer == "gradient":
        Dy, Dx = _differences()
        LtL = Dy.T @ Dy + Dx.T @ Dx
    else:
        LtL = np.eye(S * S)
    for b in range(2):
        H = Am.T @ Am + float(lam[b]) * LtL
        expected = np.linalg.solve(H, Am.T @ y[b].reshape(-1).numpy())
        np.testing.assert_allclose(x[b].reshape(-1).numpy(), expected, rtol=0, atol=1e-8)


def test_tikhonov_warm_start_and_per_sample_lam():
    A = _operator("tomography")
    _, y, _ = _data(A, 3)
    lam = torch.tensor([1e-3, 1e-1, 3.0], dtype=DT)
    x = tikhonov(A, y, lam, tol=1e-12, max_iter=500)
    for b in range(3):
        xb = tikhonov(A, y[b : b + 1], float(lam[b]), tol=1e-12, max_iter=500)
        torch.testing.assert_close(x[b : b + 1], xb, rtol=0, atol=1e-10)
    # from the solution, the warm start is already converged
    again = tikhonov(A, y, lam, tol=1e-6, max_iter=1, x0=x)
    torch.testing.assert_close(again, x, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------- total variation


def _cvxpy_tv(A, y: torch.Tensor, lam: float, box: tuple[float, float] | None) -> float:
    """The optimal value of 1/2 ||A x - y||^2 + lam TV(x) (+ box) for one sample, by CVXPY."""
    Am = _dense(A, S * S, (1, S, S))
    Dy, Dx = _differences()
    x = cp.Variable(S * S)
    tv = cp.sum(cp.norm(cp.vstack([Dy @ x, Dx @ x]), 2, axis=0))
    objective = 0.5 * cp.sum_squares(Am @ x - y.reshape(-1).numpy()) + lam * tv
    constraints = []
    if box is not None:
        constraints = [x >= box[0]] + ([x <= box[1]] if math.isfinite(box[1]) else [])
    problem = cp.Problem(cp.Minimize(objective), constraints)
    problem.solve(solver=cp.CLARABEL)
    assert problem.status == cp.OPTIMAL
    return float(problem.value)


@pytest.mark.parametrize(
    ("name", "box"),
    [
        ("blur", (0.0, 1.0)),
        ("inpainting", (0.0, 1.0)),
        ("tomography", (0.0, 1.0)),
        ("blur", None),
        ("tomography", (0.0, math.inf)),
    ],
)
def test_total_variation_matches_cvxpy(name, box):
    A = _operator(name)
    _, y, _ = _data(A, 2)
    if box is not None and math.isinf(box[1]):
        y = 3.0 * y - 0.5  # bright and dark: both bounds of (0, 1) would be active
    lam = torch.tensor([0.05, 0.5], dtype=DT)
    x = total_variation(A, y, lam, box=box, tol=0.0, max_iter=3000)
    assert x.shape == (2, 1, S, S) and x.dtype == DT
    if box is not None:
        assert float(x.min()) >= box[0] and float(x.max()) <= box[1]
    if box == (0.0, math.inf):
        assert float(x.min()) == 0.0 and float(x.max()) > 1.0
    ours = _tv_objective(A, y, x, lam)
    for b in range(2):
        ref = _cvxpy_tv(A, y[b], float(lam[b]), box)
        assert abs(float(ours[b]) - ref) <= 1e-4 * abs(ref), (b, float(ours[b]), ref)


def test_total_variation_per_sample_lam_matches_separate_calls():
    A = _operator("blur")
    _, y, _ = _data(A, 3)
    lam = torch.tensor([0.02, 0.2, 1.0], dtype=DT)
    for tol, max_iter in ((0.0, 200), (1e-6, 2000)):
        x = total_variation(A, y, lam, tol=tol, max_iter=max_iter)
        for b in range(3):
            xb = total_variation(A, y[b : b + 1], float(lam[b]), tol=tol, max_iter=max_iter)
            torch.testing.assert_close(x[b : b + 1], xb, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["tikhonov", "total_variation"])
def test_float32_follows_float64(method):
    A = _operator("tomography")
    _, y, _ = _data(A, 2)
    solver = tikhonov if method == "tikhonov" else total_variation
    x64 = solver(A, y, 0.1, tol=0.0, max_iter=100)
    x32 = solver(A, y.float(), 0.1, tol=0.0, max_iter=100)
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32.double(), x64, rtol=0, atol=1e-3)


# ---------------------------------------------------------------------------------- choosing lam


def test_select_lambda_picks_best_mean_psnr():
    from dtwin.models.losses import psnr

    A = _operator("blur")
    x_true, y, _ = _data(A, 2, level=0.05)
    grid = [1e-4, 1e-2, 1.0, 100.0]
    best, table = select_lambda("tikhonov", A, y, x_true, grid, tol=1e-10)
    assert list(table) == grid
    assert table[best] == max(table.values())
    expected = float(psnr(tikhonov(A, y, best, tol=1e-10), x_true).mean())
    assert table[best] == pytest.approx(expected, abs=1e-9)
    # a heavy smoothing is worse than the best
    assert table[100.0] < table[best]


@pytest.mark.parametrize(
    ("method", "name", "kwargs"),
    [
        ("tikhonov", "blur", {"tol": 1e-12, "max_iter": 500}),
        ("tikhonov", "tomography", {"tol": 1e-12, "max_iter": 500}),
        ("total_variation", "inpainting", {"tol": 1e-9, "max_iter": 600}),
    ],
)
def test_discrepancy_lambda_is_the_largest_admissible(method, name, kwargs):
    A = _operator(name)
    x_true = _images(3)
    y, sigma = add_noise(
        A(x_true), torch.tensor([0.02, 0.1, 0.3], dtype=DT), torch.Generator().manual_seed(5)
    )
    tau, lo, hi = 1.2, 1e-4, 10.0
    result = discrepancy_lambda(method, A, y, sigma, tau=tau, lo=lo, hi=hi, steps=9, **kwargs)
    target = tau * sigma * math.sqrt(math.prod(A.out_shape))
    assert result.satisfied.all()
    assert result.lam.shape == (3,) and result.x.shape == (3, 1, S, S)
    misfit = (A(result.x) - y).flatten(1).norm(dim=1)
    torch.testing.assert_close(result.misfit, misfit)
    assert (misfit <= target).all()
    solver = tikhonov if method == "tikhonov" else total_variation
    larger = solver(A, y, 1.1 * result.lam, **kwargs)
    over = (A(larger) - y).flatten(1).norm(dim=1) > target
    at_top = result.lam >= hi * (1 - 1e-12)
    assert (over | at_top).all(), (result.lam, misfit, target)


def test_discrepancy_lambda_reports_unreachable_bound():
    A = _operator("blur")
    _, y, _ = _data(A, 2)
    result = discrepancy_lambda(
        "tikhonov", A, y, torch.tensor([0.0, 1e3], dtype=DT), lo=1e-3, hi=1.0, steps=2
    )
    # sample 0: no noise, even lo misfits; sample 1: huge noise, hi already fits
    assert result.satisfied.tolist() == [False, True]
    torch.testing.assert_close(result.lam, torch.tensor([1e-3, 1.0], dtype=DT))


# -------------------------------------------------------------------------------------- bad input


def _bad_calls():
    A = _operator("blur")
    y = torch.zeros(2, 1, S, S, dtype=DT)
    nan = y.clone()
    nan[0, 0, 0, 0] = float("nan")
    x = torch.zeros(2, 1, S, S, dtype=DT)
    return [
        (lambda: tikhonov(A, nan, 0.1), "y contains non-finite"),
        (lambda: total_variation(A, nan, 0.1), "y contains non-finite"),
        (lambda: tikhonov(A, torch.zeros(2, 1, S, S + 1, dtype=DT), 0.1), "y must be"),
        (lambda: total_variation(A, torch.zeros(2, S, S, dtype=DT), 0.1), "y must be"),
        (lambda: tikhonov(A, y.float().int(), 0.1), "y must be"),
        (lambda: tikhonov(A, y, 0.0), "lam"),
        (lambda: total_variation(A, y, -1.0), "lam"),
        (lambda: tikhonov(A, y, torch.tensor([0.1, -0.1], dtype=DT)), "lam"),
        (lambda: tikhonov(A, y, torch.ones(3, dtype=DT)), "lam"),
        (lambda: total_variation(A, y, float("nan")), "lam"),
        (lambda: tikhonov(A, y, "big"), "lam"),
        (lambda: tikhonov(A, y, 0.1, regularizer="laplacian"), "regularizer"),
        (lambda: tikhonov(A, y, 0.1, max_iter=0), "max_iter"),
        (lambda: tikhonov(A, y, 0.1, tol=-1.0), "tol"),
        (lambda: tikhonov(A, y, 0.1, x0=x[:1]), "x0"),
        (lambda: total_variation(A, y, 0.1, x0=x.float()), "x0"),
        (lambda: total_variation(A, y, 0.1, box=(1.0, 0.0)), "box"),
        (lambda: total_variation(A, y, 0.1, balance=0.0), "balance"),
        (lambda: tikhonov(object(), y, 0.1), "A "),
        (lambda: select_lambda("lasso", A, y, x, [0.1]), "method"),
        (lambda: select_lambda("tikhonov", A, y, x, []), "grid"),
        (lambda: select_lambda("tikhonov", A, y, x, [0.1, 0.0]), "grid"),
        (lambda: select_lambda("tikhonov", A, y, x[:1], [0.1]), "x_true"),
        (lambda: discrepancy_lambda("tikhonov", A, y, -0.1), "sigma"),
        (lambda: discrepancy_lambda("tikhonov", A, y, 0.1, tau=0.0), "tau"),
        (lambda: discrepancy_lambda("tikhonov", A, y, 0.1, lo=1.0, hi=0.5), "lo and hi"),
        (lambda: discrepancy_lambda("tikhonov", A, y, 0.1, steps=-1), "steps"),
        (lambda: discrepancy_lambda("tikhonov", A, nan, 0.1), "y contains non-finite"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_input_raises_value_error(index):
    call, match = _bad_calls()[index]
    with pytest.raises(ValueError, match=match):
        call()
