"""The FitzHugh-Nagumo reaction-diffusion system, batched in torch (float64 by default):

    u_t = Du u_xx + u - u^3 - v,
    v_t = Dv v_xx + eps (u - a1 v - a0),         x in [0, 20], u_x = v_x = 0 at both ends,

with Du = 1, Dv = 4, eps = 0.006, a0 = -0.03, a1 = 2 (the setting of the lattice-Boltzmann FHN
data of Vlachas et al., Nature Machine Intelligence 2022), on the 101 vertices x_j = 0.2 j.

Space: the second difference with ghost points u_{-1} = u_1, u_{N} = u_{N-2} (no flux). It is
diagonalized by the DCT-I basis cos(pi j k / (N - 1)), k = 0..N-1, with eigenvalues
-(4 / dx^2) sin^2(pi k / (2 (N - 1))) (:func:`neumann_basis`; at N = 101 the transforms are
simply dense [N, N] matrices). Its k = 0 mode is the trapezoid-rule mean, which the discrete
Laplacian conserves: the trapezoid total of v changes by the reaction integral alone.

Time: ETDRK4 (:mod:`dtwin.sim.etdrk4`) in that basis; the linear part is the diffusion alone (exact,
so the stiff high modes, |Dv mu| up to 400, set no step limit), the reaction is the nonlinear
part. The fast field u relaxes on a time scale ~1; the slow field v moves on the ~1/eps ~ 170
time scale, hence the coarse sampling interval DT = 0.05 (5120 samples span 256 time units).
Default: 2 substeps (fine step 0.025). Measured on :func:`random_initial` states (float64, max
over the trajectory of the relative L2 error against a step 16x smaller, fourth order): 5e-8 over
256 time units (halving the step changes the result by 2e-8 over 50 time units); 1 substep gives
8e-7 (3e-7 on halving), within 1e-6 but with little margin for sharper initial states.

At these parameters the homogeneous system is bistable: u = -0.7217 (v = -0.3458) and
u = 0.6916 (v = 0.3608) are both stable (u = 0.0301 is not). :func:`rest_state` is the lower one.
Fronts between the two branches are what moves: :func:`random_initial` draws one front or a patch
of two on the slow manifold, and they slosh and breathe with a period of ~200 time units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from dtwin.sim.etdrk4 import etdrk4_coefficients, etdrk4_integrate

__all__ = [
    "A0",
    "A1",
    "DT",
    "DU",
    "DV",
    "DX",
    "EPS",
    "LENGTH",
    "N_GRID",
    "SUBSTEPS",
    "grid",
    "neumann_basis",
    "random_initial",
    "rest_state",
    "simulate",
    "slow_branches",
]

LENGTH = 20.0
N_GRID = 101
DX = LENGTH / (N_GRID - 1)
DU = 1.0
DV = 4.0
EPS = 0.006
A0 = -0.03
A1 = 2.0
DT = 0.05
SUBSTEPS = 2


def _fail(message: str) -> None:
    raise ValueError(f"fhn: {message}")


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(f"{name} must be an integer >= {low}, got {value!r}")


def _check_number(name: str, value: object, low: float | None = None, strict: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict else '>='} {low}"
        _fail(f"{name} must be a finite number{bound}, got {value!r}")


def _check_params(Du: float, Dv: float, eps: float, a0: float, a1: float) -> None:
    _check_number("Du", Du, 0.0)
    _check_number("Dv", Dv, 0.0)
    _check_number("eps", eps, 0.0)
    _check_number("a0", a0)
    _check_number("a1", a1)


def grid() -> Tensor:
    """Tensor[101] float64: the vertices x_j = 0.2 j, j = 0..100, both ends included."""
    return torch.arange(N_GRID, dtype=torch.float64) * DX


def neumann_basis(n: int = N_GRID, dx: float = DX) -> tuple[Tensor, Tensor, Tensor]:
    """The eigenbasis of the ghost-point Neumann second difference on ``n`` vertices of spacing
    ``dx``, as dense float64 matrices.

    Returns:
        (forward [n, n], inverse [n, n], eigenvalues [n]): values x (on the vertices) have the
        cosine coefficients c = forward @ x, x = inverse @ c with inverse[j, k] = cos(pi j k / (n - 1))
        (the DCT-I; forward = (2 / (n - 1)) W inverse W, W = diag(1/2, 1, ..., 1, 1/2)), and
        D2 = inverse @ diag(eigenvalues) @ forward with eigenvalues
        -(4 / dx^2) sin^2(pi k / (2 (n - 1))) (units 1/length^2; 0 for the mean, k = 0).
    """
    _check_int("n", n, 2)
    _check_number("dx", dx, 0.0, strict=True)
    m = n - 1
    k = torch.arange(n, dtype=torch.float64)
    inverse = torch.cos(math.pi * k[:, None] * k[None, :] / m)
    w = torch.ones(n, dtype=torch.float64)
    w[0] = w[-1] = 0.5
    forward = (2.0 / m) * w[:, None] * inverse * w[None, :]
    eigenvalues = -(4.0 / dx**2) * torch.sin(math.pi * k / (2 * m)) ** 2
    return forward, inverse, eigenvalues


def _homogeneous_roots(a0: float, a1: float) -> list[float]:
    """The u of the homogeneous equilibria, u - u^3 = v = (u - a0) / a1, ascending: the real roots
    of u^3 + (1/a1 - 1) u - a0/a1, Newton-polished to rounding."""
    roots = np.roots([1.0, 0.0, 1.0 / a1 - 1.0, -a0 / a1])
    out = []
    for r in sorted(float(r.real) for r in roots if abs(r.imag) < 1e-9):
        for _ in range(3):
            slope = 3 * r**2 + 1.0 / a1 - 1.0
            if slope != 0:
                r -= (r**3 + (1.0 / a1 - 1.0) * r - a0 / a1) / slope
        out.append(r)
    return out


def rest_state(*, Du: float = DU, Dv: float = DV, eps: float = EPS, a0: float = A0, a1: float = A1) -> Tensor:
    """Tensor[2, 101] float64: the stable homogeneous equilibrium (u*, v*), u then v, repeated on
    the grid; where several are stable (at the default parameters u* = -0.7217 and 0.6916), the
    lowest u*, the resting state. Stable means: every Neumann mode k of the linearization,
    [[1 - 3 u*^2 + Du mu_k, -1], [eps, -eps a1 + Dv mu_k]], has eigenvalues of negative real part.

    Raises ValueError if ``a1`` is 0 or no homogeneous equilibrium is stable."""
    _check_params(Du, Dv, eps, a0, a1)
    if a1 == 0:
        _fail("rest_state needs a1 != 0 (v* = (u* - a0) / a1)")
    mu = neumann_basis()[2].numpy()
    for u in _homogeneous_roots(a0, a1):
        J = np.zeros((len(mu), 2, 2))
        J[:, 0, 0] = 1 - 3 * u**2 + Du * mu
        J[:, 0, 1] = -1.0
        J[:, 1, 0] = eps
        J[:, 1, 1] = -eps * a1 + Dv * mu
        if np.linalg.eigvals(J).real.max() < 0:
            v = (u - a0) / a1
            return torch.tensor([u, v], dtype=torch.float64)[:, None].expand(2, N_GRID).contiguous()
    _fail(
        f"no stable homogeneous equilibrium at Du={Du}, Dv={Dv}, eps={eps}, a0={a0}, a1={a1} "
        f"(equilibria u* = {_homogeneous_roots(a0, a1)})"
    )


def slow_branches(v: Tensor) -> tuple[Tensor, Tensor]:
    """The lower and upper stable branches of the fast nullcline u - u^3 = v at the given v
    (|v| < 2 / (3 sqrt 3) ~ 0.385, where both exist): the u that the fast field relaxes to when v
    is frozen. Tensors like v."""
    if not isinstance(v, Tensor) or not v.is_floating_point():
        _fail(f"slow_branches needs v as a floating-point tensor, got {type(v).__name__}")
    if not bool((v.abs() < 2 / (3 * math.sqrt(3))).all()):
        _fail(f"slow_branches needs |v| < 2 / (3 sqrt(3)) ~ 0.385, got max |v| = {v.abs().max().item():.3g}")
    # the outer real roots of u^3 - u + v = 0 (trigonometric form of the three real roots)
    phi = torch.acos(-1.5 * math.sqrt(3) * v) / 3
    r = 2 / math.sqrt(3)
    return r * torch.cos(phi + 2 * math.pi / 3), r * torch.cos(phi)


def random_initial(
    batch: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Tensor[batch, 2, 101]: random front states on the slow manifold, the kind of initial state
    of Vlachas et al.'s FHN data (relaxed fronts): v uniform in x at a level v0 ~ U(-0.05, 0.05),
    u on the lower and upper stable branches of u - u^3 = v0 (:func:`slow_branches`, u ~ -+1)
    joined by fronts of the fast subsystem's profile tanh((x - p) / sqrt 2). Half of the states
    have one front at p ~ U(3, 17), half a patch of two fronts, p1 ~ U(3, 12), p2 = p1 + U(5, 10)
    (capped at 17); which branch lies left of the first front is a coin toss.

    From such states the fronts slosh back and forth (and patches breathe) on the slow time scale,
    a period of ~200 time units; some patches collapse into a homogeneous state. (A localized
    excitation of :func:`rest_state` would not do: at these parameters the excited upper state is
    stable too, so the excitation invades the whole medium within ~20 time units and the rest of
    the trajectory is a homogeneous relaxation.)"""
    _check_int("batch", batch, 1)
    x = grid()
    r = torch.rand(batch, 5, generator=generator, dtype=torch.float64)
    v0 = 0.1 * r[:, :1] - 0.05
    low, high = slow_branches(v0)
    two = r[:, 1:2] < 0.5
    p1 = torch.where(two, 3.0 + 9.0 * r[:, 2:3], 3.0 + 14.0 * r[:, 2:3])
    p2 = torch.where(two, (p1 + 5.0 + 5.0 * r[:, 3:4]).clamp(max=17.0), torch.full_like(p1, math.inf))
    s = math.sqrt(2.0)
    # 1 between the fronts, 0 outside (p2 = inf: a single step up at p1)
    bump = 0.5 * (torch.tanh((x - p1) / s) - torch.where(two, torch.tanh((x - p2) / s), -torch.ones_like(x)))
    bump = torch.where(r[:, 4:5] < 0.5, bump, 1.0 - bump)
    u = low + (high - low) * bump
    return torch.stack((u, v0.expand_as(u)), 1).to(dtype)


