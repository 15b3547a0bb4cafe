"""The lower level of DRIP (Eliasof, Haber, Treister, arXiv 2304.00015): a convex inner solve in a
learned latent space, differentiated implicitly.

For data ``b`` Tensor[B, *A.out_shape] of images ``u = E z`` Tensor[B, 1, H, W], the solution is

    z* = argmin_z  f(z) = 1/2 ||A E z - b||^2 + R(z),        z Tensor[B, C, H, W]

per sample, where ``A`` is a linear forward operator (e.g. ``dtwin.sim.imaging.GaussianBlur``), ``E`` a
learned synthesis map from C latent channels to the image (:class:`Synthesis`) and ``R`` a learned
scalar regularizer that is convex in z (:class:`ConvexRegularizer`). The upper level trains E and
R through ``loss(E z*, u_true)``.

:func:`solve` runs Nesterov's accelerated gradient method with a step 1/L and a stopping decision
per sample (a relative step tolerance, or the discrepancy principle) and calls the fused op
:func:`dtwin.ops.drip_step` for each iteration's vector algebra; the linear operators stay torch
ops and nothing in the loop synchronises with the device (a look at the host every
``check_every`` iterations ends the loop early once every sample stopped). Its backward is implicit
differentiation through the optimality condition ``grad_z f(z*) = 0``: one batched conjugate
gradient solve with Hessian-vector products, then one autograd call, so the training memory does
not depend on the number of inner iterations. :func:`solve_unrolled` is the reference: the same
iterations in plain torch, with autograd through every one of them.

With the built-in :class:`Synthesis` and :class:`ConvexRegularizer` (exactly these classes) both
solvers keep the latents channels last (the faster convolutions on CPUs; the solution is returned
contiguous) and compute E^T by a product over the taps that adds into grad R; without a graph
(the fused loop, the CG) the sums and the penalty derivative work in place. Both run the same
operations, so :func:`solve` and :func:`solve_unrolled` produce the same iterates bit for bit.

Contracts (duck-typed; the built-in classes satisfy them):

* operator ``A``: ``forward(x)`` Tensor[B, 1, H, W] -> Tensor[B, *out_shape], ``adjoint`` (its exact
  transpose), optional ``normal`` (A^T A), attributes ``in_shape = (1, H, W)`` and ``out_shape``;
  linear, autograd through ``forward``/``adjoint``. Its squared norm is estimated once per
  (operator, dtype, device) by power iteration (see :func:`operator_norm_sq`). A ``check_finite``
  attribute (``dtwin.sim.LinearOperator``) is switched off while the solver runs.
* synthesis ``E``: ``forward(z)`` Tensor[B, C, H, W] -> Tensor[B, 1, H, W] linear, ``adjoint`` its
  exact transpose, ``latent_channels`` (C) and ``norm_sq(shape)``: an upper bound of ||E||^2 on
  latents of spatial shape ``shape`` (a float or 0-dim Tensor).
* regularizer ``R``: ``forward(z)`` Tensor[B, C, H, W] -> Tensor[B], **convex in z** and separable
  over the batch (sample b's value depends only on ``z[b]``); ``lipschitz(shape)``: an upper bound
  of the Lipschitz constant of ``grad R`` (a float, 0-dim Tensor or Tensor[B]). Optional:
  ``gradient(z)`` (else autograd), ``hvp(z, v)`` or ``hessian(z) -> (v -> H v)`` (else double
  backward), ``strong_convexity()`` (a lower bound of its strong convexity modulus; else 0),
  ``latent_channels``. A regularizer that is not a :class:`ConvexRegularizer` is checked for
  convexity on random probe pairs by :func:`check_convex` at every solve (a few evaluations of R;
  ``check_convexity=False`` skips it). The implicit backward needs the Hessian of f at z* to be
  positive definite: give R some strong convexity (ConvexRegularizer's ``mu``).

Example (one training step of the upper level)::

    A = GaussianBlur((96, 96), sigma=2.0)
    E, R = Synthesis(64), ConvexRegularizer(64)
    b, sigma = add_noise(A(u_true), 0.1)
    z = solve(A, E, R, b, sigma=sigma, tau=1.2, max_iter=200).z
    loss = (E(z) - u_true).square().mean()
    loss.backward()  # implicit: CG on Hessian-vector products, memory independent of max_iter
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from dtwin.ops import drip_step

__all__ = [
    "PENALTIES",
    "ConvexRegularizer",
    "SolveResult",
    "Synthesis",
    "check_convex",
    "objective",
    "operator_norm_sq",
    "solve",
    "solve_unrolled",
]

_FLOATS = (torch.float32, torch.float64)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"Tensor{list(x.shape)} {x.dtype}"
    return type(x).__name__


def _positive_int(value: object, owner: str, name: str, *, odd: bool = False) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not ok or (odd and value % 2 == 0):
        what = "an odd integer >= 1" if odd else "an integer >= 1"
        raise ValueError(f"{owner}: {name} must be {what}, got {value!r}")
    return int(value)


def _positive_float(value: object, owner: str, name: str, *, zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):
        what = ">= 0" if zero else "> 0"
        raise ValueError(f"{owner}: {name} must be a finite number {what}, got {value!r}")
    return float(value)


def _channel(value: object, channels: int, owner: str) -> int:
    """``value`` as a latent channel index in [0, channels), else ValueError naming ``owner``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < channels:
        raise ValueError(f"{owner}: channel must be an integer in [0, {channels}), got {value!r}")
    return value


def _softplus_inverse(w: Tensor) -> Tensor:
    """softplus^-1(w) = w + log(-expm1(-w)) for w > 0, computed stably in float64, in w's dtype."""
    w64 = w.double()
    return (w64 + torch.log(-torch.expm1(-w64))).to(w.dtype)


def _conv_norm_sq(weight: Tensor, shape: tuple[int, int], row_scale: Tensor | None = None) -> Tensor:
    """An upper bound of ||K||^2 for the zero-padded 'same' convolution K with ``weight``
    Tensor[J, C, k, k] (odd k) on C x H x W inputs, rows (output channels) scaled by ``row_scale``
    Tensor[J] if given: 0-dim float64.

    K is a restriction of the circular convolution on the (H + k - 1) x (W + k - 1) grid (no
    wrap-around reaches the H x W window), whose norm is the largest spectral norm of the J x C
    transfer matrices over that grid's DFT frequencies; a restriction has no larger norm. Computed
    in the weight's precision, then enlarged by a relative 1000 eps of that dtype."""
    H, W = shape
    k = weight.shape[-1]
    grid = (H + k - 1, W + k - 1)
    with torch.no_grad():
        w = weight.detach()
        if row_scale is not None:
            w = w * row_scale.detach().to(w.dtype)[:, None, None, None]
        J, C = w.shape[:2]
        if min(J, C) == 1:
            spectrum = torch.fft.rfft2(w, s=grid)  # [J, C, *F]
            best = spectrum.abs().square().sum((0, 1)).max()
        else:
            # The smaller Gram matrix of the transfer matrices, G(f) = m(f) m(f)^H with the rows
            # m(f) of the n = min(J, C) side, is the DFT of the rows' cross-correlations
            # sum_c w[i, c] * w[j, c] (n x n kernels of size 2k - 1, one small convolution) placed
            # circularly on the grid (each grid side is >= 2k - 1 when H, W >= k; smaller grids
            # take the transfer matrices directly)
            rows = w if J <= C else w.transpose(0, 1)
            if min(H, W) >= k:
                corr = F.conv2d(rows, rows, padding=k - 1)  # [n, n, 2k - 1, 2k - 1]
                corr = F.pad(corr, (0, grid[1] - 2 * k + 1, 0, grid[0] - 2 * k + 1))
                gram = torch.fft.rfft2(corr.roll((1 - k, 1 - k), (-2, -1)))  # [n, n, *F]
                gram = gram.permute(2, 3, 0, 1).reshape(-1, *gram.shape[:2])
            else:
                m = torch.fft.rfft2(rows, s=grid).permute(2, 3, 0, 1).reshape(-1, *rows.shape[:2])
                gram = m @ m.mH
            best = torch.linalg.eigvalsh(gram)[..., -1].max()
        margin = 1.0 + 1e3 * torch.finfo(w.dtype).eps
        return best.double().clamp_min(0.0) * margin


