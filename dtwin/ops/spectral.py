"""``dtwin.ops.spectral_conv1d`` / ``spectral_conv2d``: the Fourier layer of an FNO.

The references below are the definition (Li et al., "Fourier Neural Operator for Parametric
PDEs", ICLR 2021); the compiled kernels (csrc/spectral_op.h) compute it with truncated DFTs as
matrix products or with FFTs, whichever is cheaper, and a fused mode-mixing kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dtwin.ops import _library

ALGORITHMS = ("auto", "dft", "fft")

__all__ = [
    "spectral_conv1d",
    "spectral_conv1d_reference",
    "spectral_conv2d",
    "spectral_conv2d_reference",
]


def _fail(op: str, message: str) -> None:
    raise ValueError(f"{op}: {message}")


def _check(op: str, x: object, weight: object, dims: int, algorithm: str) -> None:
    shape_x = "[B, Cin, L]" if dims == 1 else "[B, Cin, H, W]"
    shape_w = "[Cin, Cout, M]" if dims == 1 else "[Cin, Cout, 2*M1, M2]"
    if not isinstance(x, Tensor) or x.dim() != dims + 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        _fail(op, f"x must be a Tensor{shape_x}, got {got}")
    if not isinstance(weight, Tensor) or weight.dim() != dims + 2:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        _fail(op, f"weight must be a complex Tensor{shape_w}, got {got}")
    if not weight.is_complex():
        _fail(op, f"weight must be complex (complex64 or complex128), got {weight.dtype}")
    if x.is_complex() or not x.is_floating_point():
        _fail(op, f"x must be a real floating tensor, got {x.dtype}")
    if x.device != weight.device:
        _fail(op, f"x is on {x.device} but weight is on {weight.device}")
    expected = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    if weight.dtype != expected:
        _fail(op, f"weight must be {expected} for {x.dtype} x, got {weight.dtype}")
    if x.dtype in (torch.float16, torch.bfloat16) and x.device.type != "cuda":
        _fail(
            op, f"x in {x.dtype} is supported on CUDA (float32 accumulation); on {x.device.type} use float32"
        )
    if x.shape[1] != weight.shape[0]:
        _fail(op, f"x has {x.shape[1]} channels but weight expects Cin = {weight.shape[0]}")
    if algorithm not in ALGORITHMS:
        _fail(op, f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def spectral_conv1d(
    x: Tensor, weight: Tensor, out_len: int | None = None, *, algorithm: str = "auto"
) -> Tensor:
    """Spectral convolution in 1D: Tensor[B, Cout, out_len or L].

    ``y = irfft(pad(einsum('bix,iox->box', rfft(x)[..., :M], weight)), n=out_len or L)``.

    Args:
        x: Tensor[B, Cin, L], real (float32/float64; float16/bfloat16 on CUDA).
        weight: Tensor[Cin, Cout, M], complex, M <= L // 2 + 1 retained modes.
        out_len: evaluate the output on another grid of this many points (zero-shot
            super-resolution); default L.
        algorithm: 'auto' (the cheaper), 'dft' (truncated DFTs as matrix products) or 'fft'.
    """
    _check("spectral_conv1d", x, weight, 1, algorithm)
    L, M = x.shape[-1], weight.shape[-1]
    if not 1 <= M <= L // 2 + 1:
        _fail(
            "spectral_conv1d",
            f"weight keeps M = {M} modes but x of length L = {L} has only L // 2 + 1 = {L // 2 + 1}",
        )
    if out_len is not None and (not isinstance(out_len, int) or out_len < 1):
        _fail("spectral_conv1d", f"out_len must be a positive int, got {out_len!r}")
    if _library.use_compiled("spectral_conv1d", x.device):
        return torch.ops.dtwin.spectral_conv1d(x, weight, out_len, algorithm)[0]
    return spectral_conv1d_reference(x, weight, out_len)


def spectral_conv2d(
    x: Tensor, weight: Tensor, out_shape: tuple[int, int] | None = None, *, algorithm: str = "auto"
) -> Tensor:
    """Spectral convolution in 2D: Tensor[B, Cout, H_out, W_out].

    The modes kept are rows ``[:M1]`` and ``[-M1:]`` of dim -2 and columns ``[:M2]`` of
    ``rfft2(x)``; weight rows are in that order (frequencies 0..M1-1, then -M1..-1). The inverse
    places them at the same frequencies of an ``out_shape`` grid (default (H, W)).

    Args:
        x: Tensor[B, Cin, H, W], real.
        weight: Tensor[Cin, Cout, 2*M1, M2], complex; 2*M1 <= H, M2 <= W // 2 + 1.
        out_shape: (H_out, W_out) for zero-shot super-resolution; 2*M1 <= H_out.
        algorithm: 'auto', 'dft' or 'fft'.
    """
    _check("spectral_conv2d", x, weight, 2, algorithm)
    H, W = x.shape[-2:]
    R, M2 = weight.shape[-2:]
    if R < 2 or R % 2 or R > H:
        _fail(
            "spectral_conv2d",
            f"weight's dim 2 holds 2*M1 rows (rows [:M1] and [-M1:]) with 2*M1 <= H = {H}, got {R}",
        )
    if not 1 <= M2 <= W // 2 + 1:
        _fail(
            "spectral_conv2d", f"weight keeps M2 = {M2} columns but x of width W = {W} has only {W // 2 + 1}"
        )
    if out_shape is not None:
        out_shape = tuple(out_shape)
        if (
            len(out_shape) != 2
            or not all(isinstance(s, int) and s >= 1 for s in out_shape)
            or out_shape[0] < R
        ):
            _fail(
                "spectral_conv2d",
                f"out_shape must be (H_out, W_out) of positive ints with H_out >= 2*M1 = {R}, "
                f"got {out_shape!r}",
            )
    if _library.use_compiled("spectral_conv2d", x.device):
        out = None if out_shape is None else list(out_shape)
        return torch.ops.dtwin.spectral_conv2d(x, weight, out, algorithm)[0]
    return spectral_conv2d_reference(x, weight, out_shape)


# --------------------------------------------------------------------------------------------
# fake kernels and autograd


def _modes_like(x, weight, rows):
    return x.new_empty((2, rows, x.shape[0], x.shape[1], weight.shape[-1]))


def _fake_1d(x, weight, out_len, algorithm):
    y = x.new_empty((x.shape[0], weight.shape[1], x.shape[-1] if out_len is None else out_len))
    return y, _modes_like(x, weight, 1)


def _fake_2d(x, weight, out_shape, algorithm):
    Ho, Wo = x.shape[-2:] if out_shape is None else out_shape
    return x.new_empty((x.shape[0], weight.shape[1], Ho, Wo)), _modes_like(x, weight, weight.shape[2])


def _fake_backward(grad, x_size, weight, modes, algorithm, need_x, need_w):
    return (
        modes.new_empty(x_size) if need_x else modes.new_empty((0,)),
        weight.new_empty(weight.shape) if need_w else weight.new_empty((0,)),
    )


def _setup_context(ctx, inputs, output):
    # the backward needs the retained modes of x (a fraction M / L of it), not x itself
    x, weight = inputs[0], inputs[1]
    ctx.save_for_backward(weight, output[1])
    ctx.x_size = list(x.shape)
    ctx.algorithm = inputs[3]
    ctx.mark_non_differentiable(output[1])


def _make_backward(op: str):
    def backward(ctx, grad, _grad_modes):
        weight, modes = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x, grad_w = getattr(torch.ops.dtwin, f"{op}_backward")(
            grad, ctx.x_size, weight, modes, ctx.algorithm, need_x, need_w
        )
        return (grad_x if need_x else None, grad_w if need_w else None, None, None)

    return backward


_library.register(
    "spectral_conv1d", fake=_fake_1d, backward=_make_backward("spectral_conv1d"), setup_context=_setup_context
)
_library.register("spectral_conv1d_backward", fake=_fake_backward)
_library.register(
    "spectral_conv2d", fake=_fake_2d, backward=_make_backward("spectral_conv2d"), setup_context=_setup_context
)
_library.register("spectral_conv2d_backward", fake=_fake_backward)


# --------------------------------------------------------------------------------------------
# references: the definitions


def spectral_conv1d_reference(x: Tensor, weight: Tensor, out_len: int | None = None) -> Tensor:
    """The definition, with torch.fft and einsum (differentiable by autograd)."""
    L, M = x.shape[-1], weight.shape[-1]
    modes = torch.fft.rfft(x)[..., :M]
    mixed = torch.einsum("bix,iox->box", modes.to(weight.dtype), weight)
    spectrum = torch.nn.functional.pad(mixed, (0, L // 2 + 1 - M))
    return torch.fft.irfft(spectrum, n=L if out_len is None else out_len).to(x.dtype)


def spectral_conv2d_reference(x: Tensor, weight: Tensor, out_shape: tuple[int, int] | None = None) -> Tensor:
    """The definition in 2D: rows [:M1] and [-M1:], columns [:M2] of rfft2, mixed per mode, put
    back at the same frequencies of the output grid."""
    H, W = x.shape[-2:]
    Ho, Wo = (H, W) if out_shape is None else out_shape
    M1, M2 = weight.shape[-2] // 2, weight.shape[-1]
    spec = torch.fft.rfft2(x).to(weight.dtype)
    modes = torch.cat((spec[..., :M1, :M2], spec[..., H - M1 :, :M2]), dim=-2)
    mixed = torch.einsum("bixy,ioxy->boxy", modes, weight)
    m2, width = min(M2, Wo // 2 + 1), Wo // 2 + 1
    top = torch.nn.functional.pad(mixed[:, :, :M1, :m2], (0, width - m2))
    bottom = torch.nn.functional.pad(mixed[:, :, M1:, :m2], (0, width - m2))
    middle = mixed.new_zeros((x.shape[0], weight.shape[1], Ho - 2 * M1, width))
    spectrum = torch.cat((top, middle, bottom), dim=-2)
    return torch.fft.irfft2(spectrum, s=(Ho, Wo)).to(x.dtype)