def simulate(
    state0: Tensor,
    n_steps: int,
    dt: float = DT,
    substeps: int = SUBSTEPS,
    save_every: int = 1,
    *,
    Du: float = DU,
    Dv: float = DV,
    eps: float = EPS,
    a0: float = A0,
    a1: float = A1,
) -> Tensor:
    """Integrate FitzHugh-Nagumo from ``state0`` by ETDRK4 in the Neumann cosine basis.

    Args:
        state0: Tensor[B, 2, 101] (or [2, 101]): u then v on :func:`grid`, float32 or float64
            (the computation runs in its dtype; float64 recommended).
        n_steps: sample intervals of ``dt`` to take (>= 0).
        dt: the sampling interval in time units (> 0; default 0.05: v moves on the ~1/eps ~ 170
            time scale, u on ~1, so 5120 samples span 256 time units).
        substeps: ETDRK4 steps per sample interval (default 2: fine step 0.025, relative error
            ~5e-8 over 256 time units from :func:`random_initial` states; 1 gives ~8e-7).
        save_every: keep every ``save_every``-th sample.
        Du, Dv, eps, a0, a1: the model's parameters (default: the module's constants).

    Returns:
        Tensor[B, n_steps // save_every + 1, 2, 101] (or without B): the state at
        t = 0, dt * save_every, ... (steps past the last saved sample are not taken).

    Raises:
        ValueError: bad shapes or arguments.
        dtwin.errors.SimulationError: some states became non-finite (``indices`` names them).
    """
    if not isinstance(state0, Tensor):
        _fail(f"state0 must be a tensor, got {type(state0).__name__}")
    if state0.dtype not in (torch.float32, torch.float64):
        _fail(f"state0 must be float32 or float64, got {state0.dtype}")
    if state0.dim() not in (2, 3) or tuple(state0.shape[-2:]) != (2, N_GRID) or state0.numel() == 0:
        _fail(f"state0 must be [B, 2, {N_GRID}] or [2, {N_GRID}] (u then v), got {list(state0.shape)}")
    _check_int("n_steps", n_steps, 0)
    _check_number("dt", dt, 0.0, strict=True)
    _check_int("substeps", substeps, 1)
    _check_int("save_every", save_every, 1)
    _check_params(Du, Dv, eps, a0, a1)
    if not bool(torch.isfinite(state0).all()):
        _fail("state0 must be finite")
    squeeze = state0.dim() == 2
    x = state0.unsqueeze(0) if squeeze else state0
    dtype, device = x.dtype, x.device
    forward, inverse, mu = (t.to(device) for t in neumann_basis())
    lam = torch.stack((Du * mu, Dv * mu))  # [2, N]
    coef = {k: c.to(dtype) for k, c in etdrk4_coefficients(lam, dt / substeps).items()}
    to_coef = forward.T.contiguous().to(dtype)  # row vectors: c = x @ forward^T
    to_values = inverse.T.contiguous().to(dtype)

    def nonlinear(c: Tensor) -> Tensor:
        y = c @ to_values
        u, v = y[:, 0], y[:, 1]
        return torch.stack((u - u * u * u - v, eps * (u - a1 * v - a0)), 1) @ to_coef

    out = etdrk4_integrate(
        x,
        n_steps // save_every,
        save_every * substeps,
        nonlinear,
        coef,
        lambda y: y @ to_coef,
        lambda c: c @ to_values,
        owner=f"fhn.simulate (dt={dt}, substeps={substeps})",
        what="states",
        hint="A smaller step (more substeps) usually helps.",
    )
    return out[0] if squeeze else out
