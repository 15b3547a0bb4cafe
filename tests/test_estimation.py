"""dtwin.estimation: Levenberg-Marquardt on exact Jacobians and the prediction-error method."""

from __future__ import annotations

import pytest
import torch

from dtwin.estimation import batched_gauss_newton, gauss_newton, prediction_error_method
from dtwin.sim import tanks


def test_gauss_newton_solves_rosenbrock():
    def residual(x):
        return torch.stack((10 * (x[1] - x[0] ** 2), 1 - x[0]))

    result = gauss_newton(residual, torch.tensor([-1.2, 1.0], dtype=torch.float64), iterations=100)
    torch.testing.assert_close(result.x, torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=1e-6, atol=1e-6)
    assert result.cost < 1e-12 < result.initial_cost
    assert result.jacobian.shape == (2, 2)


def test_batched_gauss_newton_equals_one_start_at_a_time():
    def rosenbrock(x):  # [S, 2] -> [S, 2]
        return torch.stack((10 * (x[:, 1] - x[:, 0] ** 2), 1 - x[:, 0]), 1)

    starts = torch.tensor([[-1.2, 1.0], [2.0, -1.0], [0.5, 0.5]], dtype=torch.float64)
    batched = batched_gauss_newton(rosenbrock, starts, iterations=6, max_step=1.0)
    for start, b in zip(starts, batched, strict=True):
        single = gauss_newton(lambda x: rosenbrock(x[None])[0], start, iterations=6, max_step=1.0, tol=0.0)
        torch.testing.assert_close(b.x, single.x)
        assert b.iterations == single.iterations and abs(b.cost - single.cost) <= 1e-12 * max(
            1.0, single.cost
        )
    assert all(b.cost < b.initial_cost for b in batched)


def test_max_step_caps_every_step():
    result = gauss_newton(
        lambda x: x - 100.0, torch.zeros(3, dtype=torch.float64), iterations=2, max_step=1.0
    )
    assert float(result.x.abs().max()) <= 2.0 + 1e-12


def test_pem_recovers_tank_parameters_from_a_clean_record():
    theta0 = torch.tensor([0.7, 0.5, 0.6, 1.1], dtype=torch.float64)
    u = tanks.random_input(1, 200, generator=torch.Generator().manual_seed(0))[0]
    y = tanks.simulate(theta0, u, noise=False)[0]
    theta, report = prediction_error_method(
        lambda th: tanks.simulate(th, u, noise=False)[0], y, theta0 * 1.1, iterations=30, tol=1e-12
    )

    # the output fixes k3, k2 k1 and k1^2 / k4 (the scaling valley); check those
    def invariants(t):
        return torch.stack((t[2], t[0] * t[1], t[0] ** 2 / t[3]))

    torch.testing.assert_close(invariants(theta), invariants(theta0), rtol=1e-4, atol=1e-6)
    assert report["cost"] < 1e-8 and report["iterations"] >= 1


def test_bad_input():
    with pytest.raises(ValueError, match="x0 must be a 1-D tensor"):
        gauss_newton(lambda x: x, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="theta0 must be positive"):
        prediction_error_method(lambda t: t, torch.zeros(4), torch.tensor([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        prediction_error_method(lambda t: t, torch.tensor([float("nan")]), torch.ones(1))
