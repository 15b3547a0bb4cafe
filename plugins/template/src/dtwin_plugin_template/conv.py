"""ConvOperator: a residual stack of 1D convolutions, a small local operator.

It maps input functions sampled on a grid, ``x: Tensor[B, C_in, L]``, to output functions
``Tensor[B, C_out, L]``: lift (1x1 conv) -> ``depth`` residual blocks (conv k, GELU) -> project
(1x1 conv), then ``out_scale * (.) + out_offset`` so that outputs of a known scale (V in mV:
offset -65, scale 30) start near their range.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dtwin import OperatorModule


class ConvOperator(OperatorModule):
    """Residual 1D convolutional operator.

    Args:
        in_channels: C_in, channels of ``batch['x']``.
        out_channels: C_out, channels of the output (and of ``batch['y']``).
        width: hidden channels.
        depth: residual blocks.
        kernel_size: odd convolution width (grid points).
        out_offset, out_scale: output = out_scale * network + out_offset.
        **kwargs: optimizer settings of :class:`dtwin.OperatorModule` (lr, weight_decay, ...).
    """

    batch_spec = {"x": "[B, C_in, L]"}

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        width: int = 32,
        depth: int = 4,
        kernel_size: int = 5,
        out_offset: float = 0.0,
        out_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvOperator: kernel_size must be odd, got {kernel_size}")
        if min(in_channels, out_channels, width, depth) < 1:
            raise ValueError("ConvOperator: in_channels, out_channels, width and depth must be >= 1")
        self.lift = nn.Conv1d(in_channels, width, 1)
        self.blocks = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, padding_mode="replicate")
            for _ in range(depth)
        )
        self.project = nn.Sequential(nn.Conv1d(width, width, 1), nn.GELU(), nn.Conv1d(width, out_channels, 1))

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        self.check_batch(batch)
        x = batch["x"]
        if x.shape[1] != self.hparams.in_channels:
            raise ValueError(
                f"ConvOperator: batch['x'] has {x.shape[1]} channels, the model was built for "
                f"in_channels={self.hparams.in_channels}"
            )
        h = self.lift(x)
        for block in self.blocks:
            h = h + torch.nn.functional.gelu(block(h))
        return self.hparams.out_scale * self.project(h) + self.hparams.out_offset

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        L = 64
        return {
            "x": torch.randn(batch_size, self.hparams.in_channels, L, generator=g),
            "y": torch.randn(batch_size, self.hparams.out_channels, L, generator=g),
        }
