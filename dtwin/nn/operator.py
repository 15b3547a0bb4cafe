"""The network shape that FNO, WNO and their relatives share: lift, integral-kernel layers, project."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from dtwin.nn.pointwise import ChannelLinear

__all__ = ["ACTIVATIONS", "IntegralOperatorNet", "check_config", "make_activation", "per_dim"]

#: activations by name, for configs
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "mish": nn.Mish}


def make_activation(name: str, owner: str = "activation") -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner}: activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def check_config(owner: str, dim: int, activation: str, padding: int, **counts: int) -> None:
    """The checks every grid operator needs: dim 1 or 2, a known activation, padding >= 0 and the
    named ``counts`` >= 1; a ValueError names ``owner`` and the argument."""
    if dim not in (1, 2):
        raise ValueError(f"{owner}: dim must be 1 or 2, got {dim}")
    make_activation(activation, owner)
    for arg, value in counts.items():
        if value < 1:
            raise ValueError(f"{owner}: {arg} must be >= 1, got {value}")
    if padding < 0:
        raise ValueError(f"{owner}: padding must be >= 0, got {padding}")


def per_dim(value: int | Sequence[int], dim: int, arg: str, owner: str) -> list[int]:
    """An int (the same for every grid dimension) or ``dim`` positive ints, as a list of ``dim``."""
    values = [value] * dim if isinstance(value, int) else list(value)
    if len(values) != dim or min(values) < 1:
        raise ValueError(f"{owner}: {arg} must be a positive int or {dim} positive ints, got {value!r}")
    return values


class IntegralOperatorNet(nn.Module):
    """Tensor[B, in_channels, *grid] -> Tensor[B, out_channels, *grid]:

    ``h = lift(x)``; for each kernel layer ``h = kernel(h) + W h`` (W pointwise), with the
    activation between layers and not after the last (Li et al.); ``project(h)``, a two-layer
    pointwise MLP; the output is ``out_scale * project(h) + out_offset`` (so that a target of a
    known scale, V in mV, starts in range). ``padding`` zero points are appended to every grid
    dimension before the kernel layers and cut after (for non-periodic functions under a Fourier
    layer); kernel layers tied to a grid size (wavelet layers) must be built for the padded grid.

    Args:
        kernels: the integral-kernel layers, each ``width -> width`` channels.
        in_channels, out_channels: channels of the input and output functions.
        width: channels inside.
        dim: grid dimensions (1 or 2).
        padding: zero points per padded dimension (right, and bottom in 2D).
        activation: a name of :data:`ACTIVATIONS`.
        projection_channels: hidden channels of the projection.
        out_offset, out_scale: affine map of the output.
        owner: the name errors are reported under (the model that builds this net).
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
        out_offset: float = 0.0,
        out_scale: float = 1.0,
        owner: str = "IntegralOperatorNet",
    ) -> None:
        super().__init__()
        check_config(
            owner,
            dim,
            activation,
            padding,
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            projection_channels=projection_channels,
        )
        self.owner, self.dim, self.padding = owner, dim, padding
        self.in_channels, self.out_offset, self.out_scale = in_channels, out_offset, out_scale
        self.lift = ChannelLinear(in_channels, width)
        self.kernels = nn.ModuleList(kernels)
        if len(self.kernels) < 1:
            raise ValueError(f"{owner}: kernels must hold at least one layer (n_layers >= 1)")
        self.pointwise = nn.ModuleList(ChannelLinear(width, width) for _ in self.kernels)
        self.activation = make_activation(activation, owner)
        self.project = nn.Sequential(
            ChannelLinear(width, projection_channels),
            make_activation(activation),
            ChannelLinear(projection_channels, out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            grid = "L" if self.dim == 1 else "H, W"
            raise ValueError(
                f"{self.owner}: x must be [B, in_channels={self.in_channels}, {grid}], got {tuple(x.shape)}"
            )
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
        return self.out_scale * self.project(h) + self.out_offset
