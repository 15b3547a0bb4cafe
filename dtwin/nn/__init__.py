"""nn.Modules built on dtwin's ops, for plugins to compose."""

from dtwin.nn.pointwise import ChannelLinear
from dtwin.nn.spectral import SpectralConv1d, SpectralConv2d

__all__ = ["ChannelLinear", "SpectralConv1d", "SpectralConv2d"]
