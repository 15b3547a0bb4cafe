"""``dtwin.ops.drip_step``: one iteration of the DRIP inner convex solve, fused.

The DRIP solver minimises ``f(z) = 1/2 ||A E z - b||^2 + R(z)`` for B problems at once (each
iterate flattened to a row of a Tensor[B, N]) by Nesterov-accelerated gradient descent with a step
size, a momentum and a stopping decision per sample. Each iteration evaluates ``g = grad f(y)``
with torch ops (the linear operators stay torch ops) and then calls :func:`drip_step` once for all
of the iteration's vector algebra: the two updates, the three per-sample squared norms and the
stopping test. Nothing in it synchronises with the device, so a loop of them runs ahead on a GPU;
the caller decides how often to look at ``active`` on the host.

The compiled kernels (csrc/cpu/drip.cpp, csrc/cuda/drip.cu, per-element math in
csrc/include/dtwin/drip.h) and :func:`drip_step_reference` below compute the same thing; the
reference is the specification.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dtwin.ops import _library

__all__ = ["drip_step", "drip_step_reference"]

_FLOATS = (torch.float32, torch.float64)


def _fail(name: str, message: str) -> None:
    raise ValueError(f"drip_step: {name} {message}")


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"shape {tuple(x.shape)}, dtype {x.dtype}"
    return type(x).__name__


def _check_inputs(
    z: Tensor, y: Tensor, g: Tensor, step: Tensor, momentum: Tensor, active: Tensor, tol: float
) -> None:
    if not isinstance(z, Tensor) or z.dim() != 2:
        _fail("z", f"must be a Tensor[B, N] (one flattened iterate per row), got {_describe(z)}")
    if z.dtype not in _FLOATS:
        _fail("z", f"must be float32 or float64, got {z.dtype}")
    B = z.shape[0]
    for x, name in ((y, "y"), (g, "g")):
        if not isinstance(x, Tensor) or x.shape != z.shape:
            _fail(name, f"must be a Tensor[B, N] of z's shape {tuple(z.shape)}, got {_describe(x)}")
    for x, name in ((step, "step"), (momentum, "momentum"), (active, "active")):
        if not isinstance(x, Tensor) or x.shape != (B,):
            _fail(name, f"must be a Tensor[B] with B = {B} (one value per sample), got {_describe(x)}")
    for x, name in ((y, "y"), (g, "g"), (step, "step"), (momentum, "momentum")):
        if x.dtype != z.dtype:
            _fail(name, f"has dtype {x.dtype} but z has {z.dtype}; pass one floating dtype")
    if active.dtype != torch.bool:
        _fail("active", f"must be a bool Tensor[B], got dtype {active.dtype}")
    for x, name in ((y, "y"), (g, "g"), (step, "step"), (momentum, "momentum"), (active, "active")):
        if x.device != z.device:
            _fail(name, f"is on {x.device} but z is on {z.device}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol >= 0):
        _fail("tol", f"must be a finite float >= 0 (the relative step tolerance), got {tol!r}")
    if torch.is_grad_enabled():
        for x, name in ((z, "z"), (y, "y"), (g, "g"), (step, "step"), (momentum, "momentum")):
            if x.requires_grad:
                _fail(
                    name,
                    "requires grad, but drip_step has no autograd: run the solver loop under "
                    "torch.no_grad() (DRIP differentiates the solution implicitly, not through the "
                    "iterations)",
                )


def drip_step(
    z: Tensor, y: Tensor, g: Tensor, step: Tensor, momentum: Tensor, active: Tensor, tol: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One Nesterov iteration for B problems: ``(z_new, y_new, active_new, delta_sq, grad_sq)``.

    For a sample b with ``active[b]`` (every row operation below is per sample; ``step``,
    ``momentum`` broadcast over the row)::

        z_new    = y - step * g                     # gradient step from the extrapolated point
        d        = z_new - z
        y_new    = z_new + momentum * d             # Nesterov extrapolation
        delta_sq = ||d||^2
        grad_sq  = ||g||^2
        active_new = delta_sq > tol^2 * max(||z_new||^2, tiny)

    that is, a sample keeps iterating while its relative step ``||z_new - z|| / ||z_new||``
    exceeds ``tol``; ``tiny = torch.finfo(dtype).tiny`` floors ``||z_new||^2`` so that an iterate
    at zero compares its step with the absolute ``tol * sqrt(tiny)``. A sample is tested on the
    step it has just taken and stops with that step applied.

    An inactive sample is held: ``z_new = y_new = z`` (copies), ``delta_sq = 0``,
    ``grad_sq = ||g||^2`` (still reported, e.g. for a final optimality check) and
    ``active_new = False``; its ``step`` and ``momentum`` are not read (NaN is fine there).

    Arithmetic: the updates are the dtype's correctly rounded operations in the order written,
    without fused multiply-add, so every backend returns the reference's ``z_new`` and ``y_new``
    bit for bit. The three squared norms (``||d||^2``, ``||z_new||^2``, ``||g||^2``) square each
    element in float64 and accumulate in float64 whatever the dtype (blocked sums: SIMD lanes and
    chunks of 16384 elements on the CPU, per-thread then tree sums on CUDA; the order is fixed, so
    results do not depend on the number of threads). The stopping test is evaluated in float64
    on those float64 sums; ``delta_sq`` and ``grad_sq`` are then rounded to the dtype.
    Non-finite values propagate; a NaN ``delta_sq`` compares false, so a sample that produced a
    NaN stops (check ``torch.isfinite`` on the result).

    Values are not checked: ``step > 0`` and ``0 <= momentum < 1`` are the caller's contract,
    since checking them would synchronise with the device every iteration.

    No autograd: the op is meant for the solver loop under ``torch.no_grad()`` (the DRIP solution
    is differentiated implicitly elsewhere). Called in grad mode with an input that requires grad
    it raises ValueError rather than returning results that silently carry no gradient.

    Args:
        z: Tensor[B, N], float32 or float64, the current iterate.
        y: Tensor[B, N], the extrapolated point where ``g`` was evaluated.
        g: Tensor[B, N], the gradient of the objective at ``y``.
        step: Tensor[B], per-sample step sizes (> 0), z's dtype.
        momentum: Tensor[B], per-sample Nesterov coefficients of this iteration (in [0, 1)).
        active: Tensor[B] bool, the samples still iterating.
        tol: relative step tolerance, finite, >= 0 (0: never stop on the step).

    Any strides are accepted; all outputs are contiguous: z_new, y_new Tensor[B, N];
    active_new Tensor[B] bool; delta_sq, grad_sq Tensor[B] in z's dtype.
    """
    _check_inputs(z, y, g, step, momentum, active, tol)
    if _library.use_compiled("drip_step", z.device):
        return torch.ops.dtwin.drip_step(z, y, g, step, momentum, active, float(tol))
    return drip_step_reference(z, y, g, step, momentum, active, float(tol))


