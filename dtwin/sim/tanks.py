"""Cascaded water tanks, batched in torch (the example of the two-stage estimator paper, per its code):

    h1' = -k1 sqrt(h1) + k4 u,     h2' = k2 sqrt(h1) - k3 sqrt(h2),     y = h2

explicit Euler with dt = 0.5 over N = 400 samples, process noise (std 0.1 added to each state at
each step, levels clamped at 0: a tank cannot hold a negative level) and measurement noise (std
0.15). Input: random levels in [0, 3] held for 30 samples. theta = (k1, k2, k3, k4); prior box
k1..k3 in [0.4, 0.8], k4 in [0.8, 1.2]; OOD1 = (1.2, 1.2, 0.9, 1.0), OOD2 = (1.3, 1.3, 0.6, 0.7).

Note: from y alone theta is identifiable only up to the scaling h1 -> c h1, which maps
(k1, k2, k3, k4) to (k1 / sqrt(c), k2 sqrt(c), k3, k4 / c) with the same output; estimators see a
valley, not a point, along that curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DT",
    "N_SAMPLES",
    "OOD",
    "PRIOR_HIGH",
    "PRIOR_LOW",
    "arx_features",
    "prior_box",
    "quantile_features",
    "random_input",
    "sample_prior",
    "simulate",
]

DT = 0.5
N_SAMPLES = 400
HOLD = 30
PROCESS_NOISE = 0.1
MEASUREMENT_NOISE = 0.15
PRIOR_LOW = (0.4, 0.4, 0.4, 0.8)
PRIOR_HIGH = (0.8, 0.8, 0.8, 1.2)
OOD = {"OOD1": (1.2, 1.2, 0.9, 1.0), "OOD2": (1.3, 1.3, 0.6, 0.7)}
PARAMETERS = ("k1", "k2", "k3", "k4")


def _fail(message: str) -> None:
    raise ValueError(f"tanks: {message}")


def random_input(
    batch: int, n: int = N_SAMPLES, *, hold: int = HOLD, generator: torch.Generator | None = None
) -> Tensor:
    """Tensor[batch, n]: piecewise-constant levels uniform in [0, 3], each held ``hold`` samples."""
    if batch < 1 or n < 1 or hold < 1:
        _fail(f"random_input needs batch, n and hold >= 1, got {batch}, {n}, {hold}")
    levels = torch.rand(batch, -(-n // hold), generator=generator, dtype=torch.float64) * 3.0
    return levels.repeat_interleave(hold, dim=1)[:, :n]


def prior_box(
    low: Sequence[float] | None = None, high: Sequence[float] | None = None, *, owner: str = "tanks"
) -> tuple[Tensor, Tensor]:
    """The prior box as float64 tensors [4] (default: the paper's), checked: 4 values each,
    low <= high; errors start with ``owner``."""
    lo = torch.tensor(PRIOR_LOW if low is None else list(low), dtype=torch.float64)
    hi = torch.tensor(PRIOR_HIGH if high is None else list(high), dtype=torch.float64)
    if lo.shape != (4,) or hi.shape != (4,):
        raise ValueError(
            f"{owner}: prior_low and prior_high need 4 values (k1, k2, k3, k4), "
            f"got {lo.tolist()}, {hi.tolist()}"
        )
    if bool((lo > hi).any()):
        raise ValueError(f"{owner}: prior box with low > high: low={lo.tolist()}, high={hi.tolist()}")
    return lo, hi


def sample_prior(
    n: int,
    generator: torch.Generator | None = None,
    low: Sequence[float] = PRIOR_LOW,
    high: Sequence[float] = PRIOR_HIGH,
) -> Tensor:
    """Tensor[n, 4] uniform in the box [low, high]."""
    lo, hi = prior_box(low, high)
    return lo + (hi - lo) * torch.rand(n, 4, generator=generator, dtype=torch.float64)


def simulate(
    theta: Tensor,
    u: Tensor,
    *,
    noise: bool = True,
    generator: torch.Generator | None = None,
    dt: float = DT,
    process_noise: float = PROCESS_NOISE,
    measurement_noise: float = MEASUREMENT_NOISE,
    h0: Tensor | None = None,
    draws: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Output records Tensor[B, N] of B tanks with parameters ``theta`` [B, 4] (or [4]) driven by
    ``u`` [B, N] (or [N], shared). ``noise=False`` gives the noise-free output (differentiable in
    theta: the prediction-error method uses it). Starts empty unless ``h0`` [B, 2] is given.
    ``draws`` = (process [2, N, B], measurement [B, N]) standard normal draws to use instead of
    drawing (common random numbers: the same noise at every theta, a smooth function of theta)."""
    if not isinstance(theta, Tensor) or not isinstance(u, Tensor):
        _fail("theta and u must be tensors")
    theta = theta.unsqueeze(0) if theta.dim() == 1 else theta
    if theta.dim() != 2 or theta.shape[1] != 4:
        _fail(f"theta must be [B, 4] (k1, k2, k3, k4), got {list(theta.shape)}")
    B = theta.shape[0]
    u = u.unsqueeze(0).expand(B, -1) if u.dim() == 1 else u
    if u.dim() != 2 or u.shape[0] != B or u.shape[1] < 1:
        _fail(f"u must be [N] or [B={B}, N] with N >= 1, got {list(u.shape)}")
    if not bool(torch.isfinite(theta).all()) or not bool(torch.isfinite(u).all()):
        _fail("theta and u must be finite")
    if bool((theta <= 0).any()):
        _fail(
            "the twin cannot simulate non-positive flow coefficients; "
            f"got min(theta) = {theta.min().item():.3g}"
        )
    dtype = torch.promote_types(theta.dtype, u.dtype)
    theta, u = theta.to(dtype), u.to(dtype)
    k1, k2, k3, k4 = theta.unbind(1)
    if h0 is None:
        h1 = torch.zeros(B, dtype=dtype, device=theta.device)
        h2 = torch.zeros_like(h1)
    else:
        h1, h2 = h0.to(dtype).unbind(1)
    N = u.shape[1]
    if noise and draws is not None:
        if tuple(draws[0].shape) != (2, N, B) or tuple(draws[1].shape) != (B, N):
            _fail(
                f"draws must be ([2, {N}, {B}], [{B}, {N}]), "
                f"got {list(draws[0].shape)}, {list(draws[1].shape)}"
            )
        w, v = draws[0].to(dtype) * process_noise, draws[1].to(dtype) * measurement_noise
    elif noise:
        w = torch.randn(2, N, B, generator=generator, dtype=torch.float64).to(dtype) * process_noise
        v = torch.randn(B, N, generator=generator, dtype=torch.float64).to(dtype) * measurement_noise
    ys = []
    for t in range(N):
        ys.append(h2)
        s1, s2 = _sqrt(h1), _sqrt(h2)
        n1 = h1 + dt * (-k1 * s1 + k4 * u[:, t])
        n2 = h2 + dt * (k2 * s1 - k3 * s2)
        if noise:
            n1, n2 = n1 + w[0, t], n2 + w[1, t]
        h1, h2 = n1.clamp_min(0.0), n2.clamp_min(0.0)
    y = torch.stack(ys, 1)
    return y + v if noise else y


def _sqrt(h: Tensor) -> Tensor:
    # exact sqrt with a zero (not NaN) derivative at an empty tank: the double-where keeps
    # sqrt's infinite slope at 0 out of the gradient, and the scaling invariance exact
    positive = h > 0
    return torch.where(
        positive, torch.sqrt(torch.where(positive, h, torch.ones_like(h))), torch.zeros_like(h)
    )


def arx_features(u: Tensor, y: Tensor, na: int = 3, nb: int = 3, residual: bool = False) -> Tensor:
    """Least-squares ARX coefficients [B, na + nb + 1] of y_t = sum a_i y_{t-i} + sum b_j u_{t-j}
    + c, per record (the compression of input-output records); with ``residual`` one more column,
    the log standard deviation of the one-step residual (the process noise, which does not scale
    with the levels, makes it informative along the tanks' scaling valley)."""
    if na < 0 or nb < 1:
        _fail(f"ARX orders must be na >= 0, nb >= 1, got na={na}, nb={nb}")
    u = u.unsqueeze(0) if u.dim() == 1 else u
    y = y.unsqueeze(0) if y.dim() == 1 else y
    if u.dim() != 2 or y.dim() != 2:
        _fail(f"u and y must be [B, N] records, got {list(u.shape)} and {list(y.shape)}")
    u = u.expand(y.shape[0], -1) if u.shape[0] == 1 else u
    if u.shape != y.shape:
        _fail(f"u and y records must have the same shape, got {list(u.shape)} and {list(y.shape)}")
    n = max(na, nb)
    N = y.shape[1]
    if N <= n + na + nb + 1:
        _fail(f"records of {N} samples are too short for ARX orders na={na}, nb={nb}")
    if not bool(torch.isfinite(u).all()) or not bool(torch.isfinite(y).all()):
        _fail("records contain non-finite values")
    cols = [y[:, n - i : N - i] for i in range(1, na + 1)]
    cols += [u[:, n - j : N - j] for j in range(1, nb + 1)]
    cols.append(torch.ones_like(y[:, n:]))
    Phi = torch.stack(cols, -1)  # [B, N - n, p]
    target = y[:, n:].unsqueeze(-1)
    # normal equations with a tiny ridge: batched and differentiable, the regressors are few
    A = Phi.transpose(1, 2) @ Phi
    A = (
        A
        + 1e-8
        * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        * A.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
    )
    coef = torch.linalg.solve(A, Phi.transpose(1, 2) @ target)
    if not residual:
        return coef.squeeze(-1)
    r = (target - Phi @ coef).squeeze(-1)
    return torch.cat((coef.squeeze(-1), 0.5 * torch.log(r.pow(2).mean(1, keepdim=True) + 1e-12)), 1)


def quantile_features(y: Tensor, levels: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)) -> Tensor:
    """Empirical quantiles [B, len(levels)] of each record (the compression of i.i.d. data)."""
    y = y.unsqueeze(0) if y.dim() == 1 else y
    if not bool(torch.isfinite(y).all()):
        _fail("records contain non-finite values")
    q = torch.tensor(levels, dtype=y.dtype, device=y.device)
    return torch.quantile(y, q, dim=1).T
