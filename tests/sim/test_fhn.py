"""The FitzHugh-Nagumo twin: the cosine basis diagonalizes the ghost-point Neumann Laplacian, the
solution satisfies the PDE, no flux (the trapezoid total of v moves by the reaction alone), the
rest state, fourth order in the step, the initial fronts, shapes, and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtwin.errors import SimulationError
from dtwin.sim import fhn

N = fhn.N_GRID


def _ghost_point_laplacian(n: int = N, dx: float = fhn.DX) -> torch.Tensor:
    """(u_{j-1} - 2 u_j + u_{j+1}) / dx^2 with u_{-1} = u_1 and u_n = u_{n-2}, as a dense matrix."""
    D2 = torch.zeros(n, n, dtype=torch.float64)
    for j in range(n):
        D2[j, j] = -2.0
        D2[j, abs(j - 1)] += 1.0  # j = 0: the ghost u_{-1} = u_1
        D2[j, j + 1 if j + 1 < n else n - 2] += 1.0  # j = n - 1: the ghost u_n = u_{n-2}
    return D2 / dx**2


TRAPEZOID = torch.ones(N, dtype=torch.float64)
TRAPEZOID[0] = TRAPEZOID[-1] = 0.5


@pytest.fixture(scope="module")
def fronts() -> torch.Tensor:
    return fhn.random_initial(4, generator=torch.Generator().manual_seed(0))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).flatten(-2).norm(dim=-1) / b.flatten(-2).norm(dim=-1)).max().item()


def test_the_cosine_basis_diagonalizes_the_neumann_laplacian():
    forward, inverse, eigenvalues = fhn.neumann_basis()
    assert forward.shape == inverse.shape == (N, N) and forward.dtype == torch.float64
    eye = torch.eye(N, dtype=torch.float64)
    torch.testing.assert_close(forward @ inverse, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(inverse @ forward, eye, rtol=0, atol=1e-12)
    D2 = _ghost_point_laplacian()
    scale = 4 / fhn.DX**2  # the spectral radius
    # every column of the inverse transform is an eigenvector with the eigenvalue used
    torch.testing.assert_close(D2 @ inverse, inverse * eigenvalues, rtol=0, atol=1e-11 * scale)
    torch.testing.assert_close(inverse @ torch.diag(eigenvalues) @ forward, D2, rtol=0, atol=1e-11 * scale)
    assert eigenvalues[0] == 0 and (eigenvalues[1:] < 0).all() and eigenvalues.diff().lt(0).all()
    # the mode k = 0 is the trapezoid-rule mean, which the Laplacian conserves
    torch.testing.assert_close(forward[0], TRAPEZOID / (N - 1), rtol=0, atol=1e-15)
    assert (TRAPEZOID @ D2).abs().max() < 1e-12 * scale
    # small and odd sizes too
    f5, i5, e5 = fhn.neumann_basis(5, 0.5)
    torch.testing.assert_close(i5 @ torch.diag(e5) @ f5, _ghost_point_laplacian(5, 0.5), rtol=0, atol=1e-12)


def test_the_solution_satisfies_the_pde(fronts):
    """u_t, v_t (central differences in time) against the right-hand side built from the
    ghost-point Laplacian, independently of the stepper and its basis. (After 5 time units: the
    first instants carry a fast transient, the tanh fronts relaxing to the discrete profile, that
    central differences resolve poorly.)"""
    dt = 1e-3
    start = fhn.simulate(fronts[:2], 100, save_every=100)[:, -1]
    s = fhn.simulate(start, 20, dt=dt, substeps=1)
    D2 = _ghost_point_laplacian()
    mid = s[:, 1:-1]
    u, v = mid[:, :, 0], mid[:, :, 1]
    rhs = torch.stack(
        (
            fhn.DU * u @ D2.T + u - u**3 - v,
            fhn.DV * v @ D2.T + fhn.EPS * (u - fhn.A1 * v - fhn.A0),
        ),
        2,
    )
    s_t = (s[:, 2:] - s[:, :-2]) / (2 * dt)
    assert _relative(s_t, rhs) < 1e-7  # measured 2e-9: the O(dt^2) of the differences


def test_no_flux_the_total_of_v_moves_by_the_reaction_alone(fronts):
    """d/dt sum_j w_j v_j = eps sum_j w_j (u_j - a1 v_j - a0) with the trapezoid weights w (the
    discrete Laplacian's part is exactly zero): the change over 10 time units equals the Simpson
    integral of the reaction; with eps = 0 the total is constant."""
    dt, n = 0.05, 200
    s = fhn.simulate(fronts, n, dt=dt)
    u, v = s[:, :, 0], s[:, :, 1]
    total = v @ TRAPEZOID
    rate = fhn.EPS * (u - fhn.A1 * v - fhn.A0) @ TRAPEZOID  # [B, n + 1]
    simpson = torch.ones(n + 1, dtype=torch.float64)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    integral = rate @ simpson * dt / 3
    torch.testing.assert_close(total[:, -1] - total[:, 0], integral, rtol=1e-7, atol=1e-10)
    assert (total[:, -1] - total[:, 0]).abs().min() > 1e-2  # the reaction did move it
    frozen = fhn.simulate(fronts, n, dt=dt, eps=0.0)[:, :, 1] @ TRAPEZOID
    torch.testing.assert_close(frozen, frozen[:, :1].expand_as(frozen), rtol=0, atol=1e-12)


def test_the_rest_state_is_a_stable_equilibrium():
    rest = fhn.rest_state()
    assert rest.shape == (2, N) and rest.dtype == torch.float64
    u, v = rest[0, 0].item(), rest[1, 0].item()
    assert u == pytest.approx(-0.721654744, abs=1e-8)
    assert u - u**3 - v == pytest.approx(0, abs=1e-15) and u - 2 * v + 0.03 == pytest.approx(0, abs=1e-15)
    s = fhn.simulate(rest, 400)
    assert (s - rest).abs().max() < 1e-10
    # perturbed, it returns (slowly: v relaxes on the 1/eps time scale)
    kicked = rest + 0.05 * torch.cos(math.pi * fhn.grid() / fhn.LENGTH)
    back = fhn.simulate(kicked, 4000, save_every=4000)[-1]
    assert (back - rest).abs().max() < 0.5 * (kicked - rest).abs().max()
    # other parameters, other equilibria; none stable -> an error
    other = fhn.rest_state(a0=0.1, a1=3.0)
    uo, vo = other[0, 0].item(), other[1, 0].item()
    assert uo - uo**3 - vo == pytest.approx(0, abs=1e-14) and uo - 3 * vo - 0.1 == pytest.approx(0, abs=1e-14)
    with pytest.raises(ValueError, match="no stable homogeneous equilibrium"):
        fhn.rest_state(a1=0.5)


def test_fourth_order_convergence_in_the_step(fronts):
    """Over 10 time units against h = 0.05 / 32: the error falls ~16x per halving of h; the
    default (2 substeps, h = 0.025) is within 1e-7 (measured 5e-8 over 256 time units)."""
    s0 = fronts[:2]
    ref = fhn.simulate(s0, 200, substeps=32)
    errors = [_relative(fhn.simulate(s0, 200, substeps=k), ref) for k in (1, 2, 4)]
    orders = [math.log2(e0 / e1) for e0, e1 in itertools.pairwise(errors)]
    assert all(3.6 < p < 4.5 for p in orders), (errors, orders)
    assert errors[1] < 1e-7


def test_initial_fronts_lie_on_the_slow_manifold():
    g = torch.Generator().manual_seed(1)
    s = fhn.random_initial(64, generator=g)
    assert s.shape == (64, 2, N) and s.dtype == torch.float64
    assert torch.equal(s, fhn.random_initial(64, generator=torch.Generator().manual_seed(1)))
    u, v = s[:, 0], s[:, 1]
    assert (v == v[:, :1]).all() and v.abs().max() <= 0.05
    low, high = fhn.slow_branches(v[:, :1])
    torch.testing.assert_close(low - low**3, v[:, :1])
    torch.testing.assert_close(high - high**3, v[:, :1])
    assert (low < -0.9).all() and (high > 0.9).all()
    # away from the fronts u sits on a branch; at least one front in the domain
    ends = u[:, [0, -1]]
    on_branch = torch.minimum((ends - low).abs(), (ends - high).abs())
    assert on_branch.max() < 0.1
    assert ((u.max(-1).values - u.min(-1).values) > 1.5).all()
    assert fhn.random_initial(2, dtype=torch.float32).dtype == torch.float32


def test_shapes_sampling_and_parameters(fronts):
    x = fhn.grid()
    assert x.shape == (N,) and x[0] == 0 and x[-1].item() == pytest.approx(20.0) and x[1].item() == 0.2
    one = fhn.simulate(fronts[0], 10)
    assert one.shape == (11, 2, N) and torch.equal(one[0], fronts[0])
    every = fhn.simulate(fronts, 10, save_every=5)
    assert every.shape == (4, 3, 2, N)
    torch.testing.assert_close(every[0], one[::5], rtol=0, atol=1e-13)
    assert torch.equal(fhn.simulate(fronts, 0), fronts[:, None])
    assert fhn.simulate(fronts.float(), 3).dtype == torch.float32
    slow = fhn.simulate(fronts[0], 10, Du=0.5)
    assert not torch.allclose(slow, one)


def test_a_blow_up_raises_a_simulation_error_naming_the_states():
    s = fhn.rest_state().expand(3, 2, N).clone()
    s[2, 0] = 1e3
    with pytest.raises(SimulationError, match=r"1 of 3 states became non-finite") as info:
        fhn.simulate(s, 5, dt=1.0, substeps=1)
    assert info.value.indices == [2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fhn.simulate(torch.zeros(3, N), 5), r"state0 must be \[B, 2, 101\] or \[2, 101\]"),
        (lambda: fhn.simulate(torch.zeros(1, 2, 100), 5), r"state0 must be \[B, 2, 101\]"),
        (lambda: fhn.simulate(torch.zeros(0, 2, N), 5), r"state0 must be \[B, 2, 101\]"),
        (lambda: fhn.simulate(torch.zeros(2, N, dtype=torch.int32), 5), "float32 or float64"),
        (lambda: fhn.simulate(torch.full((2, N), float("inf")), 5), "state0 must be finite"),
        (lambda: fhn.simulate(torch.zeros(2, N), -1), "n_steps must be an integer >= 0"),
        (lambda: fhn.simulate(torch.zeros(2, N), 5, dt=0), "dt must be a finite number > 0"),
        (lambda: fhn.simulate(torch.zeros(2, N), 5, substeps=0), "substeps must be an integer >= 1"),
        (lambda: fhn.simulate(torch.zeros(2, N), 5, save_every=-2), "save_every must be an integer >= 1"),
        (lambda: fhn.simulate(torch.zeros(2, N), 5, Dv=-1.0), "Dv must be a finite number >= 0"),
        (lambda: fhn.simulate(torch.zeros(2, N), 5, eps=float("nan")), "eps must be a finite number"),
        (lambda: fhn.rest_state(a1=0.0), "a1 != 0"),
        (lambda: fhn.random_initial(0), "batch must be an integer >= 1"),
        (lambda: fhn.slow_branches(torch.tensor([0.5])), r"\|v\| < 2 / \(3 sqrt\(3\)\)"),
        (lambda: fhn.neumann_basis(1), "n must be an integer >= 2"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
