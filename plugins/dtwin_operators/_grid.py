"""What the grid operators of this package (FNO, WNO) share: the input check, the output's
affine map, an example batch."""

from __future__ import annotations

import torch
from torch import Tensor

from dtwin import OperatorModule
from dtwin.nn import IntegralOperatorNet, make_activation


class GridOperator(OperatorModule):
    """``batch['x']``: Tensor[B, in_channels, *grid] -> ``out_scale * net(x) + out_offset``.

    Subclasses build ``self.net`` (an :class:`dtwin.nn.IntegralOperatorNet`) from hyperparameters
    that include ``in_channels``, ``out_channels``, ``dim``, ``out_offset`` and ``out_scale``. The
    affine map lets a target of known scale (V in mV) start in range.
    """

    net: IntegralOperatorNet
    #: the grid of example_batch, per dim
    example_grid = {1: (64,), 2: (32, 32)}

    def _check_config(self, dim: int, activation: str, padding: int, **counts: int) -> None:
        """Check what every grid operator takes (``counts``: sizes that must be >= 1, by name) and
        set the batch spec of ``dim``."""
        name = type(self).__name__
        if dim not in (1, 2):
            raise ValueError(f"{name}: dim must be 1 or 2, got {dim}")
        make_activation(activation, name)
        for arg, value in counts.items():
            if value < 1:
                raise ValueError(f"{name}: {arg} must be >= 1, got {value}")
        if padding < 0:
            raise ValueError(f"{name}: padding must be >= 0, got {padding}")
        self.batch_spec = {"x": "[B, C_in, L]" if dim == 1 else "[B, C_in, H, W]"}

    def _per_dim(self, value: int | list[int], dim: int, arg: str) -> list[int]:
        """An int (the same for every dim) or ``dim`` positive ints, as a list."""
        values = [value] * dim if isinstance(value, int) else list(value)
        if len(values) != dim or min(values) < 1:
            raise ValueError(
                f"{type(self).__name__}: {arg} must be a positive int or {dim} positive ints, got {value!r}"
            )
        return values

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
