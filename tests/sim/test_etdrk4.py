"""ETDRK4: the contour-integral coefficients against their closed forms and limits, exactness on
linear and constant-forcing problems, fourth order on a stiff Bernoulli equation, bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtwin.sim.etdrk4 import etdrk4_coefficients, etdrk4_step


def _direct(z: float, h: float) -> dict[str, float]:
    # the closed forms, accurate in float64 where |z| is not small
    e, e2 = math.exp(z), math.exp(z / 2)
    return {
        "E": e,
        "E2": e2,
        "Q": h * (e2 - 1) / z,
        "f1": h * (-4 - z + e * (4 - 3 * z + z * z)) / z**3,
        "f2": h * (2 + z + e * (z - 2)) / z**3,
        "f3": h * (-4 - 3 * z - z * z + e * (4 - z)) / z**3,
    }


def test_coefficients_match_the_closed_forms_away_from_zero():
    h = 0.1
    lam = torch.tensor([-3000.0, -50.0, -8.0, 15.0], dtype=torch.float64)
    coef = etdrk4_coefficients(lam, h)
    for i, z in enumerate((h * lam).tolist()):
        for name, value in _direct(z, h).items():
            assert coef[name][i].item() == pytest.approx(value, rel=1e-12, abs=1e-300), (name, z)


def test_coefficients_have_the_rk4_limits_where_the_closed_forms_cancel():
    """At z -> 0: Q -> h/2 and f1, f2, f3 -> h/6 (classical RK4); the closed forms lose every
    digit there, the contour mean none."""
    h = 0.5
    coef = etdrk4_coefficients(torch.tensor([0.0, 1e-9, -1e-6], dtype=torch.float64), h)
    torch.testing.assert_close(coef["Q"], torch.full((3,), h / 2, dtype=torch.float64), rtol=1e-6, atol=0)
    for name in ("f1", "f2", "f3"):
        torch.testing.assert_close(
            coef[name], torch.full((3,), h / 6, dtype=torch.float64), rtol=1e-6, atol=0
        )
    torch.testing.assert_close(coef["E"][0], torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=0)


def test_coefficient_dtypes_follow_lam():
    real = etdrk4_coefficients(torch.tensor([-1.0, -2.0]), 0.1)
    assert all(c.dtype == torch.float32 for c in real.values())
    cplx = etdrk4_coefficients(torch.tensor([-1.0 + 2.0j], dtype=torch.complex128), 0.1)
    assert all(c.dtype == torch.complex128 for c in cplx.values())
    # a purely imaginary lam (dispersion): E is a rotation
    torch.testing.assert_close(cplx["E"].abs(), torch.tensor([math.exp(-0.1)], dtype=torch.float64))
    shaped = etdrk4_coefficients(torch.zeros(2, 5, dtype=torch.float64), 0.1)
    assert all(c.shape == (2, 5) for c in shaped.values())


def test_linear_and_constant_forcing_problems_are_exact():
    """N = c constant: v(h) = e^{h lam} v + (e^{h lam} - 1) / lam * c, which ETDRK4 reproduces
    (f1 + 2 f2 + f3 = h phi_1(h lam)); N = 0: v(h) = e^{h lam} v."""
    lam = torch.tensor([-400.0, -3.0, 0.7], dtype=torch.float64)
    h = 0.2
    coef = etdrk4_coefficients(lam, h)
    v = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.0, 4.0]], dtype=torch.float64)
    c = torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64)
    exact = torch.exp(h * lam) * v + torch.expm1(h * lam) / lam * c
    torch.testing.assert_close(etdrk4_step(v, lambda w: c.expand_as(w), coef), exact, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(etdrk4_step(v, torch.zeros_like, coef), torch.exp(h * lam) * v)


def test_fourth_order_on_a_bernoulli_equation():
    """v' = a v + v^2 (exact: 1 / v(t) = (1/v0 + 1/a) e^{-a t} - 1/a) for decaying, growing and
    oscillating-decaying rates a: halving h divides the relative error at t = 1 by ~16."""
    a = torch.tensor([-1.0, -8.0, 0.5, -2.0 + 3.0j], dtype=torch.complex128)
    v0 = torch.full((4,), 0.5, dtype=torch.complex128)
    exact = 1.0 / ((1 / v0 + 1 / a) * torch.exp(-a) - 1 / a)
    errors = []
    for n in (10, 20, 40, 80):
        coef = etdrk4_coefficients(a, 1.0 / n)
        v = v0
        for _ in range(n):
            v = etdrk4_step(v, lambda w: w * w, coef)
        errors.append(((v - exact).abs() / exact.abs()).max().item())
    orders = [math.log2(e0 / e1) for e0, e1 in itertools.pairwise(errors)]
    assert errors[-1] < 1e-7
    assert all(3.7 < p < 4.4 for p in orders), (errors, orders)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: etdrk4_coefficients([1.0], 0.1), "lam must be a tensor"),
        (lambda: etdrk4_coefficients(torch.tensor([1, 2]), 0.1), "real or complex"),
        (lambda: etdrk4_coefficients(torch.tensor([float("nan")]), 0.1), "finite"),
        (lambda: etdrk4_coefficients(torch.tensor([-1.0]), 0.0), "h must be a finite number > 0"),
        (lambda: etdrk4_coefficients(torch.tensor([-1.0]), 0.1, n_contour=2), "n_contour"),
        (lambda: etdrk4_step(torch.ones(3), torch.zeros_like, {"E": torch.ones(3)}), "keys"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
