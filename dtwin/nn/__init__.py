"""nn.Modules built on dtwin's ops, for plugins to compose."""

from dtwin.nn.drip import (
    PENALTIES,
    ConvexRegularizer,
    SolveResult,
    Synthesis,
    check_convex,
    objective,
    operator_norm_sq,
    solve,
    solve_unrolled,
)
from dtwin.nn.operator import ACTIVATIONS, IntegralOperatorNet, check_config, make_activation, per_dim
from dtwin.nn.pointwise import ChannelLinear
from dtwin.nn.spectral import SpectralConv1d, SpectralConv2d
from dtwin.nn.wavelet import WaveletConv1d, WaveletConv2d

__all__ = [
    "ACTIVATIONS",
    "PENALTIES",
    "ChannelLinear",
    "ConvexRegularizer",
    "IntegralOperatorNet",
    "SolveResult",
    "SpectralConv1d",
    "SpectralConv2d",
    "Synthesis",
    "WaveletConv1d",
    "WaveletConv2d",
    "check_config",
    "check_convex",
    "make_activation",
    "objective",
    "operator_norm_sq",
    "per_dim",
    "solve",
    "solve_unrolled",
]
