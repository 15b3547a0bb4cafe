"""The network shape that FNO, WNO and their relatives share: lift, integral-kernel layers, project."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from dtwin.nn.pointwise import ChannelLinear

__all__ = ["ACTIVATIONS", "IntegralOperatorNet", "make_activation"]

#: activations by name, for configs
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "mish": nn.Mish}


def make_activation(name: str, owner: str = "activation") -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner}: activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class IntegralOperatorNet(nn.Module):
    """Tensor[B, in_channels, *grid] -> Tensor[B, out_channels, *grid]:

    ``h = lift(x)``; for each kernel layer ``h = kernel(h) + W h`` (W pointwise), with the
    activation between layers and not after the last (Li et al.); ``project(h)``, a two-layer
    pointwise MLP. ``padding`` zero points are appended to every grid dimension before the
    kernel layers and cut after (for non-periodic functions under a Fourier layer); kernel layers
    tied to a grid size (wavelet layers) must be built for the padded grid.

    Args:
        kernels: the integral-kernel layers, each ``width -> width`` channels.
        in_channels, out_channels: channels of the input and output functions.
        width: channels inside.
        dim: grid dimensions (1 or 2).
        padding: zero points per padded dimension (right, and bottom in 2D).
        activation: a name of :data:`ACTIVATIONS`.
        projection_channels: hidden channels of the projection.
    """

    def __init__(
        self,
        kernels: Iterable[nn.Module],
        in_channels: int,
        out_channels: int,
        width: int,
        dim: int = 1,
        padding: int = 0,
        activation: str = "gelu",
        projection_channels: int = 128,
    ) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"IntegralOperatorNet: dim must be 1 or 2, got {dim}")
        if padding < 0:
            raise ValueError(f"IntegralOperatorNet: padding must be >= 0, got {padding}")
        self.dim, self.padding = dim, padding
        self.lift = ChannelLinear(in_channels, width)
        self.kernels = nn.ModuleList(kernels)
        if len(self.kernels) < 1:
            raise ValueError("IntegralOperatorNet: kernels must hold at least one layer")
        self.pointwise = nn.ModuleList(ChannelLinear(width, width) for _ in self.kernels)
        self.activation = make_activation(activation, "IntegralOperatorNet")
        self.project = nn.Sequential(
            ChannelLinear(width, projection_channels),
            make_activation(activation),
            ChannelLinear(projection_channels, out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.lift(x)
        pad = self.padding
        if pad:
            h = nn.functional.pad(h, (0, pad) * self.dim)
        last = len(self.kernels) - 1
        for i, (kernel, pointwise) in enumerate(zip(self.kernels, self.pointwise, strict=True)):
            h = kernel(h) + pointwise(h)
            if i < last:
                h = self.activation(h)
        if pad:
            h = h[..., :-pad] if self.dim == 1 else h[..., :-pad, :-pad]
        return self.project(h)
