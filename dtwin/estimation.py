"""Least-squares tools shared by the estimators: a damped Gauss-Newton (Levenberg-Marquardt) solver
on exact Jacobians from autograd, and the prediction-error method built on it.

The twins are torch programs, so the Jacobian of a residual with respect to the parameters is
exact (reverse mode, one backward pass per residual row block) rather than a finite difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "GaussNewtonResult",
    "batched_gauss_newton",
    "gauss_newton",
    "prediction_error_method",
    "with_jacobian",
]


class _ExactJacobian(torch.autograd.Function):
    """(value, jacobian) = evaluate(x); value differentiable through that Jacobian, in forward mode
    (torch.func.jacfwd, the Gauss-Newton solvers) and in reverse mode."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor, evaluate: Callable[..., tuple[Tensor, Tensor]], *args: Any
    ) -> tuple[Tensor, Tensor]:
        return evaluate(x, *args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.save_for_forward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.n_args = len(inputs) - 2

    @staticmethod
    def jvp(ctx, x_t, _evaluate_t, *_args_t):
        (jac,) = ctx.saved_tensors
        return torch.einsum("smp,sp->sm", jac, x_t), None

    @staticmethod
    def backward(ctx, grad, _grad_jac):
        (jac,) = ctx.saved_tensors
        return (torch.einsum("sm,smp->sp", grad, jac), None) + (None,) * ctx.n_args


def with_jacobian(
    x: Tensor, evaluate: Callable[..., tuple[Tensor, Tensor]], *args: Any
) -> tuple[Tensor, Tensor]:
    """(value [S, M], jacobian [S, M, P]) = ``evaluate(x, *args)`` for x [S, P], row s of value depending on
    x[s] alone, with value differentiable in x through that Jacobian (forward and reverse mode):
    how a simulator with exact sensitivities (the HH op's) joins autograd and ``torch.func.jacfwd``
    without differentiating its internals. The Jacobian itself is not differentiable; ``args``
    (further inputs, e.g. a fixed input signal) are not differentiated. Pass tensors that
    ``evaluate`` needs as ``args`` rather than capturing them: under torch.func transforms a
    captured tensor can trip functorch's level checks."""
    return _ExactJacobian.apply(x, evaluate, *args)


@dataclass
class GaussNewtonResult:
    x: Tensor  # the solution (in the solver's coordinates)
    cost: float  # 1/2 ||r(x)||^2 at the solution
    initial_cost: float
    iterations: int  # accepted steps
    jacobian: Tensor  # dr/dx at the solution
    history: list[float] = field(default_factory=list)


def _jacobian(residual: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """r(x) and dr/dx [len(r), len(x)] by forward mode (one pass per parameter: parameters are few)."""

    def both(x: Tensor) -> tuple[Tensor, Tensor]:
        r = residual(x)
        return r, r

    J, r = torch.func.jacfwd(both, has_aux=True)(x.detach())
    return r.detach(), J.reshape(r.numel(), x.numel()).detach()


def gauss_newton(
    residual: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    iterations: int = 10,
    damping: float = 1e-3,
    max_tries: int = 8,
    tol: float = 1e-10,
    max_step: float | None = None,
) -> GaussNewtonResult:
    """Minimise 1/2 ||residual(x)||^2 from ``x0`` by Levenberg-Marquardt: ``iterations`` accepted
    steps at most, the damping raised tenfold on a rejected step (``max_tries`` per step) and
    lowered on an accepted one. ``residual`` maps a 1-D tensor to a 1-D tensor, differentiably.
    ``max_step`` caps each step's largest component (a trust region, e.g. 1.0 on log-parameters)."""
    if x0.dim() != 1:
        raise ValueError(f"gauss_newton: x0 must be a 1-D tensor, got shape {list(x0.shape)}")
    if iterations < 0:
        raise ValueError(f"gauss_newton: iterations must be >= 0, got {iterations}")
    x = x0.detach().clone()
    r, J = _jacobian(residual, x)
    if not bool(torch.isfinite(r).all()):
        raise ValueError("gauss_newton: the residual is not finite at the initial point")
    cost = 0.5 * float(r @ r)
    initial, history, accepted, lam = cost, [cost], 0, damping
    eye = torch.eye(x.numel(), dtype=x.dtype)
    for _ in range(iterations):
        JtJ, g = J.T @ J, J.T @ r
        improved = False
        for _ in range(max_tries):
            A = JtJ + lam * (torch.diag(JtJ.diagonal()) + 1e-12 * eye)
            step = torch.linalg.solve(A, -g)
            if max_step is not None and float(step.abs().max()) > max_step:
                step = step * (max_step / float(step.abs().max()))
            with torch.no_grad():
                r_new = residual(x + step)
            new_cost = 0.5 * float(r_new @ r_new) if bool(torch.isfinite(r_new).all()) else float("inf")
            if new_cost < cost:
                x, lam, improved = x + step, max(lam / 10, 1e-9), True
                break
            lam *= 10
        if not improved:
            break
        accepted += 1
        r, J = _jacobian(residual, x)
        converged = cost - new_cost <= tol * max(cost, 1e-30)
        cost = new_cost
        history.append(cost)
        if converged:
            break
    return GaussNewtonResult(x, cost, initial, accepted, J, history)


def batched_gauss_newton(
    residual: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    iterations: int = 10,
    damping: float = 1e-3,
    max_tries: int = 8,
    max_step: float | None = None,
) -> list[GaussNewtonResult]:
    """:func:`gauss_newton` from S starting points at once: ``residual`` maps [S, P] to [S, M],
    row s depending on x[s] alone, so every evaluation (and the Jacobian, by forward mode) is one
    batched call. Each start keeps its own damping and accepts its own steps. Returns one result
    per start."""
    if x0.dim() != 2:
        raise ValueError(f"batched_gauss_newton: x0 must be [S, P], got shape {list(x0.shape)}")
    S, P = x0.shape

    def evaluate(x: Tensor) -> tuple[Tensor, Tensor]:
        # row s depends on x[s] alone, so shifting every row by the same d [P] gives each row's own
        # Jacobian block: P forward-mode tangents, not S x P (the full [S, M, S, P] Jacobian, zero
        # off its diagonal blocks), and the residual comes with them
        def shifted(d: Tensor) -> tuple[Tensor, Tensor]:
            r = residual(x + d)
            return r, r

        J, r = torch.func.jacfwd(shifted, has_aux=True)(torch.zeros(P, dtype=x.dtype))
        return r.detach(), J.detach()  # [S, M], [S, M, P]

    x = x0.detach().clone()
    r, J = evaluate(x)
    cost = 0.5 * r.pow(2).sum(1)
    initial = cost.clone()
    histories = [[float(c)] for c in cost]
    accepted = torch.zeros(S, dtype=torch.long)
    active = torch.isfinite(cost)
    lam = torch.full((S,), damping, dtype=x.dtype)
    eye = torch.eye(P, dtype=x.dtype)
    for _ in range(iterations):
        JtJ = J.transpose(1, 2) @ J
        g = (J.transpose(1, 2) @ r[..., None])[..., 0]
        pending = active.clone()
        for _ in range(max_tries):
            if not bool(pending.any()):
                break
            A = JtJ + lam[:, None, None] * (torch.diag_embed(JtJ.diagonal(dim1=1, dim2=2)) + 1e-12 * eye)
            step = torch.linalg.solve(A, -g)
            if max_step is not None:
                biggest = step.abs().amax(1, keepdim=True).clamp_min(1e-300)
                step = step * torch.clamp(max_step / biggest, max=1.0)
            step = torch.where(pending[:, None], step, torch.zeros_like(step))
            with torch.no_grad():
                r_new = residual(x + step)
            new_cost = 0.5 * r_new.pow(2).sum(1)
            new_cost = torch.where(
                torch.isfinite(new_cost), new_cost, torch.full_like(new_cost, float("inf"))
            )
            ok = pending & (new_cost < cost)
            x = torch.where(ok[:, None], x + step, x)
            cost = torch.where(ok, new_cost, cost)
            lam = torch.where(ok, (lam / 10).clamp_min(1e-9), torch.where(pending, lam * 10, lam))
            accepted += ok.long()
            pending &= ~ok
        moved = active & ~pending
        if not bool(moved.any()):
            break
        for s in moved.nonzero().flatten().tolist():
            histories[s].append(float(cost[s]))
        active = moved
        r, J = evaluate(x)
    return [
        GaussNewtonResult(x[s], float(cost[s]), float(initial[s]), int(accepted[s]), J[s], histories[s])
        for s in range(S)
    ]


def prediction_error_method(
    simulate: Callable[[Tensor], Tensor],
    y: Tensor,
    theta0: Tensor,
    *,
    iterations: int = 20,
    tol: float = 1e-6,
) -> tuple[Tensor, dict]:
    """The prediction-error (output-error) estimate: Gauss-Newton on 1/2 ||y - simulate(theta)||^2
    over log(theta) (positive parameters), from ``theta0``. ``simulate`` maps theta [P] to the
    noise-free output, shaped like ``y``. Stops when a step lowers the cost by less than ``tol``
    (relative): where the output does not determine every parameter (a valley of equal cost) the
    solver would otherwise drift along the valley. Returns theta and a report (cost, iterations,
    seconds)."""
    if not bool(torch.isfinite(y).all()):
        raise ValueError("prediction_error_method: the record y contains non-finite values")
    if bool((theta0 <= 0).any()):
        raise ValueError(f"prediction_error_method: theta0 must be positive, got {theta0.tolist()}")
    start = time.perf_counter()
    target = y.reshape(-1)
    result = gauss_newton(
        lambda phi: simulate(phi.exp()).reshape(-1) - target, theta0.log(), iterations=iterations
    )
    theta = result.x.exp()
    report = {
        "cost": result.cost,
        "initial_cost": result.initial_cost,
        "iterations": result.iterations,
        "seconds": time.perf_counter() - start,
    }
    return theta, report