def _check_latent(z: object, channels: int, owner: str, name: str = "z") -> Tensor:
    if not isinstance(z, Tensor) or z.dim() != 4 or z.shape[1] != channels or z.shape[0] < 1:
        raise ValueError(
            f"{owner}: {name} must be a latent Tensor[B, {channels}, H, W] ({channels} latent channels), "
            f"got {_describe(z)}"
        )
    if z.dtype not in _FLOATS:
        raise ValueError(f"{owner}: {name} must be float32 or float64, got {z.dtype}")
    return z


# ------------------------------------------------------------------------------------------ modules


class Synthesis(nn.Module):
    """The learned synthesis map E: u = E z, a 'same' convolution (zero padding, no bias) from
    ``latent_channels`` C to one image channel, with its exact adjoint.

    Args:
        latent_channels: C (the DRIP paper uses 64).
        kernel_size: odd k (the paper's E is 9 x 9; 5 by default).

    The weight Tensor[1, C, k, k] starts like ``nn.Conv2d``'s (uniform, bound 1 / sqrt(C k^2)).
    ``forward``: z Tensor[B, C, H, W] -> u Tensor[B, 1, H, W] (computed as a product over the
    channels per tap and a shifted sum, ``F.fold``: with one output channel about 4x faster than
    ``conv2d`` on CPUs, forward and backward); ``adjoint``: u -> Tensor[B, C, H, W] (the correlation
    with the flipped kernel: exactly the transpose).
    """

    def __init__(self, latent_channels: int = 64, kernel_size: int = 5) -> None:
        super().__init__()
        self.latent_channels = _positive_int(latent_channels, "Synthesis", "latent_channels")
        self.kernel_size = _positive_int(kernel_size, "Synthesis", "kernel_size", odd=True)
        bound = 1.0 / math.sqrt(self.latent_channels * self.kernel_size**2)
        weight = torch.empty(1, self.latent_channels, self.kernel_size, self.kernel_size)
        self.weight = nn.Parameter(weight.uniform_(-bound, bound))

    def forward(self, z: Tensor) -> Tensor:
        """u = E z: Tensor[B, C, H, W] -> Tensor[B, 1, H, W] (either memory format)."""
        _check_latent(z, self.latent_channels, "Synthesis")
        B, C, H, W = z.shape
        k = self.kernel_size
        # the 'same' correlation as one product over the channels per tap, Tensor[B, k^2, H W],
        # whose k^2 planes are then shifted into place and summed (fold): several times faster on
        # CPUs than conv2d with its one output channel, forward and backward. (bmm, not matmul:
        # the same kernels with and without autograd, so the solvers' iterates agree bit for bit)
        taps = self.weight.flip(-2, -1).reshape(C, k * k).t().expand(B, k * k, C)
        u = F.fold(torch.bmm(taps, z.reshape(B, C, H * W)), (H, W), k, padding=k // 2)
        # fold's result keeps a storage of its input's size: a compact copy where autograd may keep it
        return u.clone() if torch.is_grad_enabled() else u

    def adjoint(self, u: Tensor) -> Tensor:
        """E^T u: Tensor[B, 1, H, W] -> Tensor[B, C, H, W]."""
        _check_latent(u, 1, "Synthesis.adjoint", "u")
        # the transpose of a stride-1 'same' correlation: correlation with the flipped kernel
        # (faster than conv_transpose2d for one input channel)
        weight = self.weight.flip(-2, -1).transpose(0, 1)
        return F.conv2d(u, weight, padding=self.kernel_size // 2)

    def _adjoint_add(self, u: Tensor, base: Tensor) -> Tensor:
        """base + E^T u for channels-last latents ``base`` Tensor[B, C, H, W] (the solver's layout):
        the k^2 shifted copies of u (unfold) times the taps, one matrix product that adds into base
        (in place without a graph; the same arithmetic either way)."""
        B, _, H, W = u.shape
        C, k = self.latent_channels, self.kernel_size
        taps = self.weight.flip(-2, -1).reshape(C, k * k).t()
        rows = base.permute(0, 2, 3, 1).reshape(B, H * W, C)
        if torch.is_grad_enabled():
            rows = _UnfoldTaps.apply(u, taps, rows, k)
        else:
            rows = rows.baddbmm_(F.unfold(u, k, padding=k // 2).mT, taps.expand(B, k * k, C))
        return rows.view(B, H, W, C).permute(0, 3, 1, 2)

    @torch.no_grad()
    def select_channel_(self, channel: int = 0, noise: float = 0.01) -> Synthesis:
        """Starts E as the identity on latent channel ``channel`` (u = z[channel]: a centred unit
        tap), its other weights ``noise`` times their current (random) values, so that the other
        channels start small but not at a symmetric zero. In place; returns self."""
        channel = _channel(channel, self.latent_channels, "Synthesis.select_channel_")
        noise = _positive_float(noise, "Synthesis.select_channel_", "noise", zero=True)
        c = self.kernel_size // 2
        self.weight.mul_(noise)
        self.weight[0, channel, c, c] = 1.0
        return self

    def norm_sq(self, shape: Sequence[int]) -> Tensor:
        """An upper bound of ||E||^2 on latents of spatial shape (H, W): 0-dim float64 (exact up to
        the zero padding at the border, see the module notes)."""
        return _conv_norm_sq(self.weight, (int(shape[0]), int(shape[1])))

    def extra_repr(self) -> str:
        return f"latent_channels={self.latent_channels}, kernel_size={self.kernel_size}"


class _UnfoldTaps(torch.autograd.Function):
    """base + unfold(u)^T taps: u Tensor[B, 1, H, W], taps Tensor[k^2, C], base Tensor[B, H W, C]
    -> Tensor[B, H W, C], the 'same' correlation of one image with C kernels (flattened taps),
    channels last, added to base by the matrix product. For autograd it keeps u, not the k^2 times
    larger unfolded copy (recomputed in the backward)."""

    @staticmethod
    def forward(ctx, u: Tensor, taps: Tensor, base: Tensor, k: int) -> Tensor:
        ctx.save_for_backward(u, taps)
        ctx.k = k
        cols = F.unfold(u, k, padding=k // 2)
        return torch.baddbmm(base, cols.mT, taps.expand(u.shape[0], *taps.shape))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        u, taps = ctx.saved_tensors
        k = ctx.k
        grad_u = grad_taps = None
        if ctx.needs_input_grad[0]:
            cols = torch.bmm(taps.expand(u.shape[0], *taps.shape), grad.mT)  # [B, k^2, H W]
            grad_u = F.fold(cols, u.shape[-2:], k, padding=k // 2)
        if ctx.needs_input_grad[1]:
            grad_taps = torch.bmm(F.unfold(u, k, padding=k // 2), grad).sum(0)
        return grad_u, grad_taps, grad, None


class _Penalty(NamedTuple):
    """A smooth convex even penalty phi with phi(0) = 0, ~|s| for |s| >> eps and max phi'' = 1 / eps
    (at s = 0): its value, first and second derivatives, each a function (s, eps) -> Tensor, and
    optionally ``d1_``: phi' written into s (no graph), the same operations as ``d1``."""

    value: Callable[[Tensor, float], Tensor]
    d1: Callable[[Tensor, float], Tensor]
    d2: Callable[[Tensor, float], Tensor]
    d1_: Callable[[Tensor, float], Tensor] | None = None


def _pseudo_huber_d1_(s: Tensor, eps: float) -> Tensor:
    t = s * s
    return s.mul_(t.add_(eps * eps).rsqrt_())


def _log_cosh_value(s: Tensor, eps: float) -> Tensor:
    a = (s / eps).abs()
    return eps * (a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0))


def _log_cosh_d2(s: Tensor, eps: float) -> Tensor:
    th = torch.tanh(s / eps)
    return (1.0 - th * th) / eps


PENALTIES: dict[str, _Penalty] = {
    # sqrt(s^2 + eps^2) - eps
    "pseudo_huber": _Penalty(
        value=lambda s, eps: torch.sqrt(s * s + eps * eps) - eps,
        d1=lambda s, eps: s * torch.rsqrt(s * s + eps * eps),
        d2=lambda s, eps: (eps * eps) * torch.rsqrt(s * s + eps * eps).pow(3),
        d1_=_pseudo_huber_d1_,
    ),
    # eps * log(cosh(s / eps)), evaluated without overflow
    "log_cosh": _Penalty(
        value=_log_cosh_value,
        d1=lambda s, eps: torch.tanh(s / eps),
        d2=_log_cosh_d2,
        d1_=lambda s, eps: s.div_(eps).tanh_(),
    ),
}


class ConvexRegularizer(nn.Module):
    """R(z) = s (sum_j w_j sum_pixels phi((K z)_j) + mu / 2 ||z||^2) per sample: convex in z by
    construction (a nonnegative combination of convex functions of affine maps, plus a strongly
    convex quadratic, so the DRIP lower level has a unique minimiser).

    Args:
        latent_channels: C.
        n_filters: J, the output channels of the learned convolution K.
        kernel_size: odd k of K ('same' zero padding).
        penalty: phi, a name in :data:`PENALTIES`: ``'pseudo_huber'`` (sqrt(s^2 + eps^2) - eps) or
            ``'log_cosh'`` (eps log cosh(s / eps)); both smooth, convex, ~|s| for |s| >> eps.
        eps: the smoothing scale of phi (> 0); max phi'' = 1 / eps.
        mu: the strong convexity modulus (> 0, fixed).
        init_scale: the initial w_j (> 0).
        bias: whether K has a learned bias (K z + c stays affine).
        strength: s, a fixed (not learned) factor > 0 on the whole of R. The DRIP estimator sets it
            to ||A||^2: 1/2 ||A E z - b||^2 + ||A||^2 R(z) has the minimiser of the problem with
            the operator normalised (A / ||A||, b / ||A||), so R's learned parameters, their
            initialisation and the solver's conditioning do not depend on the operator's scale
            (||A||^2 is 1 for the blur and the inpainting mask, about 580 for the 18-angle Radon
            transform of 32 x 32 images), and the misfit stays in the data's units.

    Parameters: ``weight`` Tensor[J, C, k, k] (``nn.Conv2d``'s initialisation), ``bias`` Tensor[J]
    (zeros) or None, ``raw_scale`` Tensor[J] with w = softplus(raw_scale) >= 0 (:attr:`scales`).

    ``forward(z)``: Tensor[B, C, H, W] -> Tensor[B], the value per sample (candidate solutions are
    compared by their objective). ``gradient``, ``hvp`` and ``hessian`` are closed forms (phi',
    phi''), much cheaper than autograd's double backward, and differentiable in the parameters.
    """

    def __init__(
        self,
        latent_channels: int = 64,
        n_filters: int = 32,
        kernel_size: int = 3,
        penalty: str = "pseudo_huber",
        eps: float = 0.1,
        mu: float = 1e-3,
        init_scale: float = 0.01,
        bias: bool = True,
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        owner = "ConvexRegularizer"
        self.latent_channels = _positive_int(latent_channels, owner, "latent_channels")
        self.n_filters = _positive_int(n_filters, owner, "n_filters")
        self.kernel_size = _positive_int(kernel_size, owner, "kernel_size", odd=True)
        if penalty not in PENALTIES:
            raise ValueError(f"{owner}: penalty must be one of {sorted(PENALTIES)}, got {penalty!r}")
        self.penalty = penalty
        self.eps = _positive_float(eps, owner, "eps")
        self.mu = _positive_float(mu, owner, "mu")
        self.strength = _positive_float(strength, owner, "strength")
        init_scale = _positive_float(init_scale, owner, "init_scale")
        C, J, k = self.latent_channels, self.n_filters, self.kernel_size
        bound = 1.0 / math.sqrt(C * k * k)
        self.weight = nn.Parameter(torch.empty(J, C, k, k).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(J)) if bias else None
        raw = _softplus_inverse(torch.full((J,), init_scale, dtype=torch.float64))
        self.raw_scale = nn.Parameter(raw.to(torch.get_default_dtype()))

    @property
    def scales(self) -> Tensor:
        """w = softplus(raw_scale): Tensor[J], >= 0."""
        return F.softplus(self.raw_scale)

    @property
    def modulus(self) -> float:
        """s mu, the strong convexity modulus of R."""
        return self.strength * self.mu

    def responses(self, z: Tensor) -> Tensor:
        """K z + bias: Tensor[B, C, H, W] -> Tensor[B, J, H, W]."""
        _check_latent(z, self.latent_channels, "ConvexRegularizer")
        return F.conv2d(z, self.weight, self.bias, padding=self.kernel_size // 2)

    def _phi(self, z: Tensor, derivative: int) -> Tensor:
        """phi, phi' or phi'' (``derivative`` 0, 1, 2) of the responses: Tensor[B, J, H, W]."""
        return PENALTIES[self.penalty][derivative](self.responses(z), self.eps)

    def _K_adjoint(self, s: Tensor) -> Tensor:
        pad = self.kernel_size // 2
        if not s.is_contiguous() and s.is_contiguous(memory_format=torch.channels_last):
            # channels last (the solver's layout): the correlation with the flipped, transposed
            # kernel is the faster form there
            return F.conv2d(s, self.weight.flip(-2, -1).transpose(0, 1), padding=pad)
        return F.conv_transpose2d(s, self.weight, padding=pad)

    def _weights(self, dtype: torch.dtype) -> Tensor:
        """s w: Tensor[J, 1, 1]."""
        w = self.scales.to(dtype)
        return (w if self.strength == 1.0 else w * self.strength)[:, None, None]

    def _weighted(self, s: Tensor) -> Tensor:
        return s * self._weights(s.dtype)

    def forward(self, z: Tensor) -> Tensor:
        """R(z): Tensor[B, C, H, W] -> Tensor[B]."""
        value = self._weighted(self._phi(z, 0)).flatten(1).sum(1)
        return value + 0.5 * self.modulus * z.flatten(1).square().sum(1)

    def gradient(self, z: Tensor) -> Tensor:
        """grad R(z) = s (K^T (w phi'(K z + c)) + mu z): Tensor[B, C, H, W]."""
        penalty = PENALTIES[self.penalty]
        if torch.is_grad_enabled() or penalty.d1_ is None:
            out = self._K_adjoint(self._weighted(self._phi(z, 1)))
            return torch.add(out, z, alpha=self.modulus)
        # no graph: the same operations in place, into the responses' buffer
        s = penalty.d1_(self.responses(z), self.eps).mul_(self._weights(z.dtype))
        return self._K_adjoint(s).add_(z, alpha=self.modulus)

    def hessian(self, z: Tensor) -> Callable[[Tensor], Tensor]:
        """The Hessian at ``z`` as a function v -> s (K^T (w phi''(K z + c) K v) + mu v) (Tensor[B, C,
        H, W] -> same); the curvature s w phi'' is evaluated once here."""
        curvature = self._weighted(self._phi(z, 2))
        pad = self.kernel_size // 2

        def apply(v: Tensor) -> Tensor:
            Kv = F.conv2d(v, self.weight, padding=pad)
            if torch.is_grad_enabled():
                return torch.add(self._K_adjoint(curvature * Kv), v, alpha=self.modulus)
            return self._K_adjoint(Kv.mul_(curvature)).add_(v, alpha=self.modulus)  # in place: no graph

        return apply

    def hvp(self, z: Tensor, v: Tensor) -> Tensor:
        """The Hessian-vector product hess R(z) v: Tensor[B, C, H, W]."""
        return self.hessian(z)(v)

    def lipschitz(self, shape: Sequence[int]) -> Tensor:
        """An upper bound of the Lipschitz constant of grad R on latents of spatial shape (H, W):
        s (max phi'' ||diag(sqrt(w)) K||^2 + mu), 0-dim float64."""
        w = self.scales.detach()
        norm_sq = _conv_norm_sq(self.weight, (int(shape[0]), int(shape[1])), w.sqrt())
        return self.strength * (norm_sq / self.eps + self.mu)

    @torch.no_grad()
    def init_tv_(
        self, weight: float, channel: int = 0, noise: float = 0.01, others: float = 1e-4
    ) -> ConvexRegularizer:
        """Starts R as a smoothed anisotropic total variation of latent channel ``channel``: filters
        0 and 1 the horizontal and vertical forward differences of that channel (zero padding, so
        at the last column and row the 'difference' is -z: the border pixels are also pulled
        toward 0), each weighed so that s w_j = ``weight`` (R = weight sum phi(grad z[channel]) +
        ..., in the data's units whatever the strength s); the other filters ``noise`` times their
        current (random) values with w_j = ``others``; the bias zero. With
        :meth:`Synthesis.select_channel_` on the same channel the lower level starts as
        min_u 1/2 ||A u - b||^2 + weight sum phi(grad u) + s mu/2 ||u||^2 (plus small terms), close
        to a classical TV reconstruction, instead of at random. In place; returns self."""
        owner = "ConvexRegularizer.init_tv_"
        weight = _positive_float(weight, owner, "weight")
        noise = _positive_float(noise, owner, "noise", zero=True)
        others = _positive_float(others, owner, "others")
        channel = _channel(channel, self.latent_channels, owner)
        if self.n_filters < 2 or self.kernel_size < 3:
            raise ValueError(
                f"{owner}: needs n_filters >= 2 and kernel_size >= 3 for the two differences, got "
                f"n_filters={self.n_filters}, kernel_size={self.kernel_size}"
            )
        r = self.kernel_size // 2
        self.weight.mul_(noise)
        self.weight[:2] = 0.0
        self.weight[0, channel, r, r], self.weight[0, channel, r, r + 1] = -1.0, 1.0
        self.weight[1, channel, r, r], self.weight[1, channel, r + 1, r] = -1.0, 1.0
        if self.bias is not None:
            self.bias.zero_()
        w = torch.full_like(self.raw_scale, others)
        w[:2] = weight / self.strength
        self.raw_scale.copy_(_softplus_inverse(w))
        return self

    def strong_convexity(self) -> float:
        """s mu: R - s mu/2 ||z||^2 is convex."""
        return self.modulus

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, n_filters={self.n_filters}, "
            f"kernel_size={self.kernel_size}, penalty={self.penalty!r}, eps={self.eps}, mu={self.mu}"
            + (f", strength={self.strength:.6g}" if self.strength != 1.0 else "")
        )


def _name(obj: object) -> str:
    return type(obj).__name__


def check_convex(
    regularizer: Callable[[Tensor], Tensor],
    z_probe: Tensor,
    *,
    scales: Sequence[float] = (0.1, 1.0, 10.0),
    pairs_per_scale: int = 2,
    seed: int = 0,
    rtol: float | None = None,
) -> None:
    """Checks the regularizer contract on probes around ``z_probe`` Tensor[B, C, H, W]: ``R(z)`` is a
    finite Tensor[B], and midpoint convexity R((z1 + z2) / 2) <= (R(z1) + R(z2)) / 2 holds for random
    pairs z1, z2 = z_probe + scale * N(0, 1) (``pairs_per_scale`` pairs per scale, drawn from a
    generator seeded with ``seed``). A failed check raises ValueError naming the regularizer.

    A passed test does not prove convexity (it is a probe), a failed one disproves it. ``rtol``
    (default ``10 sqrt(C H W) eps(dtype)``) allows for rounding, relative to |R(z1)| + |R(z2)|.
    Runs without building an autograd graph."""
    name = _name(regularizer)
    if not isinstance(z_probe, Tensor) or z_probe.dim() != 4 or z_probe.dtype not in _FLOATS:
        raise ValueError(
            f"check_convex: z_probe must be a float Tensor[B, C, H, W], got {_describe(z_probe)}"
        )
    B = z_probe.shape[0]
    n = z_probe[0].numel()
    if rtol is None:
        rtol = 10.0 * math.sqrt(n) * torch.finfo(z_probe.dtype).eps
    gen = torch.Generator().manual_seed(seed)

    def value(z: Tensor) -> Tensor:
        out = regularizer(z)
        if not isinstance(out, Tensor) or out.shape != (B,):
            raise ValueError(
                f"check_convex: regularizer {name} must return one value per sample, a Tensor[{B}] "
                f"for z Tensor{list(z.shape)}, got {_describe(out)}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"check_convex: regularizer {name} returned non-finite values {out.tolist()}")
        return out

    with torch.no_grad():
        z_probe = z_probe.detach()
        value(z_probe)
        for scale in scales:
            for _ in range(pairs_per_scale):
                noise = torch.randn((2, *z_probe.shape), generator=gen, dtype=torch.float64)
                z1, z2 = (z_probe + scale * e.to(z_probe) for e in noise)
                r1, r2, rm = value(z1), value(z2), value(0.5 * (z1 + z2))
                excess = rm - 0.5 * (r1 + r2)
                allowed = rtol * (r1.abs() + r2.abs() + rm.abs())
                bad = excess > allowed
                if bool(bad.any()):
                    i = int(bad.nonzero()[0, 0])
                    raise ValueError(
                        f"check_convex: regularizer {name} is not convex in z: on a probe pair at scale "
                        f"{scale}, sample {i}, R(midpoint) = {float(rm[i]):.6g} exceeds "
                        f"(R(z1) + R(z2)) / 2 = {float(0.5 * (r1[i] + r2[i])):.6g}; the DRIP lower level "
                        "needs a regularizer convex in z (e.g. dtwin.nn.ConvexRegularizer)"
                    )


# ---------------------------------------------------------------------------------- operator norms

_NORM_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _finite_checks_off:
    """Switches ``check_finite`` (one host synchronisation per call of a dtwin.sim operator) off
    for the duration of a solve and restores it afterwards."""

    def __init__(self, A: object) -> None:
        self.A = A
        self.has = hasattr(A, "check_finite")
        self.own = self.has and "check_finite" in getattr(A, "__dict__", {})
        self.old = getattr(A, "check_finite", None)

    def __enter__(self) -> None:
        if self.has:
            self.A.check_finite = False

    def __exit__(self, *exc: object) -> None:
        if self.own:
            self.A.check_finite = self.old
        elif self.has:
            del self.A.check_finite  # back to the class attribute


def _normal(A: Any, x: Tensor) -> Tensor:
    normal = getattr(A, "normal", None)
    return normal(x) if normal is not None else A.adjoint(A(x))


def operator_norm_sq(
    A: Any,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    *,
    n_iter: int = 100,
    margin: float = 1.05,
) -> float:
    """An estimate of ||A||^2 (the largest eigenvalue of A^T A) from above: ``n_iter`` power
    iterations on ``A.normal`` from a seeded random image, times ``margin``.

    Cached per operator instance (weakly), dtype and device: the operators are fixed (a learned
    operator would have to pass ``op_norm_sq`` to :func:`solve` itself). The Rayleigh quotient
    approaches the norm from below; the 5% margin covers what 100 iterations leave (for
    ``GaussianBlur`` and ``Inpainting`` the estimate with margin is 1.05 x the exact value)."""
    _positive_int(n_iter, "operator_norm_sq", "n_iter")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 1):
        raise ValueError(f"operator_norm_sq: margin must be a finite number >= 1, got {margin!r}")
    key = (dtype, torch.device(device), n_iter, float(margin))
    try:
        hit = _NORM_CACHE.get(A, {}).get(key)
    except TypeError:  # not weakly referenceable
        hit = None
    if hit is not None:
        return hit
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, *A.in_shape), generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    lam = 0.0
    with torch.no_grad(), _finite_checks_off(A):
        x = x / x.norm()
        for _ in range(n_iter):
            y = _normal(A, x)
            norm = y.norm()
            lam_t = (x * y).sum()
            x = y / norm.clamp_min(torch.finfo(dtype).tiny)
        lam = float(lam_t)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"operator_norm_sq: power iteration on the operator {_name(A)} gave {lam}")
    value = lam * margin
    try:
        _NORM_CACHE.setdefault(A, {})[key] = value
    except TypeError:
        pass
    return value


# --------------------------------------------------------------------------------------- the solve


class SolveResult(NamedTuple):
    """What :func:`solve` and :func:`solve_unrolled` return.

    z: Tensor[B, C, H, W], the solution (differentiable: implicitly for ``solve``, through the
        iterations for ``solve_unrolled``).
    iterations: Tensor[B] int64, the gradient steps each sample took.
    converged: Tensor[B] bool, the sample stopped (step tolerance or discrepancy) before
        ``max_iter`` with a finite solution.
    discrepancy: Tensor[B] bool, the sample stopped by the discrepancy principle.
    misfit: Tensor[B], ||A E z - b|| at the returned z (detached).
    """

    z: Tensor
    iterations: Tensor
    converged: Tensor
    discrepancy: Tensor
    misfit: Tensor


@dataclass
class _Problem:
    """A checked lower-level problem: the maps and the per-sample step and momentum."""

    A: Any
    E: Any
    R: Any
    latent: tuple[int, int, int]  # (C, H, W)
    step: Tensor  # Tensor[B], b's dtype
    momentum: Tensor | None  # Tensor[B] (strongly convex: constant), or None (FISTA schedule)
    # E and R are exactly Synthesis and ConvexRegularizer: the latents are kept channels last
    # (faster convolutions on CPUs), E^T adds into grad R (in place without a graph)
    builtin: bool = False

    def latent_view(self, rows: Tensor) -> Tensor:
        """The solver's rows Tensor[B, N] (contiguous) as latents Tensor[B, C, H, W]: a view."""
        C, H, W = self.latent
        if self.builtin:
            return rows.view(-1, H, W, C).permute(0, 3, 1, 2)
        return rows.view(-1, C, H, W)

    def rows(self, x: Tensor) -> Tensor:
        """Latents Tensor[B, C, H, W] as the solver's rows Tensor[B, N] (a view where x has the
        solver's layout, else a copy)."""
        if self.builtin:
            x = x.permute(0, 2, 3, 1)
        return x.reshape(x.shape[0], -1)

    def residual(self, z: Tensor, b: Tensor) -> Tensor:
        """A E z - b: Tensor[B, *out_shape]."""
        return self.A(self.E(z)) - b

    def _add_data(self, u: Tensor, reg: Tensor) -> Tensor:
        """E^T u + reg (u an image: A^T r, or A^T A E v); the built-in E adds into the
        regularizer's channels-last result (in place when there is no graph)."""
        if self.builtin:
            return self.E._adjoint_add(u, reg)
        return self.E.adjoint(u) + reg

    def reg_gradient(self, z: Tensor, create_graph: bool) -> Tensor:
        gradient = getattr(self.R, "gradient", None)
        if gradient is not None:
            return gradient(z)
        with torch.enable_grad():
            leaf = z if (create_graph and z.requires_grad) else z.detach().requires_grad_()
            (g,) = torch.autograd.grad(self.R(leaf).sum(), leaf, create_graph=create_graph)
        return g

    def gradient(self, z: Tensor, b: Tensor, create_graph: bool = False) -> Tensor:
        """grad_z f(z) = E^T A^T (A E z - b) + grad R(z)."""
        return self.gradient_at(z, self.residual(z, b), create_graph)

    def gradient_at(self, z: Tensor, r: Tensor, create_graph: bool = False) -> Tensor:
        """grad_z f(z) from the residual r = A E z - b."""
        return self._add_data(self.A.adjoint(r), self.reg_gradient(z, create_graph))

    def hessian(self, z: Tensor) -> Callable[[Tensor], Tensor]:
        """v -> (E^T A^T A E + hess R(z)) v."""
        R = self.R
        if hasattr(R, "hessian"):
            reg = R.hessian(z)
        elif hasattr(R, "hvp"):

            def reg(v: Tensor) -> Tensor:
                return R.hvp(z, v)

        else:
            with torch.enable_grad():
                leaf = z.detach().requires_grad_()
                (g,) = torch.autograd.grad(R(leaf).sum(), leaf, create_graph=True)

            def reg(v: Tensor) -> Tensor:
                with torch.enable_grad():
                    return torch.autograd.grad(g, leaf, v, retain_graph=True)[0]

        def apply(v: Tensor) -> Tensor:
            return self._add_data(_normal(self.A, self.E(v)), reg(v))

        return apply

    def momentum_at(self, t: float, B: int, like: Tensor) -> tuple[Tensor, float]:
        """(the Tensor[B] momentum of the iteration whose FISTA parameter is t, the next t)."""
        if self.momentum is not None:
            return self.momentum, t
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        return torch.full((B,), (t - 1.0) / t_next, dtype=like.dtype, device=like.device), t_next


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """The dot products of the rows of a and b Tensor[B, N]: Tensor[B] (one pass, no temporary)."""
    return torch.linalg.vecdot(a, b)


def _torch_step(
    z: Tensor, y: Tensor, g: Tensor, step: Tensor, momentum: Tensor, active: Tensor, tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """drip_step's update in plain differentiable torch (the stopping test on detached values)."""
    on = active[:, None]
    z_new = torch.where(on, y - step[:, None] * g, z)
    d = z_new - z
    y_new = torch.where(on, z_new + momentum[:, None] * d, z)
    with torch.no_grad():
        d64, z64 = d.detach().double(), z_new.detach().double()
        delta_sq = torch.where(active, (d64 * d64).sum(1), 0.0)
        scale = (z64 * z64).sum(1).clamp_min(torch.finfo(z.dtype).tiny)
        active_new = active & (delta_sq > (tol * tol) * scale)
    return z_new, y_new, active_new


def _iterate(
    p: _Problem,
    b: Tensor,
    z0: Tensor,
    target_sq: Tensor | None,
    tol: float,
    max_iter: int,
    check_every: int,
    fused: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nesterov iterations: (z Tensor[B, C, H, W], iterations, still active, discrepancy stop).

    ``fused``: the vector algebra by dtwin.ops.drip_step (call under no_grad), else by
    :func:`_torch_step` (differentiable). No host synchronisation except the all-stopped check
    every ``check_every`` iterations."""
    B = b.shape[0]
    z = p.rows(z0)
    y = z
    active = torch.ones(B, dtype=torch.bool, device=b.device)
    disc = torch.zeros_like(active)
    iters = torch.zeros(B, dtype=torch.int64, device=b.device)
    t = 1.0
    for k in range(max_iter):
        Y = p.latent_view(y)
        r = p.residual(Y, b)
        if target_sq is not None:  # discrepancy principle, tested at the extrapolated point
            hit = active & (r.detach().flatten(1).square().sum(1) <= target_sq)
            z = torch.where(hit[:, None], y, z)
            disc = disc | hit
            active = active & ~hit
        g = p.rows(p.gradient_at(Y, r, create_graph=not fused))
        momentum, t = p.momentum_at(t, B, b)
        if fused:
            z, y, active_new, _, _ = drip_step(z, y, g, p.step, momentum, active, tol)
        else:
            z, y, active_new = _torch_step(z, y, g, p.step, momentum, active, tol)
        iters = iters + active
        active = active_new
        if (k + 1) % check_every == 0 and k + 1 < max_iter and not bool(active.any()):
            break
    return p.latent_view(z).contiguous(), iters, active, disc


def _cg(
    hessian: Callable[[Tensor], Tensor],
    rhs: Tensor,
    tol: float,
    max_iter: int,
    check_every: int,
    overwrite_rhs: bool = False,
) -> Tensor:
    """Batched conjugate gradients for H x = rhs, rhs Tensor[B, N] (H symmetric positive definite,
    block diagonal over the rows): per-sample coefficients and stopping at ||r|| <= tol ||rhs||, no
    host synchronisation except the all-stopped check every ``check_every`` iterations. The
    vectors are updated in place (``hessian`` must not keep its argument); ``overwrite_rhs``: rhs
    itself becomes the residual (one latent-sized buffer less)."""
    x = torch.zeros_like(rhs)
    r = rhs if overwrite_rhs else rhs.clone()
    p = r.clone()
    rs = _row_dot(r, r)
    threshold = (tol * tol) * rs
    active = rs > 0
    for k in range(max_iter):
        Hp = hessian(p)
        pHp = _row_dot(p, Hp)
        alpha = torch.where(active, rs / torch.where(active, pHp, 1.0), 0.0)[:, None]
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, Hp, value=-1.0)
        rs_new = _row_dot(r, r)
        active = active & (rs_new > threshold)
        beta = torch.where(active, rs_new / torch.where(rs > 0, rs, 1.0), 0.0)[:, None]
        torch.addcmul(r, beta, p, out=p)  # p = r + beta p, elementwise in place
        rs = rs_new
        if (k + 1) % check_every == 0 and not bool(active.any()):
            break
    return x


class _ImplicitSolve(torch.autograd.Function):
    """z* with the implicit backward: H w = dL/dz* by CG, then dL/dtheta = -d/dtheta <w, grad_z f>."""

    @staticmethod
    def forward(ctx, p, b, z0, target_sq, cfg, *params):
        z, iters, active, disc = _iterate(
            p, b, z0, target_sq, cfg["tol"], cfg["max_iter"], cfg["check_every"], True
        )
        ctx.p, ctx.cfg, ctx.params = p, cfg, params
        ctx.save_for_backward(z, b, *params)
        ctx.mark_non_differentiable(iters, active, disc)
        return z, iters, active, disc

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z, *_):
        z, b, *_saved = ctx.saved_tensors  # (saved to detect in-place changes of the parameters)
        z = z.detach()  # the saved output would lead autograd back into this node
        p, cfg = ctx.p, ctx.cfg
        need_b = ctx.needs_input_grad[1]
        needs = ctx.needs_input_grad[5:]
        if p.builtin:
            z = z.contiguous(memory_format=torch.channels_last)  # the solver's layout
        with _finite_checks_off(p.A):
            hessian = p.hessian(z)

            def hessian_rows(v: Tensor) -> Tensor:
                return p.rows(hessian(p.latent_view(v)))

            rhs = p.rows(grad_z)
            copied = rhs.untyped_storage().data_ptr() != grad_z.untyped_storage().data_ptr()
            args = (cfg["cg_tol"], cfg["cg_max_iter"], cfg["check_every"])
            w = p.latent_view(_cg(hessian_rows, rhs, *args, overwrite_rhs=copied))
            del rhs
            wrt = [q for q, need in zip(ctx.params, needs, strict=True) if need]
            with torch.enable_grad():
                b_leaf = b.detach().requires_grad_(need_b)
                if need_b:
                    wrt.insert(0, b_leaf)
                G = p.gradient(z, b_leaf, create_graph=True)
                grads = list(torch.autograd.grad(G, wrt, grad_outputs=-w, allow_unused=True)) if wrt else []
        grad_b = grads.pop(0) if need_b else None
        out = [None] * len(needs)
        for i, need in enumerate(needs):
            if need:
                out[i] = grads.pop(0)
        return (None, grad_b, None, None, None, *out)


def _setup(
    A: Any,
    E: Any,
    R: Any,
    b: object,
    sigma: object,
    tau: object,
    tol: object,
    max_iter: object,
    z0: object,
    check_every: object,
    op_norm_sq: object,
    check_convexity: bool,
    owner: str,
) -> tuple[_Problem, Tensor, Tensor, Tensor | None]:
    """Checks everything once (host synchronisations allowed here) and builds the problem."""
    for name, obj, attrs in (
        ("A", A, ("forward", "adjoint", "in_shape", "out_shape")),
        ("E", E, ("forward", "adjoint", "latent_channels", "norm_sq")),
        ("R", R, ("lipschitz",)),
    ):
        missing = [a for a in attrs if not hasattr(obj, a)]
        if missing or not callable(obj):
            raise ValueError(
                f"{owner}: {name} ({_name(obj)}) does not satisfy the contract: it must be callable and "
                f"have {', '.join(attrs)}; missing {', '.join(missing) or '__call__'} (see dtwin.nn.drip)"
            )
    in_shape, out_shape = tuple(A.in_shape), tuple(A.out_shape)
    if len(in_shape) != 3 or in_shape[0] != 1:
        raise ValueError(f"{owner}: A.in_shape must be (1, H, W) (one-channel images), got {in_shape}")
    H, W = in_shape[1:]
    C = int(E.latent_channels)
    r_channels = getattr(R, "latent_channels", None)
    if r_channels is not None and int(r_channels) != C:
        raise ValueError(
            f"{owner}: R has latent_channels={r_channels} but E has latent_channels={C}; they must match"
        )
    if not isinstance(b, Tensor) or b.dim() != 1 + len(out_shape) or tuple(b.shape[1:]) != out_shape:
        raise ValueError(
            f"{owner}: b must be the data Tensor[B, {', '.join(map(str, out_shape))}] of A "
            f"({_name(A)}, out_shape {out_shape}), got {_describe(b)}"
        )
    if b.shape[0] < 1 or b.dtype not in _FLOATS:
        raise ValueError(f"{owner}: b must be a float32/float64 Tensor with B >= 1, got {_describe(b)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{owner}: b contains non-finite values (NaN or inf)")
    B, dtype, device = b.shape[0], b.dtype, b.device
    for name, module in (("E", E), ("R", R)):
        if isinstance(module, nn.Module):
            for q in module.parameters():
                if q.dtype != dtype or q.device != device:
                    raise ValueError(
                        f"{owner}: {name} has parameters of dtype {q.dtype} on {q.device} but b is {dtype} "
                        f"on {device}; move them with {name}.to(b)"
                    )
    if z0 is None:
        z0 = torch.zeros(B, C, H, W, dtype=dtype, device=device)
    elif not isinstance(z0, Tensor) or tuple(z0.shape) != (B, C, H, W) or z0.dtype != dtype:
        raise ValueError(
            f"{owner}: z0 must be a latent Tensor[{B}, {C}, {H}, {W}] of b's dtype {dtype}, "
            f"got {_describe(z0)}"
        )
    elif not bool(torch.isfinite(z0).all()):
        raise ValueError(f"{owner}: z0 contains non-finite values (NaN or inf)")
    z0 = z0.detach().to(device)
    with torch.no_grad():
        u0 = E(z0[:1])
    if not isinstance(u0, Tensor) or tuple(u0.shape) != (1, *in_shape):
        raise ValueError(
            f"{owner}: E ({_name(E)}) must map latents Tensor[B, {C}, {H}, {W}] to images "
            f"Tensor[B, 1, {H}, {W}] (A's in_shape {in_shape}), got {_describe(u0)}"
        )
    ok = isinstance(tol, (int, float)) and not isinstance(tol, bool) and math.isfinite(tol) and tol >= 0
    if not ok:
        raise ValueError(f"{owner}: tol must be a finite number >= 0 (relative step tolerance), got {tol!r}")
    for name, value in (("max_iter", max_iter), ("check_every", check_every)):
        _positive_int(value, owner, name)
    tau = _positive_float(tau, owner, "tau")
    target_sq = None
    if sigma is not None:
        if isinstance(sigma, Tensor):
            if sigma.dim() > 1 or sigma.numel() not in (1, B):
                raise ValueError(
                    f"{owner}: sigma must be a number or a Tensor[{B}] (per-sample noise std), "
                    f"got {_describe(sigma)}"
                )
            s = sigma.detach().to(device=device, dtype=dtype).reshape(-1).expand(B)
        elif isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            s = torch.full((B,), float(sigma), dtype=dtype, device=device)
        else:
            raise ValueError(
                f"{owner}: sigma must be None, a number or a Tensor[{B}], got {_describe(sigma)}"
            )
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ValueError(f"{owner}: sigma (the noise level) must be finite and >= 0, got {s.tolist()}")
        M = math.prod(out_shape)
        target_sq = (tau * s) ** 2 * M
    if check_convexity and not isinstance(R, ConvexRegularizer):
        check_convex(R, z0)
    with torch.no_grad(), _finite_checks_off(A):
        if op_norm_sq is None:
            a_sq = operator_norm_sq(A, dtype, device)
        else:
            a_sq = _positive_float(op_norm_sq, owner, "op_norm_sq")
        e_sq = torch.as_tensor(E.norm_sq((H, W)), dtype=torch.float64, device=device)
        L = a_sq * e_sq + torch.as_tensor(R.lipschitz((H, W)), dtype=torch.float64, device=device)
        L = L.reshape(-1).expand(B)
        m = float(R.strong_convexity()) if hasattr(R, "strong_convexity") else 0.0
        if not bool(torch.isfinite(L).all()) or not bool((L > 0).all()):
            raise ValueError(f"{owner}: the Lipschitz bound of grad f is not finite and > 0: {L.tolist()}")
        if m < 0 or not math.isfinite(m):
            raise ValueError(f"{owner}: R.strong_convexity() must be finite and >= 0, got {m}")
        step = (1.0 / L).to(dtype)
        momentum = None
        if m > 0:
            q = torch.sqrt(torch.clamp(m / L, max=1.0))
            momentum = ((1.0 - q) / (1.0 + q)).to(dtype)
    builtin = type(E) is Synthesis and type(R) is ConvexRegularizer
    p = _Problem(A=A, E=E, R=R, latent=(C, H, W), step=step, momentum=momentum, builtin=builtin)
    return p, b, z0, target_sq


def _params(*modules: object) -> list[Tensor]:
    out: list[Tensor] = []
    seen: set[int] = set()
    for m in modules:
        if isinstance(m, nn.Module):
            for q in m.parameters():
                if q.requires_grad and id(q) not in seen:
                    seen.add(id(q))
                    out.append(q)
    return out


def _finish(p: _Problem, b: Tensor, z: Tensor, iters: Tensor, active: Tensor, disc: Tensor) -> SolveResult:
    with torch.no_grad():
        misfit = p.residual(z.detach(), b.detach()).flatten(1).square().sum(1).sqrt()
        converged = ~active & torch.isfinite(z.detach()).flatten(1).all(1)
    return SolveResult(z, iters, converged, disc, misfit)


def solve(
    A: Any,
    E: Any,
    R: Any,
    b: Tensor,
    *,
    sigma: float | Tensor | None = None,
    tau: float = 1.0,
    tol: float = 1e-6,
    max_iter: int = 500,
    z0: Tensor | None = None,
    check_every: int = 20,
    cg_tol: float = 1e-4,
    cg_max_iter: int | None = None,
    op_norm_sq: float | None = None,
    check_convexity: bool = True,
) -> SolveResult:
    """The DRIP lower level: z* = argmin_z 1/2 ||A E z - b||^2 + R(z) per sample, with implicit
    gradients.

    Nesterov's accelerated gradient method from ``z0`` (zeros by default), step 1/L per sample with
    L = ||A||^2 ||E||^2 + Lip(grad R) (upper bounds: :func:`operator_norm_sq`, ``E.norm_sq``,
    ``R.lipschitz``), momentum (1 - sqrt(mu / L)) / (1 + sqrt(mu / L)) for a mu-strongly convex R
    (else the FISTA schedule), every iteration's vector algebra by :func:`dtwin.ops.drip_step`.
    A sample stops when its relative step ||z_k+1 - z_k|| / ||z_k+1|| falls below ``tol`` or, with
    ``sigma`` given, by the discrepancy principle: as soon as ||A E y - b|| <= tau * sigma * sqrt(M)
    at the extrapolated point y (then z = y, the point whose misfit was measured; M = the
    measurements per sample; the DRIP authors use tau of about 1.2). Stopped samples are held
    while the others go on; the loop looks at the host every ``check_every`` iterations only.

    Backward (when grad is enabled and b or a parameter of A, E or R requires grad): implicit
    differentiation of grad_z f(z*) = 0. Batched conjugate gradients solve
    (E^T A^T A E + hess R(z*)) w = dL/dz* per sample (to the relative residual ``cg_tol``, enough
    for training, in at most ``cg_max_iter`` = ``max_iter`` iterations; lower ``cg_tol`` and raise
    ``cg_max_iter`` for exact gradients), then one autograd call of <-w, grad_z f(z*; theta, b)>
    gives dL/db and dL/dtheta. Memory: the solution and b are kept, whatever the number of
    iterations (plus a few latent-sized CG vectors during the backward). The gradient is exact at
    the minimiser; a sample stopped early (discrepancy principle, a loose ``tol`` or ``max_iter``)
    gets the gradient the minimiser would have at its iterate, an approximation (the dependence on
    sigma, tau and z0 is not differentiated).

    Args:
        A: the forward operator (see the module notes for the contract).
        E: the synthesis map (e.g. :class:`Synthesis`).
        R: the convex regularizer (e.g. :class:`ConvexRegularizer`; another is checked with
            :func:`check_convex` unless ``check_convexity=False``).
        b: data Tensor[B, *A.out_shape], float32 or float64, finite; E and R in its dtype and device.
        sigma: per-sample noise std (a number or Tensor[B], >= 0) for the discrepancy principle.
        tau: the discrepancy factor (> 0).
        tol: relative step tolerance (>= 0; 0 never stops on the step).
        max_iter: the most iterations.
        z0: the initial latent Tensor[B, C, H, W] (its gradient is not computed).
        check_every: iterations between the looks at the host.
        cg_tol, cg_max_iter: the backward's CG.
        op_norm_sq: ||A||^2 (or an upper bound) to use instead of the cached power iteration.

    Returns: :class:`SolveResult` (z Tensor[B, C, H, W], iterations, converged, discrepancy, misfit).
    """
    p, b, z0, target_sq = _setup(
        A, E, R, b, sigma, tau, tol, max_iter, z0, check_every, op_norm_sq, check_convexity, "solve"
    )
    cg_max_iter = max_iter if cg_max_iter is None else _positive_int(cg_max_iter, "solve", "cg_max_iter")
    cg_tol = _positive_float(cg_tol, "solve", "cg_tol", zero=True)
    cfg = {"tol": float(tol), "max_iter": max_iter, "check_every": check_every}
    cfg.update(cg_tol=cg_tol, cg_max_iter=cg_max_iter)
    params = _params(A, E, R)
    with _finite_checks_off(A):
        if torch.is_grad_enabled() and (b.requires_grad or params):
            z, iters, active, disc = _ImplicitSolve.apply(p, b, z0, target_sq, cfg, *params)
        else:
            with torch.no_grad():
                z, iters, active, disc = _iterate(
                    p, b, z0, target_sq, float(tol), max_iter, check_every, True
                )
        return _finish(p, b, z, iters, active, disc)


def solve_unrolled(
    A: Any,
    E: Any,
    R: Any,
    b: Tensor,
    *,
    sigma: float | Tensor | None = None,
    tau: float = 1.0,
    tol: float = 1e-6,
    max_iter: int = 500,
    z0: Tensor | None = None,
    check_every: int = 20,
    op_norm_sq: float | None = None,
    check_convexity: bool = True,
) -> SolveResult:
    """The reference for :func:`solve`: the same iterations (step sizes, momentum, stopping, hence
    the same iteration counts) as a plain torch loop, differentiated by autograd through every
    iteration (memory grows with the number of iterations). Same arguments and result."""
    p, b, z0, target_sq = _setup(
        A, E, R, b, sigma, tau, tol, max_iter, z0, check_every, op_norm_sq, check_convexity, "solve_unrolled"
    )
    with _finite_checks_off(A):
        z, iters, active, disc = _iterate(p, b, z0, target_sq, float(tol), max_iter, check_every, False)
        return _finish(p, b, z, iters, active, disc)


def objective(A: Any, E: Any, R: Callable[[Tensor], Tensor], b: Tensor, z: Tensor) -> Tensor:
    """f(z) = 1/2 ||A E z - b||^2 + R(z) per sample: Tensor[B] (differentiable)."""
    return 0.5 * (A(E(z)) - b).flatten(1).square().sum(1) + R(z)
