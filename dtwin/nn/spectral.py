"""Spectral convolution layers (the Fourier layer of an FNO) on :mod:`dtwin.ops`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dtwin.ops import spectral_conv1d, spectral_conv2d

__all__ = ["SpectralConv1d", "SpectralConv2d"]


def _complex_normal(*shape: int, std: float) -> Tensor:
    # real and imaginary parts N(0, std^2 / 2): E|w|^2 = std^2
    return torch.complex(torch.randn(*shape), torch.randn(*shape)) * (std / math.sqrt(2.0))


class SpectralConv1d(nn.Module):
    """y = irfft(W . rfft(x)[..., :modes]) on Tensor[B, Cin, L] -> Tensor[B, Cout, L (or out_len)].

    Args:
        in_channels, out_channels: Cin, Cout.
        modes: retained rfft modes M (<= L // 2 + 1 for the grids it is applied to).
    The weight, Tensor[Cin, Cout, M] complex64, starts N(0, 2 / (Cin + Cout)) (neuraloperator's
    default scale).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        if min(in_channels, out_channels, modes) < 1:
            raise ValueError(
                f"SpectralConv1d: channels and modes must be >= 1, got {in_channels}, {out_channels}, {modes}"
            )
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        std = math.sqrt(2.0 / (in_channels + out_channels))
        self.weight = nn.Parameter(_complex_normal(in_channels, out_channels, modes, std=std))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"

    def forward(self, x: Tensor, out_len: int | None = None) -> Tensor:
        return spectral_conv1d(x, self.weight, out_len)


class SpectralConv2d(nn.Module):
    """The 2D Fourier layer: Tensor[B, Cin, H, W] -> Tensor[B, Cout, H, W (or out_shape)].

    Args:
        in_channels, out_channels: Cin, Cout.
        modes: (M1, M2): rows [:M1] and [-M1:] of dim -2 and columns [:M2] of rfft2 are kept
            (weight Tensor[Cin, Cout, 2*M1, M2] complex64).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: tuple[int, int]) -> None:
        super().__init__()
        modes = tuple(modes)
        if len(modes) != 2 or min(in_channels, out_channels, *modes) < 1:
            raise ValueError(
                f"SpectralConv2d: channels >= 1 and modes = (M1, M2) >= 1, got {in_channels}, "
                f"{out_channels}, {modes}"
            )
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        std = math.sqrt(2.0 / (in_channels + out_channels))
        self.weight = nn.Parameter(
            _complex_normal(in_channels, out_channels, 2 * modes[0], modes[1], std=std)
        )

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"

    def forward(self, x: Tensor, out_shape: tuple[int, int] | None = None) -> Tensor:
        return spectral_conv2d(x, self.weight, out_shape)
