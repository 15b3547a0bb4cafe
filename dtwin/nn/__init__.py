"""nn.Modules built on dtwin's ops, for plugins to compose."""

from dtwin.nn.operator import ACTIVATIONS, IntegralOperatorNet, check_config, make_activation, per_dim
from dtwin.nn.pointwise import ChannelLinear
from dtwin.nn.spectral import SpectralConv1d, SpectralConv2d
from dtwin.nn.wavelet import WaveletConv1d, WaveletConv2d

__all__ = [
    "ACTIVATIONS",
    "ChannelLinear",
    "IntegralOperatorNet",
    "SpectralConv1d",
    "SpectralConv2d",
    "WaveletConv1d",
    "WaveletConv2d",
    "check_config",
    "make_activation",
    "per_dim",
]
