"""Fourth-order exponential time differencing Runge-Kutta (ETDRK4) for semilinear stiff systems

    v_t = L v + N(v),     L diagonal in the basis v is written in,

after Cox & Matthews (2002) with the contour-integral evaluation of the phi-functions of Kassam &
Trefethen (2005, SIAM J. Sci. Comput. 26(4), 1214-1233): the coefficients f(z) = (e^z - 1) / z, ...
lose every digit to cancellation near z = 0 when evaluated directly, so each is the mean of f over
points on a circle of radius 1 around z = h * lambda (the Cauchy integral formula), which is exact
to rounding for every z, stiff (z very negative) or not (z near 0).

The linear part is integrated exactly, so the stiffness of L (high wavenumbers, fast diffusion)
sets no step limit; the error is O(h^4) in the step h and comes from the nonlinear term alone.
Used by the Kuramoto-Sivashinsky (:mod:`dtwin.sim.ks`) and FitzHugh-Nagumo
(:mod:`dtwin.sim.fhn`) twins.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from dtwin.errors import SimulationError

__all__ = ["COEFFICIENTS", "etdrk4_coefficients", "etdrk4_integrate", "etdrk4_step"]

COEFFICIENTS = ("E", "E2", "Q", "f1", "f2", "f3")


def etdrk4_coefficients(lam: Tensor, h: float, n_contour: int = 32) -> dict[str, Tensor]:
    """The ETDRK4 coefficients of step ``h`` for the diagonal linear operator ``lam``.

    Args:
        lam: Tensor[...] the eigenvalues of L (real or complex; units 1/time), any shape that
            broadcasts against the state's trailing dimensions (e.g. [K] for K basis functions,
            or [2, K] for two fields with their own diffusivities).
        h: the time step (> 0, same time unit as 1/lam).
        n_contour: points on the circle of radius 1 around each h * lam (Kassam & Trefethen use
            32 on the full circle, or 16 on the upper half for real lam; the full circle is used
            here so that complex lam are served too).

    Returns:
        dict of tensors shaped like ``lam``: 'E' = exp(h lam), 'E2' = exp(h lam / 2), and 'Q',
        'f1', 'f2', 'f3' (the weights of Cox & Matthews' scheme, each including the factor h).
        Computed in complex128; real (the imaginary part is rounding) when ``lam`` is real. The
        dtype is ``lam``'s (float32 lam gives float32 coefficients computed in double precision).
    """
    if not isinstance(lam, Tensor):
        raise ValueError(f"etdrk4_coefficients: lam must be a tensor, got {type(lam).__name__}")
    if not (lam.is_floating_point() or lam.is_complex()):
        raise ValueError(f"etdrk4_coefficients: lam must be a real or complex tensor, got {lam.dtype}")
    if not bool(torch.isfinite(lam).all()):
        raise ValueError("etdrk4_coefficients: lam must be finite")
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError(f"etdrk4_coefficients: the step h must be a finite number > 0, got {h!r}")
    if isinstance(n_contour, bool) or not isinstance(n_contour, int) or n_contour < 4:
        raise ValueError(f"etdrk4_coefficients: n_contour must be an integer >= 4, got {n_contour!r}")
    hl = lam.to(torch.complex128) * h
    j = torch.arange(n_contour, dtype=torch.float64, device=lam.device)
    # the roots of unity rotated by half a spacing: symmetric under conjugation, none on the real axis
    r = torch.exp(1j * (2.0 * math.pi * (j + 0.5) / n_contour))
    z = hl.unsqueeze(-1) + r
    ez, ez2 = torch.exp(z), torch.exp(z / 2)
    z3 = z**3
    coef = {
        "E": torch.exp(hl),
        "E2": torch.exp(hl / 2),
        "Q": h * ((ez2 - 1) / z).mean(-1),
        "f1": h * ((-4 - z + ez * (4 - 3 * z + z * z)) / z3).mean(-1),
        "f2": h * ((2 + z + ez * (z - 2)) / z3).mean(-1),
        "f3": h * ((-4 - 3 * z - z * z + ez * (4 - z)) / z3).mean(-1),
    }
    if lam.is_complex():
        return {k: c.to(lam.dtype) for k, c in coef.items()}
    return {k: c.real.to(lam.dtype) for k, c in coef.items()}


def etdrk4_step(v: Tensor, nonlinear: Callable[[Tensor], Tensor], coef: dict[str, Tensor]) -> Tensor:
    """One ETDRK4 step (Cox & Matthews' scheme) of v_t = L v + N(v).

    Args:
        v: Tensor[..., K] the state in L's eigenbasis (e.g. Fourier or cosine coefficients); any
            leading (batch) dimensions.
        nonlinear: v -> N(v), Tensor of v's shape: the nonlinear term written in the same basis.
            Evaluated four times per step.
        coef: :func:`etdrk4_coefficients` for the step, broadcasting against v.

    Returns:
        Tensor like v: the state one step h later.
    """
    try:
        E, E2, Q, f1, f2, f3 = (coef[k] for k in COEFFICIENTS)
    except (KeyError, TypeError):
        raise ValueError(
            f"etdrk4_step: coef must be the dict of etdrk4_coefficients with keys {COEFFICIENTS}, "
            f"got {sorted(coef) if isinstance(coef, dict) else type(coef).__name__}"
        ) from None
    Nv = nonlinear(v)
    E2v = E2 * v
    a = E2v + Q * Nv
    Na = nonlinear(a)
    b = E2v + Q * Na
    Nb = nonlinear(b)
    c = E2 * a + Q * (2 * Nb - Nv)
    Nc = nonlinear(c)
    return E * v + f1 * Nv + 2 * f2 * (Na + Nb) + f3 * Nc


def etdrk4_integrate(
    x0: Tensor,
    n_saved: int,
    steps_per_save: int,
    nonlinear: Callable[[Tensor], Tensor],
    coef: dict[str, Tensor],
    to_basis: Callable[[Tensor], Tensor],
    to_state: Callable[[Tensor], Tensor],
    *,
    owner: str,
    what: str,
    hint: str,
) -> Tensor:
    """Integrate a batch of states and keep every ``steps_per_save``-th: Tensor[B, n_saved + 1, ...].

    Args:
        x0: Tensor[B, ...] the initial states (in state space).
        n_saved: samples kept after the initial one.
        steps_per_save: :func:`etdrk4_step` calls between kept samples.
        nonlinear, coef: as for :func:`etdrk4_step` (in the basis).
        to_basis, to_state: the transform of a state to L's eigenbasis and back.
        owner: the simulator named by the error (with its settings); what: the members' name
            ("fields", "states"); hint: what usually helps, appended to the error.

    Raises:
        dtwin.errors.SimulationError: some states became non-finite (``indices`` names them). A
            blow-up is permanent (the transform spreads a non-finite value to every point and it
            stays), so the last sample tells who failed.
    """
    out = torch.empty(x0.shape[0], n_saved + 1, *x0.shape[1:], dtype=x0.dtype, device=x0.device)
    out[:, 0] = x0
    c = to_basis(x0)
    for i in range(1, n_saved + 1):
        for _ in range(steps_per_save):
            c = etdrk4_step(c, nonlinear, coef)
        out[:, i] = to_state(c)
    bad = ~torch.isfinite(out[:, -1]).flatten(1).all(-1)
    if bool(bad.any()):
        idx = bad.nonzero().flatten().tolist()
        shown = ", ".join(map(str, idx[:20])) + (" ..." if len(idx) > 20 else "")
        raise SimulationError(
            f"{owner}: {len(idx)} of {x0.shape[0]} {what} became non-finite: indices [{shown}]. {hint}",
            idx,
            [1] * len(idx),
        )
    return out
