"""Classical variational baselines for the DRIP inverse problems (deblurring, inpainting,
tomography; see ``dtwin.sim.imaging``): Tikhonov and total-variation reconstruction, with the
regularisation weight chosen on a validation batch or by the discrepancy principle.

For data ``y`` Tensor[B, *A.out_shape] of images x Tensor[B, 1, H, W], per sample b,

    tikhonov:         x* = argmin_x 1/2 ||A x - y||^2 + lam_b / 2 ||L x||^2
    total_variation:  x* = argmin_{x in box} 1/2 ||A x - y||^2 + lam_b TV(x)

with ``L`` the identity or the image gradient ``grad`` and TV(x) = sum_pixels |grad x| the isotropic
total variation. ``grad`` is the forward difference with Neumann boundary:
(grad x)[0, i, j] = x[i + 1, j] - x[i, j] (0 on the last row), (grad x)[1, i, j] = x[i, j + 1] -
x[i, j] (0 on the last column); ||grad||^2 < 8.

The operator contract is that of :mod:`dtwin.nn.drip` (``forward``, ``adjoint``, optional
``normal``, ``in_shape = (1, H, W)``, ``out_shape``); a ``check_finite`` attribute is switched off
while a solver runs. Everything is batched with per-sample ``lam`` (a number or Tensor[B]): a batch
gives what separate calls give, sample by sample. The loops do not synchronise with the device
except to look, every ``check_every`` iterations, whether every sample has stopped. The solvers
run without autograd (their results are detached): they are baselines, not layers.

Example::

    A = GaussianBlur((96, 96), sigma=2.0)
    y, sigma = add_noise(A(x_true), 0.05)
    lam, table = select_lambda("total_variation", A, y, x_true, [1e-3, 1e-2, 1e-1])
    x_tv = total_variation(A, y, lam)
    x_dp = discrepancy_lambda("tikhonov", A, y, sigma, tau=1.2).x  # lam per sample, no x_true
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dtwin.nn.drip import _finite_checks_off, _normal, operator_norm_sq

__all__ = [
    "VARIATIONAL_METHODS",
    "DiscrepancyResult",
    "discrepancy_lambda",
    "image_gradient",
    "image_gradient_adjoint",
    "select_lambda",
    "tikhonov",
    "total_variation",
    "tv_norm",
]

_FLOATS = (torch.float32, torch.float64)
_REGULARIZERS = ("gradient", "identity")
_GRAD_NORM_SQ = 8.0  # ||grad||^2 < 8 for the 2D forward differences (Neumann)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"Tensor{list(x.shape)} {x.dtype}"
    return type(x).__name__


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _positive_int(value: object, owner: str, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def _tolerance(value: object, owner: str) -> float:
    if not _number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: tol must be a finite number >= 0 (relative tolerance), got {value!r}")
    return float(value)


def _batch_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


def _view(t: Tensor, like: Tensor) -> Tensor:
    """Tensor[B] viewed to broadcast against ``like`` Tensor[B, ...]."""
    return t.view(-1, *([1] * (like.dim() - 1)))


# ------------------------------------------------------------------------------- finite differences


def image_gradient(x: Tensor) -> Tensor:
    """Forward differences with Neumann boundary: Tensor[B, 1, H, W] -> Tensor[B, 2, H, W], channel
    0 along rows (x[i + 1, j] - x[i, j], 0 on the last row), channel 1 along columns
    (x[i, j + 1] - x[i, j], 0 on the last column)."""
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    return torch.cat((dy, dx), dim=1)


def image_gradient_adjoint(p: Tensor) -> Tensor:
    """The exact transpose of :func:`image_gradient` (minus the discrete divergence):
    Tensor[B, 2, H, W] -> Tensor[B, 1, H, W]. The last row of channel 0 and the last column of
    channel 1 (where the gradient is 0 whatever x) do not enter."""
    py = p[:, 0:1, :-1, :]
    px = p[:, 1:2, :, :-1]
    return F.pad(py, (0, 0, 1, 0)) - F.pad(py, (0, 0, 0, 1)) + F.pad(px, (1, 0)) - F.pad(px, (0, 1))


def tv_norm(x: Tensor) -> Tensor:
    """Isotropic total variation per sample, sum over pixels of |grad x| (the Euclidean norm of
    the two forward differences): Tensor[B, 1, H, W] -> Tensor[B]."""
    return image_gradient(x).square().sum(1).sqrt().flatten(1).sum(1)


# ------------------------------------------------------------------------------------------ checks


def _check_operator(A: Any, owner: str) -> tuple[int, int]:
    missing = [a for a in ("forward", "adjoint", "in_shape", "out_shape") if not hasattr(A, a)]
    if missing or not callable(A):
        raise ValueError(
            f"{owner}: A ({type(A).__name__}) must be a linear operator: callable, with adjoint, "
            f"in_shape and out_shape; missing {', '.join(missing) or '__call__'} (see dtwin.sim.imaging)"
        )
    in_shape = tuple(A.in_shape)
    if len(in_shape) != 3 or in_shape[0] != 1:
        raise ValueError(f"{owner}: A.in_shape must be (1, H, W) (one-channel images), got {in_shape}")
    return int(in_shape[1]), int(in_shape[2])


def _check_data(A: Any, y: object, owner: str) -> Tensor:
    out_shape = tuple(A.out_shape)
    expected = f"Tensor[B, {', '.join(map(str, out_shape))}]"
    if not isinstance(y, Tensor) or y.dim() != 1 + len(out_shape) or tuple(y.shape[1:]) != out_shape:
        raise ValueError(
            f"{owner}: y must be the data {expected} of A ({type(A).__name__}, out_shape {out_shape}), "
            f"got {_describe(y)}"
        )
    if y.shape[0] < 1 or y.dtype not in _FLOATS:
        raise ValueError(f"{owner}: y must be a float32/float64 {expected} with B >= 1, got {_describe(y)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{owner}: y contains non-finite values (NaN or inf)")
    return y.detach()


def _per_sample(value: object, y: Tensor, owner: str, name: str, what: str, *, zero: bool = False) -> Tensor:
    """``value`` (a number or Tensor[B] / Tensor[1]) as a finite Tensor[B] in y's dtype and device,
    > 0 (>= 0 with ``zero``)."""
    B = y.shape[0]
    if isinstance(value, Tensor):
        if value.dim() > 1 or value.numel() not in (1, B):
            raise ValueError(
                f"{owner}: {name} must be a number or a Tensor[{B}] ({what}), got {_describe(value)}"
            )
        t = value.detach().to(device=y.device, dtype=y.dtype).reshape(-1).expand(B).clone()
    elif _number(value):
        t = torch.full((B,), float(value), dtype=y.dtype, device=y.device)
    else:
        raise ValueError(
            f"{owner}: {name} must be a number or a Tensor[{B}] ({what}), got {_describe(value)}"
        )
    bad = ~torch.isfinite(t) | ((t < 0) if zero else (t <= 0))
    if bool(bad.any()):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{owner}: {name} ({what}) must be finite and {bound}, got {t.tolist()}")
    return t


def _check_image(x: object, y: Tensor, shape: tuple[int, int], owner: str, name: str) -> Tensor:
    B, (H, W) = y.shape[0], shape
    if not isinstance(x, Tensor) or tuple(x.shape) != (B, 1, H, W) or x.dtype != y.dtype:
        raise ValueError(
            f"{owner}: {name} must be images Tensor[{B}, 1, {H}, {W}] of y's dtype {y.dtype}, "
            f"got {_describe(x)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{owner}: {name} contains non-finite values (NaN or inf)")
    return x.detach().to(y.device)


def _check_box(box: object, owner: str) -> tuple[float, float] | None:
    if box is None:
        return None
    ok = isinstance(box, Sequence) and len(box) == 2 and all(_number(v) for v in box)
    ok = ok and not any(math.isnan(v) for v in box) and box[0] < box[1]
    if not ok:
        raise ValueError(
            f"{owner}: box must be None or (lower, upper) with lower < upper (use math.inf for no upper "
            f"bound, e.g. (0, math.inf) for nonnegativity), got {box!r}"
        )
    return float(box[0]), float(box[1])


# ---------------------------------------------------------------------------------------- Tikhonov


def tikhonov(
    A: Any,
    y: Tensor,
    lam: float | Tensor,
    *,
    regularizer: str = "gradient",
    max_iter: int = 200,
    tol: float = 1e-6,
    x0: Tensor | None = None,
    check_every: int = 20,
) -> Tensor:
    """Tikhonov reconstruction x* = argmin_x 1/2 ||A x - y||^2 + lam_b / 2 ||L x||^2 per sample.

    Batched conjugate gradients on the normal equations (A^T A + lam_b L^T L) x = A^T y from ``x0``
    (zeros by default), with per-sample coefficients; a sample stops once its residual satisfies
    ||r|| <= tol ||A^T y|| (then it is held while the others go on).

    Args:
        A: the forward operator (``dtwin.sim.imaging``'s contract).
        y: data Tensor[B, *A.out_shape], float32 or float64, finite.
        lam: the regularisation weight, a number or Tensor[B] (per sample), > 0.
        regularizer: L, ``'gradient'`` (forward differences, Neumann boundary: penalises
            roughness, not the mean; the system is positive definite as long as A maps the constant
            image to something nonzero, true of all of dtwin.sim's operators) or ``'identity'``.
        max_iter: the most CG iterations.
        tol: the relative residual tolerance (>= 0).
        x0: the initial guess Tensor[B, 1, H, W] in y's dtype (a warm start).
        check_every: iterations between the looks at the host (has every sample stopped?).

    Returns: x* Tensor[B, 1, H, W], y's dtype and device (detached).
    """
    owner = "tikhonov"
    shape = _check_operator(A, owner)
    y = _check_data(A, y, owner)
    lam_t = _per_sample(lam, y, owner, "lam", "the regularisation weight")
    if regularizer not in _REGULARIZERS:
        raise ValueError(f"{owner}: regularizer must be one of {list(_REGULARIZERS)}, got {regularizer!r}")
    max_iter = _positive_int(max_iter, owner, "max_iter")
    check_every = _positive_int(check_every, owner, "check_every")
    tol = _tolerance(tol, owner)
    if x0 is not None:
        x0 = _check_image(x0, y, shape, owner, "x0")
    lam_v = lam_t.view(-1, 1, 1, 1)
    gradient = regularizer == "gradient"

    with torch.no_grad(), _finite_checks_off(A):

        def hessian(v: Tensor) -> Tensor:
            reg = image_gradient_adjoint(image_gradient(v)) if gradient else v
            return torch.addcmul(_normal(A, v), lam_v, reg)

        rhs = A.adjoint(y)
        if x0 is None:
            x = torch.zeros_like(rhs)
            r = rhs.clone()
        else:
            x = x0.clone()
            r = rhs - hessian(x)
        p = r.clone()
        rs = _batch_dot(r, r)
        threshold = (tol * tol) * _batch_dot(rhs, rhs)
        active = rs > threshold
        for k in range(max_iter):
            if (k % check_every == 0) and not bool(active.any()):
                break
            Hp = hessian(p)
            pHp = _batch_dot(p, Hp)
            alpha = _view(torch.where(active, rs / torch.where(active, pHp, 1.0), 0.0), p)
            x = torch.addcmul(x, alpha, p)
            r = torch.addcmul(r, alpha, Hp, value=-1.0)
            rs_new = _batch_dot(r, r)
            beta = _view(torch.where(active, rs_new / torch.where(rs > 0, rs, 1.0), 0.0), p)
            active = active & (rs_new > threshold)
            p = torch.addcmul(r, beta, p)
            rs = rs_new
        return x


# -------------------------------------------------------------------------------- total variation


def total_variation(
    A: Any,
    y: Tensor,
    lam: float | Tensor,
    *,
    max_iter: int = 300,
    tol: float = 1e-5,
    x0: Tensor | None = None,
    box: tuple[float, float] | None = (0.0, 1.0),
    check_every: int = 20,
    op_norm_sq: float | None = None,
    balance: float = 1.0,
) -> Tensor:
    """Total-variation reconstruction x* = argmin_{x in box} 1/2 ||A x - y||^2 + lam_b TV(x) per
    sample, TV the isotropic total variation of :func:`tv_norm`.

    Method: the primal-dual algorithm of Chambolle and Pock (2011) on the saddle-point form

        min_{x in box} max_{u, |p_ij| <= lam}  <A x, u> - 1/2 ||u||^2 - <u, y> + <grad x, p>,

    which needs only A, A^T and closed-form proximal maps (the box projection in x; a shrinkage
    in u; the projection onto the pixelwise balls of radius lam in p). Why not proximal gradient
    on the dual: the dual of the whole problem involves (A^T A)^-1, which inpainting and
    tomography do not have (A has a null space); a proximal-gradient method on the primal needs
    the proximal map of TV plus the box, itself an inner iterative solve. The steps are per block,
    sigma_u = 1 / (2 tau ||A||^2) and sigma_p = 1 / (2 tau ||grad||^2) with ||grad||^2 <= 8 and
    ||A||^2 from :func:`dtwin.nn.operator_norm_sq` (an estimate from above), so that
    tau (sigma_u ||A||^2 + sigma_p ||grad||^2) <= 1 (Pock and Chambolle's condition for block
    steps), and tau = balance / sqrt(2 ||A||^2 * 8): ``balance`` = 1 weighs the primal and the dual
    steps alike, a good choice for images in [0, 1] and lam of about 0.1 to 1 (on 12 x 12 test
    problems); a larger balance (3 to 10) converges faster for small lam (~0.01), a smaller one
    (~0.3) for large lam.
    A sample stops once its relative step ||x_k+1 - x_k|| <= tol ||x_k+1|| (a heuristic: the
    objective settles much before the iterates on flat regions; set ``tol=0`` to run ``max_iter``
    iterations); it is then held while the others go on.

    Args:
        A: the forward operator (``dtwin.sim.imaging``'s contract).
        y: data Tensor[B, *A.out_shape], float32 or float64, finite.
        lam: the TV weight, a number or Tensor[B] (per sample), > 0.
        max_iter: the most primal-dual iterations.
        tol: the relative step tolerance (>= 0).
        x0: the initial image Tensor[B, 1, H, W] in y's dtype (projected onto the box; the dual
            variables start at 0).
        box: the constraint (lower, upper) on every pixel, (0, 1) by default (images in [0, 1]);
            (0, math.inf) for nonnegativity only, None for no constraint.
        check_every: iterations between the looks at the host (has every sample stopped?).
        op_norm_sq: ||A||^2 (or an upper bound) to use instead of the cached power iteration.
        balance: the primal step relative to the balanced one (> 0; the dual steps get 1 / balance),
            a speed knob that does not change the solution.

    Returns: x* Tensor[B, 1, H, W], y's dtype and device (detached), inside the box.
    """
    owner = "total_variation"
    shape = _check_operator(A, owner)
    y = _check_data(A, y, owner)
    lam_t = _per_sample(lam, y, owner, "lam", "the TV weight")
    max_iter = _positive_int(max_iter, owner, "max_iter")
    check_every = _positive_int(check_every, owner, "check_every")
    tol = _tolerance(tol, owner)
    bounds = _check_box(box, owner)
    if x0 is not None:
        x0 = _check_image(x0, y, shape, owner, "x0")
    if op_norm_sq is None:
        a_sq = operator_norm_sq(A, y.dtype, y.device)
    elif not _number(op_norm_sq) or not math.isfinite(op_norm_sq) or op_norm_sq <= 0:
        raise ValueError(f"{owner}: op_norm_sq must be a finite number > 0 (||A||^2), got {op_norm_sq!r}")
    else:
        a_sq = float(op_norm_sq)
    if not _number(balance) or not math.isfinite(balance) or balance <= 0:
        raise ValueError(f"{owner}: balance must be a finite number > 0, got {balance!r}")
    B, (H, W) = y.shape[0], shape
    tau = float(balance) / math.sqrt(2.0 * a_sq * _GRAD_NORM_SQ)
    sigma_u, sigma_p = 1.0 / (2.0 * tau * a_sq), 1.0 / (2.0 * tau * _GRAD_NORM_SQ)

    def project(x: Tensor) -> Tensor:
        return x if bounds is None else x.clamp(bounds[0], bounds[1])

    with torch.no_grad(), _finite_checks_off(A):
        x = torch.zeros(B, 1, H, W, dtype=y.dtype, device=y.device) if x0 is None else project(x0.clone())
        x_bar = x
        u = torch.zeros_like(y)
        p = torch.zeros(B, 2, H, W, dtype=y.dtype, device=y.device)
        lam_p = lam_t.view(-1, 1, 1, 1)
        active = torch.ones(B, dtype=torch.bool, device=y.device)
        # per-sample steps, zeroed for a stopped sample: then every update leaves it as it is
        ones = torch.ones(B, dtype=y.dtype, device=y.device)
        tau_b, su_b, sp_b = tau * ones, sigma_u * ones, sigma_p * ones
        tol_sq, tiny = tol * tol, torch.finfo(y.dtype).tiny
        for k in range(max_iter):
            if (k % check_every == 0) and k > 0 and not bool(active.any()):
                break
            su, sp, tv = _view(su_b, y), _view(sp_b, p), _view(tau_b, x)
            # dual ascent: u <- prox of the conjugate data term, p <- projection onto |p_ij| <= lam
            u = (u + su * (A(x_bar) - y)) / (1.0 + su)
            p = p + sp * image_gradient(x_bar)
            p = p / torch.clamp(p.square().sum(1, keepdim=True).sqrt() / lam_p, min=1.0)
            # primal descent, projected onto the box, then the extrapolation (theta = 1)
            x_new = project(x - tv * (A.adjoint(u) + image_gradient_adjoint(p)))
            step_sq = (x_new - x).flatten(1).square().sum(1)
            scale = x_new.flatten(1).square().sum(1).clamp_min(tiny)
            x_bar = 2.0 * x_new - x
            x = x_new
            active = active & (step_sq > tol_sq * scale)
            on = active.to(y.dtype)
            tau_b, su_b, sp_b = tau * on, sigma_u * on, sigma_p * on
        return x


# ---------------------------------------------------------------------------------- choosing lam

VARIATIONAL_METHODS: dict[str, Callable[..., Tensor]] = {
    "tikhonov": tikhonov,
    "total_variation": total_variation,
    "tv": total_variation,
}


def _method(method: object, owner: str) -> Callable[..., Tensor]:
    if isinstance(method, str):
        if method not in VARIATIONAL_METHODS:
            raise ValueError(
                f"{owner}: method must be one of {sorted(VARIATIONAL_METHODS)} or a callable "
                f"(A, y, lam, **kwargs) -> Tensor[B, 1, H, W], got {method!r}"
            )
        return VARIATIONAL_METHODS[method]
    if callable(method):
        return method
    raise ValueError(
        f"{owner}: method must be one of {sorted(VARIATIONAL_METHODS)} or a callable, got {_describe(method)}"
    )


def _misfit(A: Any, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad(), _finite_checks_off(A):
        return (A(x) - y).flatten(1).square().sum(1).sqrt()


def select_lambda(
    method: str | Callable[..., Tensor],
    A: Any,
    y: Tensor,
    x_true: Tensor,
    grid: Sequence[float] | Tensor,
    *,
    data_range: float = 1.0,
    **kwargs: Any,
) -> tuple[float, dict[float, float]]:
    """The lam of ``grid`` whose reconstructions have the best mean PSNR against ``x_true`` on a
    validation batch (one lam for the whole batch; the first of equal bests).

    Args:
        method: ``'tikhonov'``, ``'total_variation'`` (alias ``'tv'``) or a callable
            (A, y, lam, **kwargs) -> Tensor[B, 1, H, W].
        A: the forward operator.
        y: validation data Tensor[B, *A.out_shape].
        x_true: the true images Tensor[B, 1, H, W] (same B, y's dtype), in [0, ``data_range``].
        grid: the candidate weights, a non-empty sequence (or 1-D Tensor) of numbers > 0.
        data_range: the PSNR's peak value (``dtwin.models.losses.psnr``).
        **kwargs: passed on to the method (e.g. ``max_iter``, ``regularizer``, ``box``).

    Returns: (best lam, {lam: mean PSNR in dB} in the order of ``grid``); a reconstruction that is
    not finite counts as -inf dB.
    """
    from dtwin.models.losses import psnr  # deferred: dtwin.models imports Lightning

    owner = "select_lambda"
    solver = _method(method, owner)
    shape = _check_operator(A, owner)
    y = _check_data(A, y, owner)
    x_true = _check_image(x_true, y, shape, owner, "x_true")
    values = grid.detach().reshape(-1).tolist() if isinstance(grid, Tensor) else grid
    ok = isinstance(values, Sequence) and len(values) > 0
    ok = ok and all(_number(v) and math.isfinite(v) and v > 0 for v in values)
    if not ok:
        raise ValueError(f"{owner}: grid must be a non-empty sequence of finite numbers > 0, got {grid!r}")
    if not _number(data_range) or not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"{owner}: data_range must be a finite number > 0, got {data_range!r}")
    table: dict[float, float] = {}
    for lam in values:
        x = solver(A, y, float(lam), **kwargs)
        scores = psnr(x, x_true, data_range=float(data_range))
        scores = torch.where(torch.isfinite(x).flatten(1).all(1), scores, -math.inf)
        table[float(lam)] = float(scores.mean())
    best = max(table, key=lambda lam: table[lam])  # the first of equal maxima
    return best, table


class DiscrepancyResult(NamedTuple):
    """What :func:`discrepancy_lambda` returns.

    lam: Tensor[B], the weight chosen per sample.
    x: Tensor[B, 1, H, W], the reconstruction at that weight.
    misfit: Tensor[B], ||A x - y|| at ``x``.
    satisfied: Tensor[B] bool, misfit <= tau sigma sqrt(M) (False only where even the smallest
        weight ``lo`` misses the bound; then lam = lo and x is its reconstruction).
    """

    lam: Tensor
    x: Tensor
    misfit: Tensor
    satisfied: Tensor


def discrepancy_lambda(
    method: str | Callable[..., Tensor],
    A: Any,
    y: Tensor,
    sigma: float | Tensor,
    tau: float = 1.2,
    lo: float = 1e-5,
    hi: float = 1e2,
    steps: int = 12,
    **kwargs: Any,
) -> DiscrepancyResult:
    """The discrepancy principle (Morozov): per sample, the largest lam in [lo, hi] whose
    reconstruction x_lam fits the data to the noise level, ||A x_lam - y|| <= tau sigma_b sqrt(M)
    (M = the measurements per sample, sigma_b the noise std of sample b, e.g. from
    ``dtwin.sim.imaging.add_noise``).

    The misfit grows with lam (for exact minimisers of both methods), so a bisection in log(lam)
    finds the threshold: one solve at lo and hi, then ``steps`` bisection steps, every solve batched
    over the samples with per-sample lam. The chosen lam is the largest weight found to satisfy the
    bound (hi if it does); the smallest weight found to violate it is at most
    (hi / lo)^(2^-steps) times larger. Each solve starts from the reconstruction of the sample's
    current best weight (a warm start). The bound holds for the returned x by construction
    (``satisfied``); how close the threshold is depends on the solves' accuracy (``kwargs``).

    Args:
        method: ``'tikhonov'``, ``'total_variation'`` (alias ``'tv'``) or a callable
            (A, y, lam, x0=..., **kwargs) -> Tensor[B, 1, H, W] taking per-sample lam Tensor[B].
        A: the forward operator.
        y: data Tensor[B, *A.out_shape].
        sigma: per-sample noise std, a number or Tensor[B], >= 0.
        tau: the discrepancy factor (> 0; 1 to 1.5 in practice).
        lo, hi: the range of lam, 0 < lo < hi.
        steps: the bisection steps (>= 0).
        **kwargs: passed on to the method (e.g. ``max_iter``, ``tol``, ``regularizer``, ``box``).

    Returns: :class:`DiscrepancyResult` (lam, x, misfit, satisfied).
    """
    owner = "discrepancy_lambda"
    solver = _method(method, owner)
    _check_operator(A, owner)
    y = _check_data(A, y, owner)
    s = _per_sample(sigma, y, owner, "sigma", "the per-sample noise std", zero=True)
    if not _number(tau) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"{owner}: tau must be a finite number > 0, got {tau!r}")
    ok = _number(lo) and _number(hi) and math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi
    if not ok:
        raise ValueError(
            f"{owner}: lo and hi must be finite numbers with 0 < lo < hi, got lo={lo!r}, hi={hi!r}"
        )
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"{owner}: steps must be an integer >= 0, got {steps!r}")
    if "x0" in kwargs:
        raise ValueError(f"{owner}: x0 is not accepted (the bisection warm-starts the solves itself)")
    B = y.shape[0]
    M = math.prod(tuple(A.out_shape))
    target = tau * s * math.sqrt(M)

    # the two ends in one batched solve
    ends = torch.cat((torch.full_like(s, float(hi)), torch.full_like(s, float(lo))))
    x_ends = solver(A, torch.cat((y, y)), ends, **kwargs)
    r_ends = _misfit(A, x_ends, torch.cat((y, y)))
    x_hi, x_lo = x_ends[:B], x_ends[B:]
    ok_hi, ok_lo = r_ends[:B] <= target, r_ends[B:] <= target
    # per sample: log_good satisfies the bound (or is lo), log_bad violates it
    log_good = torch.where(ok_hi, math.log(hi), math.log(lo)).to(y.dtype)
    log_bad = torch.full_like(log_good, math.log(hi))
    x = torch.where(_view(ok_hi, x_hi), x_hi, x_lo)
    misfit = torch.where(ok_hi, r_ends[:B], r_ends[B:])
    searching = ~ok_hi & ok_lo
    for _ in range(steps):
        mid = 0.5 * (log_good + log_bad)
        x_mid = solver(A, y, torch.exp(mid), x0=x, **kwargs)
        r_mid = _misfit(A, x_mid, y)
        good = searching & (r_mid <= target)
        bad = searching & ~good
        log_good = torch.where(good, mid, log_good)
        log_bad = torch.where(bad, mid, log_bad)
        x = torch.where(_view(good, x), x_mid, x)
        misfit = torch.where(good, r_mid, misfit)
    return DiscrepancyResult(torch.exp(log_good), x, misfit, ok_hi | ok_lo)
