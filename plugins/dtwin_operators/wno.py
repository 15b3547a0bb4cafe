"""WNO: the wavelet neural operator (Tripura & Chakraborty, "Wavelet neural operator for solving
parametric partial differential equations in computational mechanics problems", CMAME 404, 2023),
1D and 2D, on dtwin's fused wavelet convolution."""

from __future__ import annotations

import torch
from torch import Tensor

from dtwin import OperatorModule
from dtwin.nn import IntegralOperatorNet, WaveletConv1d, WaveletConv2d, check_config, per_dim


class WNO(OperatorModule):
    """Wavelet neural operator: lift -> wavelet layers -> projection.

    Input functions on a grid, ``batch['x']``: Tensor[B, in_channels, L] (1D) or
    Tensor[B, in_channels, H, W] (2D); output Tensor[B, out_channels, same grid]. Each wavelet
    layer transforms to ``level`` with ``wavelet``, mixes the coarsest coefficients across
    channels (the approximation and the coarsest detail; in 2D the approximation and the three
    coarsest orientations), drops the finer details, inverts, and adds a pointwise linear map;
    the activation sits between layers. A two-layer pointwise projection maps back. The output is
    ``out_scale * network + out_offset``.

    The layers' weights hold coefficients of one grid: ``size`` is that grid (the HH data set's
    500 points by default) and the model takes inputs on it only (``padding`` points are added
    inside). Unlike an FNO a WNO does not transfer to other resolutions as is.

    Defaults: the configuration of Centofanti et al. for the Hodgkin-Huxley operator (width 64,
    5 wavelet layers, level 3, db24, GELU, projection 128 -> 1, symmetric boundary mode as the
    WNO reference code), 1D, input (current, time) and output V.

    Args:
        in_channels, out_channels: channels of the input and output functions.
        size: the grid, an int (1D, or a square in 2D) or [H, W].
        width: channels inside the wavelet layers.
        level: decomposition levels (at most pywt.dwt_max_level of the padded grid).
        wavelet: an orthogonal wavelet of PyWavelets ('db24', 'db4', 'sym8', 'coif3', ...).
        mode: 'symmetric' or 'periodization'.
        n_layers: wavelet layers.
        padding: zero points appended per dimension before the wavelet layers (cut after).
        activation: 'gelu', 'relu', 'tanh', 'silu' or 'mish'.
        projection_channels: hidden channels of the projection.
        dim: 1 or 2.
        out_offset, out_scale: affine map of the output.
        **kwargs: optimizer settings of :class:`dtwin.OperatorModule`.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        size: int | list[int] = 500,
        width: int = 64,
        level: int = 3,
        wavelet: str = "db24",
        mode: str = "symmetric",
        n_layers: int = 5,
        padding: int = 0,
        activation: str = "gelu",
        projection_channels: int = 128,
        dim: int = 1,
        out_offset: float = 0.0,
        out_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_config(
            "WNO",
            dim,
            activation,
            padding,
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            n_layers=n_layers,
            projection_channels=projection_channels,
        )
        self.grid = tuple(per_dim(size, dim, "size", "WNO"))
        self.batch_spec = {"x": "[B, C_in, L]" if dim == 1 else "[B, C_in, H, W]"}
        padded = [s + padding for s in self.grid]
        layer = WaveletConv1d if dim == 1 else WaveletConv2d
        kernels = [
            layer(width, width, padded if dim == 2 else padded[0], level, wavelet, mode)
            for _ in range(n_layers)
        ]
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
            owner="WNO",
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        self.check_batch(batch)
        x = batch["x"]
        if tuple(x.shape[2:]) != self.grid:
            raise ValueError(
                f"WNO: batch['x'] is on the grid {tuple(x.shape[2:])}, the model was built for "
                f"size={list(self.grid)} (its wavelet weights hold the coefficients of that grid)"
            )
        return self.net(x)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        return {
            "x": torch.randn(batch_size, self.hparams.in_channels, *self.grid, generator=g),
            "y": torch.randn(batch_size, self.hparams.out_channels, *self.grid, generator=g),
        }
