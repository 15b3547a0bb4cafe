"""The water-tanks twin: the Euler recursion by hand, noise, the scaling invariance of its output,
batched draws, the compressions, and bad input."""

from __future__ import annotations

import pytest
import torch

from dtwin.sim import tanks


def test_one_record_follows_the_euler_recursion_without_noise():
    theta = torch.tensor([0.5, 0.6, 0.7, 1.1], dtype=torch.float64)
    u = torch.tensor([1.0, 2.0, 0.0, 3.0, 1.5], dtype=torch.float64)
    y = tanks.simulate(theta, u, noise=False)[0]
    h1 = h2 = 0.0
    expected = []
    for t in range(5):
        expected.append(h2)
        n1 = h1 + 0.5 * (-0.5 * h1**0.5 + 1.1 * u[t].item())
        n2 = h2 + 0.5 * (0.6 * h1**0.5 - 0.7 * h2**0.5)
        h1, h2 = max(n1, 0.0), max(n2, 0.0)
    torch.testing.assert_close(y, torch.tensor(expected, dtype=torch.float64))


def test_noise_levels_and_reproducibility():
    theta = torch.tensor([0.6, 0.6, 0.6, 1.0], dtype=torch.float64)
    u = tanks.random_input(1, generator=torch.Generator().manual_seed(0))[0]
    clean = tanks.simulate(theta, u, noise=False)[0]
    a = tanks.simulate(theta.expand(400, -1), u, generator=torch.Generator().manual_seed(1))
    b = tanks.simulate(theta.expand(400, -1), u, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    # the first sample is the empty tank plus measurement noise alone: std 0.15
    assert abs(a[:, 0].std().item() - 0.15) < 0.02
    assert (a.mean(0) - clean).abs().mean() < 0.3


def test_the_output_is_invariant_under_the_scaling_of_tank_one():
    """(k1, k2, k3, k4) -> (k1 / sqrt(c), k2 sqrt(c), k3, k4 / c) leaves y unchanged: a valley
    of equal misfit that every estimator has to live with."""
    theta = torch.tensor([1.2, 1.2, 0.9, 1.0], dtype=torch.float64)
    u = tanks.random_input(1, generator=torch.Generator().manual_seed(3))[0]
    y = tanks.simulate(theta, u, noise=False)
    for c in (0.25, 4.0, 50.0):
        scaled = theta * torch.tensor([c**-0.5, c**0.5, 1.0, 1.0 / c], dtype=torch.float64)
        torch.testing.assert_close(tanks.simulate(scaled, u, noise=False), y, rtol=1e-10, atol=1e-10)


def test_gradients_are_finite_from_an_empty_tank():
    theta = torch.tensor([0.6, 0.6, 0.6, 1.0], dtype=torch.float64, requires_grad=True)
    u = tanks.random_input(1, generator=torch.Generator().manual_seed(0))[0]
    tanks.simulate(theta, u, noise=False).sum().backward()
    assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0


def test_arx_features_recover_a_linear_system():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(3, 500, generator=g, dtype=torch.float64)
    y = torch.zeros(3, 500, dtype=torch.float64)
    for t in range(2, 500):
        y[:, t] = 0.6 * y[:, t - 1] - 0.1 * y[:, t - 2] + 0.5 * u[:, t - 1] + 0.2 * u[:, t - 2] + 0.3
    f = tanks.arx_features(u, y, na=2, nb=2)
    expected = torch.tensor([0.6, -0.1, 0.5, 0.2, 0.3], dtype=torch.float64).expand(3, -1)
    torch.testing.assert_close(f, expected, rtol=1e-6, atol=1e-6)


def test_quantile_features():
    y = torch.arange(101, dtype=torch.float64)[None]
    torch.testing.assert_close(
        tanks.quantile_features(y), torch.tensor([[10.0, 25.0, 50.0, 75.0, 90.0]], dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tanks.simulate(torch.ones(3), torch.ones(10)), r"theta must be \[B, 4\]"),
        (lambda: tanks.simulate(torch.ones(2, 4), torch.ones(3, 10)), r"u must be \[N\] or \[B=2, N\]"),
        (lambda: tanks.simulate(torch.tensor([1.0, 1.0, -1.0, 1.0]), torch.ones(10)), "non-positive"),
        (lambda: tanks.simulate(torch.ones(4), torch.tensor([1.0, float("nan")])), "finite"),
        (lambda: tanks.sample_prior(3, None, (0.8, 0.4, 0.4, 0.8), (0.4, 0.8, 0.8, 1.2)), "low > high"),
        (lambda: tanks.arx_features(torch.ones(2, 10), torch.ones(2, 12)), "same shape"),
        (lambda: tanks.arx_features(torch.ones(1, 6), torch.ones(1, 6)), "too short"),
        (lambda: tanks.arx_features(torch.ones(1, 50), torch.full((1, 50), float("inf"))), "non-finite"),
        (lambda: tanks.random_input(0), "batch, n and hold >= 1"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
