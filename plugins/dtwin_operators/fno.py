"""FNO: the Fourier neural operator (Li et al., "Fourier Neural Operator for Parametric Partial
Differential Equations", ICLR 2021), 1D and 2D, on dtwin's spectral convolution."""

from __future__ import annotations

import torch
from torch import Tensor

from dtwin import OperatorModule
from dtwin.nn import IntegralOperatorNet, SpectralConv1d, SpectralConv2d, check_config, per_dim


class FNO(OperatorModule):
    """Fourier neural operator: lift -> Fourier layers -> projection.

    Input functions on a grid, ``batch['x']``: Tensor[B, in_channels, L] (1D) or
    Tensor[B, in_channels, H, W] (2D); output Tensor[B, out_channels, same grid]. A pointwise
    linear map lifts to ``width`` channels; each Fourier layer adds a spectral convolution
    (``modes`` retained) to a pointwise linear map, with the activation between layers (not after
    the last, as Li et al.); a two-layer pointwise projection maps back. ``padding`` zero points
    are appended to the grid (right, and bottom in 2D) before the Fourier layers and cut after,
    for non-periodic functions. The output is ``out_scale * network + out_offset``, so that a
    target of a known scale (V in mV) starts in range. The model is resolution-independent:
    apply it to a finer grid of the same input for zero-shot super-resolution.

    Defaults: the configuration of Centofanti et al. for the Hodgkin-Huxley operator (width 32,
    16 modes, 3 Fourier layers, padding 10, ReLU), 1D, input (current, time) and output V.

    Args:
        in_channels, out_channels: channels of the input and output functions.
        width: channels inside the Fourier layers.
        modes: retained modes, an int (1D; or both dims in 2D) or [M1, M2] (2D: rows [:M1] and
            [-M1:] of dim -2, columns [:M2]).
        n_layers: Fourier layers.
        padding: grid points of zero padding per padded dimension.
        activation: 'relu', 'gelu', 'tanh' or 'silu'.
        projection_channels: hidden channels of the projection.
        dim: 1 or 2.
        out_offset, out_scale: affine map of the output.
        **kwargs: optimizer settings of :class:`dtwin.OperatorModule`.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        width: int = 32,
        modes: int | list[int] = 16,
        n_layers: int = 3,
        padding: int = 10,
        activation: str = "relu",
        projection_channels: int = 128,
        dim: int = 1,
        out_offset: float = 0.0,
        out_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_config(
            "FNO",
            dim,
            activation,
            padding,
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            n_layers=n_layers,
            projection_channels=projection_channels,
        )
        mode_list = per_dim(modes, dim, "modes", "FNO")
        self.batch_spec = {"x": "[B, C_in, L]" if dim == 1 else "[B, C_in, H, W]"}
        kernels = (
            SpectralConv1d(width, width, mode_list[0])
            if dim == 1
            else SpectralConv2d(width, width, tuple(mode_list))
            for _ in range(n_layers)
        )
        self.net = IntegralOperatorNet(
            kernels,
            in_channels,
            out_channels,
            width,
            dim,
            padding,
            activation,
            projection_channels,
            out_offset,
            out_scale,
            owner="FNO",
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        self.check_batch(batch)
        return self.net(batch["x"])

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        grid = (64,) if self.hparams.dim == 1 else (32, 32)
        return {
            "x": torch.randn(batch_size, self.hparams.in_channels, *grid, generator=g),
            "y": torch.randn(batch_size, self.hparams.out_channels, *grid, generator=g),
        }
