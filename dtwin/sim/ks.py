"""The Kuramoto-Sivashinsky equation, batched in torch (float64 by default):

    u_t + u u_x + u_xx + u_xxxx = 0,     x in [0, L) periodic,

at L = 22 (the chaotic regime of the L-HiTS authors' data, KS_*_L22, and of Cvitanovic, Davidchack
& Siminos 2010) on N = 120 equispaced points, saved every DT = 0.01 time units.

Pseudo-spectral in space (rfft), ETDRK4 in time (:mod:`dtwin.sim.etdrk4`, Kassam & Trefethen
2005): in Fourier space u_hat_t = (k^2 - k^4) u_hat - (i k / 2) fft(u^2), with the linear part
integrated exactly. The nonlinear term is not dealiased (as in Kassam & Trefethen's kursiv.m): at
L = 22 on 120 points the spectrum falls to rounding (1e-16 of its peak) by mode 40 of 60, so the
aliased products (modes above 40) are at rounding level. The Nyquist mode's first derivative is
taken as zero. The mean of u is conserved exactly (mode 0 has neither a linear
nor a nonlinear term), so fields of zero mean keep it.

Accuracy (float64, attractor states, max over the trajectory of the relative L2 error against a
step 16x smaller; fourth order, the error falls ~15x per halving of h): the default, dt = 0.01
with 4 substeps (h = 0.0025), ~1e-11 over one time unit and 3e-8 over 51.2 time units (5120
samples; chaos amplifies errors with the largest Lyapunov exponent, ~0.04-0.05 at L = 22), below
float32 rounding; substeps=2 gives 5e-7 and substeps=1 7e-6 over the same 51.2 time units.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dtwin.sim.etdrk4 import etdrk4_coefficients, etdrk4_integrate

__all__ = [
    "DT",
    "LENGTH",
    "N_GRID",
    "SUBSTEPS",
    "attractor_initial",
    "grid",
    "random_initial",
    "simulate",
    "wavenumbers",
]

LENGTH = 22.0
N_GRID = 120
DT = 0.01
SUBSTEPS = 4
N_MODES = 4  # Fourier modes of the random initial fields
BURN_IN_DT = 0.05  # the step of the burn-in onto the attractor (see attractor_initial)


def _fail(message: str) -> None:
    raise ValueError(f"ks: {message}")


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(f"{name} must be an integer >= {low}, got {value!r}")


def _check_positive(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        _fail(f"{name} must be a finite number > 0, got {value!r}")


def grid(n: int = N_GRID, length: float = LENGTH) -> Tensor:
    """Tensor[n] float64: the grid points x_j = j * length / n, j = 0..n-1 (x = length is x = 0)."""
    _check_int("n", n, 4)
    _check_positive("length", length)
    return torch.arange(n, dtype=torch.float64) * (length / n)


def wavenumbers(n: int = N_GRID, length: float = LENGTH) -> Tensor:
    """Tensor[n // 2 + 1] float64: the wavenumbers k = 2 pi m / length of the rfft modes m."""
    _check_int("n", n, 4)
    _check_positive("length", length)
    return torch.arange(n // 2 + 1, dtype=torch.float64) * (2 * math.pi / length)


def random_initial(
    batch: int,
    n: int = N_GRID,
    length: float = LENGTH,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Tensor[batch, n]: smooth random periodic fields of zero mean, sum over the Fourier modes
    m = 1..4 of a_m cos(2 pi m x / L) + b_m sin(2 pi m x / L) with a_m, b_m ~ N(0, 1/4) (so the
    field's standard deviation is ~1, the attractor's is ~1.3)."""
    _check_int("batch", batch, 1)
    x = grid(n, length)
    m = torch.arange(1, N_MODES + 1, dtype=torch.float64)
    phase = 2 * math.pi * m[:, None] * x[None, :] / length  # [M, n]
    a = torch.randn(batch, N_MODES, generator=generator, dtype=torch.float64) / math.sqrt(N_MODES)
    b = torch.randn(batch, N_MODES, generator=generator, dtype=torch.float64) / math.sqrt(N_MODES)
    return (a @ torch.cos(phase) + b @ torch.sin(phase)).to(dtype)


def simulate(
    u0: Tensor,
    n_steps: int,
    dt: float = DT,
    substeps: int = SUBSTEPS,
    length: float = LENGTH,
    save_every: int = 1,
) -> Tensor:
    """Integrate KS from ``u0`` by ETDRK4 in rfft space.

    Args:
        u0: Tensor[B, n] (or [n]) the initial fields on :func:`grid` (n >= 4), float32 or float64
            (the computation runs in u0's dtype; float64 recommended).
        n_steps: steps of ``dt`` to take (>= 0).
        dt: the sampling interval in time units (> 0); each sample interval is ``substeps``
            ETDRK4 steps of h = dt / substeps (default 4: h = 0.0025, accurate to rounding).
        length: the period L of the domain.
        save_every: keep every ``save_every``-th sample.

    Returns:
        Tensor[B, n_steps // save_every + 1, n] (or [n_steps // save_every + 1, n]): u at
        t = 0, dt * save_every, 2 dt * save_every, ... (the steps past the last saved sample are
        not taken).

    Raises:
        ValueError: bad shapes or arguments.
        dtwin.errors.SimulationError: some fields became non-finite (``indices`` names them).
    """
    if not isinstance(u0, Tensor):
        _fail(f"u0 must be a tensor, got {type(u0).__name__}")
    if u0.dtype not in (torch.float32, torch.float64):
        _fail(f"u0 must be float32 or float64, got {u0.dtype}")
    if u0.dim() not in (1, 2) or u0.shape[-1] < 4 or (u0.dim() == 2 and u0.shape[0] < 1):
        _fail(f"u0 must be [B, n] or [n] with B >= 1 and n >= 4 grid points, got {list(u0.shape)}")
    _check_int("n_steps", n_steps, 0)
    _check_positive("dt", dt)
    _check_int("substeps", substeps, 1)
    _check_positive("length", length)
    _check_int("save_every", save_every, 1)
    if not bool(torch.isfinite(u0).all()):
        _fail("u0 must be finite")
    squeeze = u0.dim() == 1
    u = u0.unsqueeze(0) if squeeze else u0
    n = u.shape[1]
    complex_dtype = torch.complex128 if u.dtype == torch.float64 else torch.complex64
    k = wavenumbers(n, length).to(u.device)
    coef = etdrk4_coefficients(k**2 - k**4, dt / substeps)
    coef = {name: c.to(u.dtype) for name, c in coef.items()}
    # the first derivative of the Nyquist mode (n even) is zero: i k would make it imaginary
    kd = k.clone()
    if n % 2 == 0:
        kd[-1] = 0.0
    half_ik = (-0.5j * kd).to(complex_dtype)

    def nonlinear(v: Tensor) -> Tensor:
        w = torch.fft.irfft(v, n=n)
        return half_ik * torch.fft.rfft(w * w)

    out = etdrk4_integrate(
        u,
        n_steps // save_every,
        save_every * substeps,
        nonlinear,
        coef,
        torch.fft.rfft,
        lambda v: torch.fft.irfft(v, n=n),
        owner=f"ks.simulate (dt={dt}, substeps={substeps})",
        what="fields",
        hint="A smaller step (more substeps) or smaller initial fields usually help.",
    )
    return out[0] if squeeze else out


def attractor_initial(
    batch: int,
    burn_in: float = 100.0,
    n: int = N_GRID,
    length: float = LENGTH,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    dt: float = BURN_IN_DT,
) -> Tensor:
    """Tensor[batch, n]: states on the attractor, :func:`random_initial` fields integrated for
    ``burn_in`` time units (>= 0; 100 leaves the transient of the random start behind).

    The burn-in takes ETDRK4 steps of ``dt`` (default 0.05, 20x the default fine step: only where
    it lands matters, and at 0.05 the scheme is still accurate to ~6e-7 over a time unit, so the
    states lie on the attractor of the equation, not of some coarse map)."""
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, float)) or not burn_in >= 0:
        _fail(f"burn_in must be a number >= 0 (time units), got {burn_in!r}")
    _check_positive("dt", dt)
    u = random_initial(batch, n, length, generator, dtype)
    steps = math.ceil(burn_in / dt - 1e-9)
    if steps == 0:
        return u
    return simulate(u, steps, dt=burn_in / steps, substeps=1, length=length, save_every=steps)[:, -1]