def _fake(z, y, g, step, momentum, active, tol):
    B = z.shape[0]
    return (
        z.new_empty(z.shape),
        z.new_empty(z.shape),
        active.new_empty((B,)),
        z.new_empty((B,)),
        z.new_empty((B,)),
    )


# no autograd is registered: dtwin.ops.drip_step refuses inputs that require grad in grad mode
_library.register("drip_step", fake=_fake)


def drip_step_reference(
    z: Tensor, y: Tensor, g: Tensor, step: Tensor, momentum: Tensor, active: Tensor, tol: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The definition of :func:`drip_step` in plain torch (same arguments and outputs)."""
    on = active[:, None]
    z_new = torch.where(on, y - step[:, None] * g, z)
    d = z_new - z
    y_new = torch.where(on, z_new + momentum[:, None] * d, z)
    d64, z_new64, g64 = d.double(), z_new.double(), g.double()
    delta_sq = torch.where(active, (d64 * d64).sum(1), 0.0)
    z_new_sq = (z_new64 * z_new64).sum(1)
    grad_sq = (g64 * g64).sum(1)
    tiny = torch.finfo(z.dtype).tiny
    scale = torch.where(z_new_sq > tiny, z_new_sq, tiny)
    tol = float(tol)
    active_new = active & (delta_sq > (tol * tol) * scale)
    return (
        z_new.contiguous(),
        y_new.contiguous(),
        active_new.contiguous(),
        delta_sq.to(z.dtype),
        grad_sq.to(z.dtype),
    )
