"""Wavelet convolution layers (the layer of a wavelet neural operator) on :mod:`dtwin.ops`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dtwin.ops import wavelet_coefficient_size, wavelet_conv1d, wavelet_conv2d
from dtwin.ops.wavelet import check_wavelet_arguments

__all__ = ["WaveletConv1d", "WaveletConv2d"]


class _WaveletConv(nn.Module):
    dims = 0
    bands = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | Sequence[int],
        level: int,
        wavelet: str,
        mode: str,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        sizes = (size,) * self.dims if isinstance(size, int) else tuple(size)
        if len(sizes) != self.dims or min(sizes) < 1:
            raise ValueError(f"{name}: size must be {self.dims} positive grid sizes, got {size!r}")
        if min(in_channels, out_channels) < 1:
            raise ValueError(f"{name}: channels must be >= 1, got {in_channels}, {out_channels}")
        level = check_wavelet_arguments(name, wavelet, mode, min(sizes), level)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size, self.level, self.wavelet, self.mode = sizes, level, wavelet, mode
        m = [wavelet_coefficient_size(s, wavelet, level, mode) for s in sizes]
        # the WNO reference code's initialisation: U(0, 1) / (Cin Cout)
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(self.bands, in_channels, out_channels, *m))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, size={self.size}, level={self.level}, "
            f"wavelet={self.wavelet!r}, mode={self.mode!r}"
        )

    def _check(self, x: Tensor) -> None:
        if x.dim() != self.dims + 2 or tuple(x.shape[2:]) != self.size or x.shape[1] != self.in_channels:
            grid = ", ".join(str(s) for s in self.size)
            raise ValueError(
                f"{type(self).__name__}: x must be [B, {self.in_channels}, {grid}] (the weight holds the "
                f"coefficients of that grid), got {tuple(x.shape)}"
            )


class WaveletConv1d(_WaveletConv):
    """The 1D WNO layer: Tensor[B, Cin, L] -> Tensor[B, Cout, L].

    Transform to ``level`` with ``wavelet``, mix the approximation and the coarsest detail across
    channels (weight Tensor[2, Cin, Cout, m]), zero the finer details, invert. Unlike a spectral
    layer the weight is tied to the grid: ``size`` is L.

    Args:
        in_channels, out_channels: Cin, Cout.
        size: the grid length L.
        level: decomposition levels (1 to pywt.dwt_max_level(L, filter length)).
        wavelet: an orthogonal wavelet of PyWavelets (default db24, as the HH WNO).
        mode: 'symmetric' (the WNO reference code's) or 'periodization'.
    """

    dims, bands = 1, 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int,
        level: int = 3,
        wavelet: str = "db24",
        mode: str = "symmetric",
    ) -> None:
        super().__init__(in_channels, out_channels, size, level, wavelet, mode)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return wavelet_conv1d(x, self.weight.to(x.dtype), self.wavelet, self.level, self.mode)


class WaveletConv2d(_WaveletConv):
    """The 2D WNO layer: Tensor[B, Cin, H, W] -> Tensor[B, Cout, H, W]; mixes the four coarsest
    bands (cA, cH, cV, cD of ``level``) with weight Tensor[4, Cin, Cout, m1, m2].

    Args:
        size: the grid (H, W), or one int for a square grid; others as :class:`WaveletConv1d`.
    """

    dims, bands = 2, 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | Sequence[int],
        level: int = 2,
        wavelet: str = "db4",
        mode: str = "symmetric",
    ) -> None:
        super().__init__(in_channels, out_channels, size, level, wavelet, mode)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return wavelet_conv2d(x, self.weight.to(x.dtype), self.wavelet, self.level, self.mode)
