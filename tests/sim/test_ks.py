"""The Kuramoto-Sivashinsky twin: the PDE it solves (residual), fourth order in the step,
conservation of the mean, a bounded chaotic attractor, shapes, and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtwin.errors import SimulationError
from dtwin.sim import ks


@pytest.fixture(scope="module")
def on_attractor() -> torch.Tensor:
    return ks.attractor_initial(4, generator=torch.Generator().manual_seed(0))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm(dim=-1) / b.norm(dim=-1)).max().item()


def test_the_solution_satisfies_the_pde(on_attractor):
    """u_t (central differences in time) = -(u u_x + u_xx + u_xxxx) (derivatives by FFT), checked
    independently of the stepper's Fourier-space form and sign conventions."""
    dt = 1e-3
    u = ks.simulate(on_attractor[:2], 20, dt=dt, substeps=1)
    k = 2 * math.pi * torch.fft.fftfreq(ks.N_GRID, d=ks.LENGTH / ks.N_GRID, dtype=torch.float64)
    k[ks.N_GRID // 2] = 0.0  # the Nyquist mode's odd derivatives

    def d(f, order):
        return torch.fft.ifft((1j * k) ** order * torch.fft.fft(f)).real

    mid = u[:, 1:-1]
    u_t = (u[:, 2:] - u[:, :-2]) / (2 * dt)
    rhs = -(mid * d(mid, 1) + d(mid, 2) + d(mid, 4))
    assert _relative(u_t, rhs) < 1e-5


def test_fourth_order_convergence_in_the_step(on_attractor):
    """Over one time unit against h = 0.02 / 64: the error falls by 2^3.7 .. 2^3.9 per halving
    of h (approaching 4), and the default (dt = 0.01, 4 substeps, h = 0.0025) is within 1e-11 of
    the reference (measured 4e-12)."""
    u0 = on_attractor[:2]
    ref = ks.simulate(u0, 50, dt=0.02, substeps=64)
    errors = [_relative(ks.simulate(u0, 50, dt=0.02, substeps=s), ref) for s in (1, 2, 4, 8)]
    orders = [math.log2(e0 / e1) for e0, e1 in itertools.pairwise(errors)]
    assert all(3.5 < p < 4.4 for p in orders) and orders[-1] > 3.8, (errors, orders)
    default = ks.simulate(u0, 100)[:, ::2]
    assert _relative(default, ref) < 1e-11


def test_the_mean_is_conserved():
    u0 = ks.random_initial(3, generator=torch.Generator().manual_seed(1)) + torch.tensor(
        [[0.0], [0.3], [-1.0]], dtype=torch.float64
    )
    u = ks.simulate(u0, 100, dt=0.1, substeps=2)
    torch.testing.assert_close(u.mean(-1), u0.mean(-1, keepdim=True).expand(3, 101), rtol=0, atol=1e-12)


def test_the_attractor_is_bounded_and_chaotic(on_attractor):
    """Two states 1e-8 apart separate by > 100x within 200 time units (largest Lyapunov exponent
    ~0.04-0.05 at L = 22) while the fields stay bounded (|u| ~ 3, std ~ 1.2)."""
    g = torch.Generator().manual_seed(2)
    d = 1e-8 * torch.randn(4, ks.N_GRID, generator=g, dtype=torch.float64)
    d -= d.mean(-1, keepdim=True)
    u = ks.simulate(torch.cat((on_attractor, on_attractor + d)), 4000, dt=0.05, substeps=1, save_every=100)
    growth = (u[:4, -1] - u[4:, -1]).norm(dim=-1) / d.norm(dim=-1)
    assert growth.min() > 100 and growth.log().mean().exp() > 1000, growth
    assert u.abs().max() < 5
    std = u.std(-1)
    assert std.min() > 0.5 and std.max() < 2.0


def test_shapes_sampling_and_dtypes(on_attractor):
    u0 = on_attractor[0]
    x = ks.grid()
    assert x.shape == (120,) and x[1].item() == pytest.approx(22 / 120) and x[-1] < 22
    assert ks.wavenumbers().shape == (61,)
    one = ks.simulate(u0, 10)
    assert one.shape == (11, 120) and torch.equal(one[0], u0)
    every = ks.simulate(u0, 10, save_every=3)
    assert every.shape == (4, 120)
    torch.testing.assert_close(every, one[::3], rtol=0, atol=1e-13)
    assert torch.equal(ks.simulate(on_attractor, 0), on_attractor[:, None])
    single = ks.simulate(u0.float(), 10)
    assert single.dtype == torch.float32
    assert _relative(single.double(), one) < 1e-4
    # batch members are independent of each other
    torch.testing.assert_close(ks.simulate(on_attractor, 10)[0], one, rtol=0, atol=1e-12)


def test_initial_fields():
    g = torch.Generator().manual_seed(3)
    u = ks.random_initial(50, generator=g)
    assert u.shape == (50, 120) and u.dtype == torch.float64
    assert u.mean(-1).abs().max() < 1e-12 and 0.6 < u.std() < 1.5
    again = ks.random_initial(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(u, again)
    # spectrally smooth: nothing above the fourth mode
    assert torch.fft.rfft(u)[:, 5:].abs().max() < 1e-10
    a = ks.attractor_initial(2, burn_in=50.0, generator=torch.Generator().manual_seed(4), dtype=torch.float32)
    assert a.shape == (2, 120) and a.dtype == torch.float32
    assert torch.equal(
        ks.attractor_initial(3, burn_in=0.0, generator=torch.Generator().manual_seed(5)),
        ks.random_initial(3, generator=torch.Generator().manual_seed(5)),
    )


def test_a_blow_up_raises_a_simulation_error_naming_the_fields():
    u0 = torch.zeros(3, 120, dtype=torch.float64)
    u0[1] = 1e4 * torch.sin(2 * math.pi * ks.grid() / ks.LENGTH)
    with pytest.raises(SimulationError, match=r"1 of 3 fields became non-finite") as info:
        ks.simulate(u0, 5, dt=1.0, substeps=1)
    assert info.value.indices == [1]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ks.simulate(torch.zeros(2, 3, 120), 5), r"u0 must be \[B, n\] or \[n\]"),
        (lambda: ks.simulate(torch.zeros(0, 120), 5), r"u0 must be \[B, n\] or \[n\]"),
        (lambda: ks.simulate(torch.zeros(120, dtype=torch.int64), 5), "float32 or float64"),
        (lambda: ks.simulate([0.0] * 120, 5), "u0 must be a tensor"),
        (lambda: ks.simulate(torch.full((120,), float("nan")), 5), "u0 must be finite"),
        (lambda: ks.simulate(torch.zeros(120), -1), "n_steps must be an integer >= 0"),
        (lambda: ks.simulate(torch.zeros(120), 2.0), "n_steps must be an integer >= 0"),
        (lambda: ks.simulate(torch.zeros(120), 5, dt=0.0), "dt must be a finite number > 0"),
        (lambda: ks.simulate(torch.zeros(120), 5, dt=-0.1), "dt must be a finite number > 0"),
        (lambda: ks.simulate(torch.zeros(120), 5, substeps=0), "substeps must be an integer >= 1"),
        (lambda: ks.simulate(torch.zeros(120), 5, save_every=0), "save_every must be an integer >= 1"),
        (lambda: ks.simulate(torch.zeros(120), 5, length=float("inf")), "length must be a finite"),
        (lambda: ks.random_initial(0), "batch must be an integer >= 1"),
        (lambda: ks.attractor_initial(2, burn_in=-1.0), "burn_in must be a number >= 0"),
        (lambda: ks.grid(2), "n must be an integer >= 4"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
