"""Imaging twins: the forward operators A of the DRIP inverse problems b = A u + noise
(Eliasof, Haber, Treister, arXiv 2304.00015): Gaussian deblurring, inpainting and limited-angle
tomography.

Every operator is a linear map between batches of images and batches of data:

    forward(x) = A x,   adjoint(y) = A^T y,   normal(x) = A^T A x,

with images ``x`` Tensor[B, 1, H, W] (one channel, always present; the per-sample ``in_shape`` is
(1, H, W)) and data ``y`` Tensor[B, *out_shape]. float32 and float64 work, the result has the dtype
and device of the input, and autograd flows through all three maps (the adjoint is the exact
transpose, so the gradient of ``forward`` is ``adjoint`` and vice versa). The operators are built in
float64 and cast to each input's dtype and device on use: keep them in float64 (``op.to(device)``
moves them without lowering their precision; ``op.float()`` would).

Coordinates: pixels are squares of side ``pixel_size`` (tomography only; 1 by default), the image
centred at the origin, x to the right along columns and y upwards (towards row 0).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "OPERATORS",
    "GaussianBlur",
    "Inpainting",
    "LinearOperator",
    "Tomography",
    "add_noise",
    "make_operator",
    "radon_matrix",
]

_DTYPES = (torch.float32, torch.float64)


def _shape2d(shape: object, owner: str) -> tuple[int, int]:
    """(H, W) from ``shape``, checked: two positive integers."""
    ok = isinstance(shape, Sequence) and len(shape) == 2
    ok = ok and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
    if not ok:
        raise ValueError(f"{owner}: shape must be (H, W), two positive integers, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


class LinearOperator(nn.Module):
    """A linear forward operator A from images Tensor[B, *in_shape] (in_shape = (1, H, W)) to data
    Tensor[B, *out_shape].

    Subclasses implement ``_forward`` and ``_adjoint`` (and may override ``_normal``) on checked
    input; the public ``forward`` / ``adjoint`` / ``normal`` check shapes, dtype and finiteness
    first. Set ``check_finite = False`` on an instance to skip the finiteness check (one device
    synchronisation per call) inside an iterative solver whose input is known to be finite.
    """

    check_finite: bool = True

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = _shape2d(shape, type(self).__name__)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Per-sample image shape (1, H, W)."""
        return (1, *self.shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Per-sample data shape."""
        raise NotImplementedError

    def _check(self, t: object, shape: tuple[int, ...], name: str, what: str) -> Tensor:
        owner = type(self).__name__
        expected = f"Tensor[B, {', '.join(str(n) for n in shape)}] ({what} of shape {_fmt(shape)})"
        if not isinstance(t, Tensor):
            raise ValueError(f"{owner}: {name} must be {expected}, got {type(t).__name__}")
        if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != shape or t.shape[0] < 1:
            raise ValueError(f"{owner}: {name} must be {expected}, got {_fmt(t.shape)}")
        if t.dtype not in _DTYPES:
            raise ValueError(f"{owner}: {name} must be float32 or float64, got {t.dtype}")
        if self.check_finite and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{owner}: {name} contains non-finite values (NaN or inf)")
        return t

    def check_input(self, x: Tensor) -> Tensor:
        """``x`` checked to be a finite float32/float64 Tensor[B, 1, H, W]; ValueError otherwise."""
        return self._check(x, self.in_shape, "x", "a batch of images")

    def check_output(self, y: Tensor) -> Tensor:
        """``y`` checked to be a finite float32/float64 Tensor[B, *out_shape]; ValueError otherwise."""
        return self._check(y, self.out_shape, "y", "a batch of data")

    def forward(self, x: Tensor) -> Tensor:
        """A x: images Tensor[B, 1, H, W] -> data Tensor[B, *out_shape]."""
        return self._forward(self.check_input(x))

    def adjoint(self, y: Tensor) -> Tensor:
        """A^T y: data Tensor[B, *out_shape] -> images Tensor[B, 1, H, W]."""
        return self._adjoint(self.check_output(y))

    def normal(self, x: Tensor) -> Tensor:
        """A^T A x: images Tensor[B, 1, H, W] -> images Tensor[B, 1, H, W]."""
        return self._normal(self.check_input(x))

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def _normal(self, x: Tensor) -> Tensor:
        return self._adjoint(self._forward(x))


# --------------------------------------------------------------------------------------------- blur


def _periodic_gaussian(n: int, sigma: float) -> Tensor:
    """Tensor[n] float64: the Gaussian of std ``sigma`` (pixels) wrapped onto a periodic grid of n
    points (all periodic images within 12 sigma summed, i.e. to float64 precision), normalised to
    sum 1; index 0 is the origin."""
    reach = math.ceil(12.0 * sigma / n) + 1
    d = (
        torch.arange(n, dtype=torch.float64)
        + n * torch.arange(-reach, reach + 1, dtype=torch.float64)[:, None]
    )
    g = torch.exp(-0.5 * (d / sigma) ** 2).sum(0)
    return g / g.sum()


class GaussianBlur(LinearOperator):
    """Periodic convolution with a normalised Gaussian point-spread function of std ``sigma``
    pixels (the DRIP deblurring twin uses sigma = 2), by FFT (rfft2).

    The kernel is the Gaussian wrapped onto the periodic H x W grid (separable, not truncated),
    so it sums to 1 and blurs a constant image to the same constant. It is even, so its transfer
    function is real and the operator is symmetric: ``adjoint`` = ``forward`` (multiplication by the
    conjugate transfer function, which is the transfer function itself).

    x: Tensor[B, 1, H, W] -> y: Tensor[B, 1, H, W].
    """

    def __init__(self, shape: Sequence[int], sigma: float = 2.0) -> None:
        super().__init__(shape)
        ok = isinstance(sigma, (int, float)) and not isinstance(sigma, bool)
        if not ok or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"GaussianBlur: sigma must be a finite number > 0 (pixels), got {sigma!r}")
        self.sigma = float(sigma)
        H, W = self.shape
        gh = torch.fft.fft(_periodic_gaussian(H, self.sigma)).real
        gw = torch.fft.rfft(_periodic_gaussian(W, self.sigma)).real
        # Tensor[H, W // 2 + 1] float64, real (the kernel is even); derived, so not in the state_dict
        self.register_buffer("transfer", gh[:, None] * gw[None, :], persistent=False)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (1, *self.shape)

    @property
    def kernel(self) -> Tensor:
        """The point-spread function Tensor[H, W] float64 on the periodic grid, origin at [0, 0]."""
        H, W = self.shape
        return _periodic_gaussian(H, self.sigma)[:, None] * _periodic_gaussian(W, self.sigma)[None, :]

    def _multiply(self, x: Tensor, transfer: Tensor) -> Tensor:
        X = torch.fft.rfft2(x)
        return torch.fft.irfft2(X * transfer.to(device=x.device, dtype=x.dtype), s=self.shape)

    def _forward(self, x: Tensor) -> Tensor:
        return self._multiply(x, self.transfer)

    def _adjoint(self, y: Tensor) -> Tensor:
        return self._multiply(y, self.transfer)

    def _normal(self, x: Tensor) -> Tensor:
        return self._multiply(x, self.transfer.square())

    def extra_repr(self) -> str:
        return f"shape={self.shape}, sigma={self.sigma}"


# --------------------------------------------------------------------------------------- inpainting


class Inpainting(LinearOperator):
    """Observation of a fixed subset of the pixels (the DRIP inpainting twin observes about 11%).

    The mask Tensor[H, W] bool is either given (``mask``; then ``observed`` and ``seed`` are not
    used) or drawn: exactly round(observed * H * W) pixels (at least 1) chosen uniformly at random
    by a generator seeded with ``seed``. It is a buffer: it follows ``.to(device)`` and is saved in
    the state_dict (load_state_dict restores it). Treat it as read-only.

    x: Tensor[B, 1, H, W] -> y: Tensor[B, M], the values of the M observed pixels in row-major
    order; the adjoint scatters them back into a zero image (A A^T = I, A^T A = masking).
    """

    mask: Tensor

    def __init__(
        self,
        shape: Sequence[int] | None = None,
        observed: float = 0.11,
        seed: int = 0,
        mask: Tensor | None = None,
    ) -> None:
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dim() != 2:
                got = _fmt(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(f"Inpainting: mask must be Tensor[H, W] (bool or 0/1), got {got}")
            if mask.dtype != torch.bool:
                if not bool(((mask == 0) | (mask == 1)).all()):
                    raise ValueError("Inpainting: mask must hold only 0/1 (or bool) values")
                mask = mask != 0
            if shape is not None and _shape2d(shape, "Inpainting") != tuple(mask.shape):
                raise ValueError(
                    f"Inpainting: shape {tuple(shape)} does not match the mask's shape {tuple(mask.shape)}"
                )
            if not bool(mask.any()):
                raise ValueError("Inpainting: mask observes no pixel; it needs at least one True value")
            super().__init__(tuple(mask.shape))
            mask = mask.detach().clone()
        else:
            if shape is None:
                raise ValueError("Inpainting: give shape=(H, W) (or a mask)")
            super().__init__(shape)
            ok = isinstance(observed, (int, float)) and not isinstance(observed, bool)
            if not ok or not 0.0 < observed <= 1.0:
                raise ValueError(
                    "Inpainting: observed must be the observed fraction of pixels in (0, 1], "
                    f"got {observed!r}"
                )
            H, W = self.shape
            n = max(1, round(observed * H * W))
            chosen = torch.randperm(H * W, generator=torch.Generator().manual_seed(int(seed)))[:n]
            mask = torch.zeros(H * W, dtype=torch.bool)
            mask[chosen] = True
            mask = mask.view(H, W)
        self.register_buffer("mask", mask)

    @property
    def n_observed(self) -> int:
        """M, the number of observed pixels."""
        return int(self.mask.sum())

    @property
    def fraction(self) -> float:
        """The observed fraction of pixels M / (H W)."""
        return self.n_observed / self.mask.numel()

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.n_observed,)

    def _flat_mask(self, like: Tensor) -> Tensor:
        return self.mask.to(like.device).reshape(-1)

    def _forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)[:, self._flat_mask(x)]

    def _adjoint(self, y: Tensor) -> Tensor:
        out = y.new_zeros(y.shape[0], self.mask.numel())
        out[:, self._flat_mask(y)] = y
        return out.view(y.shape[0], *self.in_shape)

    def _normal(self, x: Tensor) -> Tensor:
        return x * self.mask.to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, observed={self.n_observed} pixels ({100 * self.fraction:.1f}%)"


# --------------------------------------------------------------------------------------- tomography


@contextlib.contextmanager
def _quiet_csr() -> Iterator[None]:
    """Silences torch's one-time 'sparse CSR tensor support is in beta' warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        yield


class _SparseMatmul(torch.autograd.Function):
    """matrix @ x for a fixed sparse ``matrix`` [R, N] and dense x [N, B], whose backward uses the
    precomputed ``transpose`` [N, R] (torch would transpose the sparse matrix at every backward).
    The backward is the same function, so higher derivatives work too."""

    @staticmethod
    def forward(matrix: Tensor, transpose: Tensor, x: Tensor) -> Tensor:
        return matrix @ x

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.matrix, ctx.transpose = inputs[0], inputs[1]

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, _SparseMatmul.apply(ctx.transpose, ctx.matrix, grad.contiguous())


def _footprint_cdf(u: Tensor, half: Tensor, flat: Tensor, small: Tensor, large: Tensor) -> Tensor:
    """Fraction of a unit pixel square lying at detector coordinate < u from its centre.

    The pixel's projection onto the detector (its chord length) is a trapezoid: total width
    |cos| + |sin| = 2 ``half``, plateau width ||cos| - |sin|| = 2 ``flat``, ramps of width
    ``small`` = min(|cos|, |sin|), height 1 / ``large``, area 1. Its integral, piecewise quadratic,
    without cancellation when ``small`` -> 0 (angles near 0 and 90 degrees)."""
    mm2 = 2.0 * small * large
    rise = (u + half).square() / mm2
    middle = small / (2.0 * large) + (u + flat) / large
    fall = 1.0 - (half - u).square() / mm2
    out = torch.where(u < half, fall, torch.ones_like(u))
    out = torch.where(u < flat, middle, out)
    out = torch.where(u <= -flat, rise, out)
    return torch.where(u <= -half, torch.zeros_like(u), out)


def radon_matrix(
    shape: Sequence[int], angles_deg: Tensor, n_detectors: int, pixel_size: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """COO entries (rows, cols, values) of the strip-integral Radon matrix [A * D, H * W].

    Row a * D + k is detector bin k (width ``pixel_size``, bins centred on the origin: centre
    (k - (D - 1) / 2) * pixel_size) at angle ``angles_deg[a]`` (degrees, counter-clockwise from the
    x axis); column i * W + j is pixel (i, j). The detector coordinate of a point is
    s = x cos(theta) + y sin(theta), so at theta = 0 the bins run along x (the projection sums
    each column) and at 90 degrees along y (bottom to top). The value is the exact area of
    the pixel square inside the bin's strip divided by the strip width (the mean line integral
    across the strip), so the entries of one pixel at one angle sum to pixel_size wherever the
    detector covers that pixel.
    Vectorised over angles, pixels and the at most 3 bins a pixel touches; float64."""
    H, W = shape
    D = n_detectors
    theta = torch.deg2rad(angles_deg.to(torch.float64))
    c, s = torch.cos(theta), torch.sin(theta)
    x = torch.arange(W, dtype=torch.float64) - (W - 1) / 2
    y = (H - 1) / 2 - torch.arange(H, dtype=torch.float64)
    xc = x[None, :].expand(H, W).reshape(-1)
    yc = y[:, None].expand(H, W).reshape(-1)
    t = c[:, None] * xc + s[:, None] * yc  # [A, N] pixel centres on the detector, in pixels
    a, b = c.abs(), s.abs()
    half, flat = ((a + b) / 2)[:, None, None], ((a - b).abs() / 2)[:, None, None]
    small, large = torch.minimum(a, b)[:, None, None], torch.maximum(a, b)[:, None, None]
    # the footprint [t - half, t + half] is at most sqrt(2) wide: it touches at most 3 unit bins
    first = torch.floor(t - half[:, :, 0] + D / 2)
    k = first[..., None] + torch.arange(3, dtype=torch.float64)  # [A, N, 3]
    left = k - D / 2 - t[..., None]
    w = _footprint_cdf(left + 1.0, half, flat, small, large) - _footprint_cdf(left, half, flat, small, large)
    keep = (w > 0) & (k >= 0) & (k < D)
    angle = torch.arange(len(theta))[:, None, None].expand_as(k)
    pixel = torch.arange(H * W)[None, :, None].expand_as(k)
    rows = angle[keep] * D + k[keep].long()
    return rows, pixel[keep], w[keep] * pixel_size


class Tomography(LinearOperator):
    """Parallel-beam Radon transform at ``n_angles`` angles spread uniformly over [start, end)
    degrees (``angle_range``; the DRIP tomography twin uses 18 angles; a range shorter than 180
    degrees gives limited-angle tomography), with ``n_detectors`` bins of width ``pixel_size``
    (default ceil(sqrt(2) max(H, W)), which covers the whole image at every angle).

    Discretisation: the strip-integral (area-weighted) model. Entry (bin, pixel) is the exact area
    of the pixel square inside the bin's strip divided by the strip width, i.e. the mean line
    integral of a piecewise-constant image across the strip; no sampling or interpolation error
    beyond the pixel model, and each projection conserves mass: sum_k (A x)[a, k] =
    pixel_size * sum(x) when the detector covers the image. See ``radon_matrix`` for the geometry.

    The matrix (``matrix``, sparse CSR [n_angles * n_detectors, H * W]) and its transpose
    (``matrix_t``, used by the adjoint and by the gradient of the forward map) are built in float64
    in code (vectorised, no Python loop) and kept as non-persistent buffers (the CSR parts).

    x: Tensor[B, 1, H, W] -> y: Tensor[B, n_angles, n_detectors].
    """

    angles: Tensor

    def __init__(
        self,
        shape: Sequence[int],
        n_angles: int = 18,
        angle_range: Sequence[float] = (0.0, 180.0),
        n_detectors: int | None = None,
        pixel_size: float = 1.0,
    ) -> None:
        super().__init__(shape)
        H, W = self.shape
        if not isinstance(n_angles, int) or isinstance(n_angles, bool) or n_angles < 1:
            raise ValueError(f"Tomography: n_angles must be an integer >= 1, got {n_angles!r}")
        ok = isinstance(angle_range, Sequence) and len(angle_range) == 2
        ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in angle_range)
        if not ok or not angle_range[0] < angle_range[1]:
            raise ValueError(
                "Tomography: angle_range must be (start, end) in degrees with start < end, "
                f"got {angle_range!r}"
            )
        if n_detectors is None:
            n_detectors = math.ceil(math.sqrt(2.0) * max(H, W))
        if not isinstance(n_detectors, int) or isinstance(n_detectors, bool) or n_detectors < 1:
            raise ValueError(f"Tomography: n_detectors must be an integer >= 1, got {n_detectors!r}")
        ok = isinstance(pixel_size, (int, float)) and not isinstance(pixel_size, bool)
        if not ok or not math.isfinite(pixel_size) or pixel_size <= 0:
            raise ValueError(f"Tomography: pixel_size must be a finite number > 0, got {pixel_size!r}")
        self.n_angles, self.n_detectors, self.pixel_size = n_angles, n_detectors, float(pixel_size)
        self.angle_range = (float(angle_range[0]), float(angle_range[1]))
        start, end = self.angle_range
        angles = start + (end - start) * torch.arange(n_angles, dtype=torch.float64) / n_angles
        rows, cols, values = radon_matrix(self.shape, angles, n_detectors, self.pixel_size)
        size = (n_angles * n_detectors, H * W)
        with _quiet_csr():
            A = torch.sparse_coo_tensor(torch.stack((rows, cols)), values, size, check_invariants=False)
            At = torch.sparse_coo_tensor(
                torch.stack((cols, rows)), values, size[::-1], check_invariants=False
            )
            A, At = A.coalesce().to_sparse_csr(), At.coalesce().to_sparse_csr()
        self.register_buffer("angles", angles, persistent=False)  # Tensor[n_angles], degrees
        # the CSR parts as dense buffers (they follow .to(), deepcopy and pickle, which sparse CSR
        # buffers do not all do); derived from the arguments, so not in the state_dict
        for name, M in (("", A), ("_t", At)):
            self.register_buffer("crow" + name, M.crow_indices(), persistent=False)
            self.register_buffer("col" + name, M.col_indices(), persistent=False)
            self.register_buffer("val" + name, M.values(), persistent=False)
        self._assembled: dict = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_assembled"] = {}  # sparse CSR tensors cannot be deep-copied; rebuilt on use
        return state

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.n_angles, self.n_detectors)

    @property
    def detectors(self) -> Tensor:
        """Bin centres Tensor[n_detectors] float64, in the units of ``pixel_size``."""
        D = self.n_detectors
        return (torch.arange(D, dtype=torch.float64) - (D - 1) / 2) * self.pixel_size

    @property
    def matrix(self) -> Tensor:
        """The Radon matrix, sparse CSR [n_angles * n_detectors, H * W] (float64 unless the module
        was cast), rows angle-major: row a * n_detectors + k is bin k at angle a."""
        return self._matrices(self.val)[0]

    @property
    def matrix_t(self) -> Tensor:
        """Its transpose, sparse CSR [H * W, n_angles * n_detectors]."""
        return self._matrices(self.val)[1]

    def _matrices(self, like: Tensor) -> tuple[Tensor, Tensor]:
        # the matrix and its transpose in the dtype and device of ``like``, assembled once per
        # (dtype, device) and cached while the buffers stay the same (.to() replaces them)
        key = (like.dtype, like.device)
        hit = self._assembled.get(key)
        if hit is None or hit[0] is not self.val:
            self._assembled = {k: v for k, v in self._assembled.items() if v[0] is self.val}
            size = (self.n_angles * self.n_detectors, self.shape[0] * self.shape[1])
            parts = []
            with _quiet_csr():
                for name, n in (("", size), ("_t", size[::-1])):
                    crow, col, val = (getattr(self, p + name).to(like.device) for p in ("crow", "col", "val"))
                    parts.append(
                        torch.sparse_csr_tensor(crow, col, val.to(like.dtype), n, check_invariants=False)
                    )
            hit = self._assembled[key] = (self.val, *parts)
        return hit[1], hit[2]

    def _forward(self, x: Tensor) -> Tensor:
        A, At = self._matrices(x)
        B = x.shape[0]
        y = _SparseMatmul.apply(A, At, x.reshape(B, -1).T.contiguous())
        return y.T.reshape(B, *self.out_shape)

    def _adjoint(self, y: Tensor) -> Tensor:
        A, At = self._matrices(y)
        B = y.shape[0]
        x = _SparseMatmul.apply(At, A, y.reshape(B, -1).T.contiguous())
        return x.T.reshape(B, *self.in_shape)

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, n_angles={self.n_angles}, angle_range={self.angle_range}, "
            f"n_detectors={self.n_detectors}, pixel_size={self.pixel_size}"
        )


