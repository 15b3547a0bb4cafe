"""What the grid operators of this package (FNO, WNO) share: the input check, the output's
affine map, an example batch."""

from __future__ import annotations

import torch
from torch import Tensor

from dtwin import OperatorModule
from dtwin.nn import IntegralOperatorNet


class GridOperator(OperatorModule):
    """``batch['x']``: Tensor[B, in_channels, *grid] -> ``out_scale * net(x) + out_offset``.

    Subclasses build ``self.net`` (an :class:`dtwin.nn.IntegralOperatorNet`) from hyperparameters
    that include ``in_channels``, ``out_channels``, ``dim``, ``out_offset`` and ``out_scale``. The
    affine map lets a target of known scale (V in mV) start in range.
    """

    net: IntegralOperatorNet
    #: the grid of example_batch, per dim
    example_grid = {1: (64,), 2: (32, 32)}

    def _grid_spec(self, dim: int) -> None:
        self.batch_spec = {"x": "[B, C_in, L]" if dim == 1 else "[B, C_in, H, W]"}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        self.check_batch(batch)
        x = batch["x"]
        hp = self.hparams
        if x.shape[1] != hp.in_channels:
            raise ValueError(
                f"{type(self).__name__}: batch['x'] has {x.shape[1]} channels, the model was built for "
                f"in_channels={hp.in_channels}"
            )
        return hp.out_scale * self.net(x) + hp.out_offset

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        grid = self.example_grid[self.hparams.dim]
        return {
            "x": torch.randn(batch_size, self.hparams.in_channels, *grid, generator=g),
            "y": torch.randn(batch_size, self.hparams.out_channels, *grid, generator=g),
        }