# -------------------------------------------------------------------------------------------- noise


def add_noise(
    y: Tensor, level: float | Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Data with additive Gaussian noise: (y + sigma * N(0, 1), sigma), sigma Tensor[B].

    ``y`` is Tensor[B, ...] (batch first); per sample, sigma = level * mean(|y|) (level 0.01 = 1%
    noise; the DRIP paper trains at 10-15%). ``level`` is a number or a Tensor[B] of per-sample
    levels, >= 0. The noise norm is about sigma * sqrt(M) for M values per sample: the discrepancy
    principle stops at a misfit of about 1.2 times that. sigma is computed from y detached, so the
    noisy data differ from y by a constant (the gradient with respect to y is the identity)."""
    if not isinstance(y, Tensor) or y.dim() < 2 or y.dtype not in _DTYPES:
        got = f"{y.dtype} {_fmt(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"add_noise: y must be a float32/float64 Tensor[B, ...] (batch first), got {got}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("add_noise: y contains non-finite values (NaN or inf)")
    B = y.shape[0]
    if isinstance(level, Tensor):
        if level.dim() > 1 or level.numel() not in (1, B):
            raise ValueError(f"add_noise: level must be a number or Tensor[B={B}], got {_fmt(level.shape)}")
        lvl = level.detach().to(device=y.device, dtype=y.dtype).reshape(-1)
    elif isinstance(level, (int, float)) and not isinstance(level, bool):
        lvl = torch.tensor([float(level)], device=y.device, dtype=y.dtype)
    else:
        raise ValueError(f"add_noise: level must be a number or Tensor[B={B}], got {type(level).__name__}")
    if not bool(torch.isfinite(lvl).all()) or bool((lvl < 0).any()):
        raise ValueError(f"add_noise: level must be finite and >= 0 (0.01 = 1% noise), got {level!r}")
    sigma = lvl * y.detach().abs().reshape(B, -1).mean(1)
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + sigma.view(B, *([1] * (y.dim() - 1))) * noise, sigma


# ------------------------------------------------------------------------------------------ factory

OPERATORS: dict[str, type[LinearOperator]] = {
    "blur": GaussianBlur,
    "inpainting": Inpainting,
    "tomography": Tomography,
}


def make_operator(name: str, shape: Sequence[int], **kwargs) -> LinearOperator:
    """The operator ``name`` ('blur', 'inpainting' or 'tomography') for images of ``shape`` (H, W),
    with the keyword arguments of its class (e.g. ``make_operator('blur', (96, 96), sigma=2.0)``)."""
    if name not in OPERATORS:
        raise ValueError(f"make_operator: unknown name {name!r}; the operators are {sorted(OPERATORS)}")
    return OPERATORS[name](shape, **kwargs)
