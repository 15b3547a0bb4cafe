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
from dtwin.nn.variational import (
    VARIATIONAL_METHODS,
    DiscrepancyResult,
    discrepancy_lambda,
    image_gradient,
    image_gradient_adjoint,
    select_lambda,
    tikhonov,
    total_variation,
    tv_norm,
)
from dtwin.nn.wavelet import WaveletConv1d, WaveletConv2d

__all__ = [
    "ACTIVATIONS",
    "PENALTIES",
    "VARIATIONAL_METHODS",
    "ChannelLinear",
    "ConvexRegularizer",
    "DiscrepancyResult",
    "IntegralOperatorNet",
    "SolveResult",
    "SpectralConv1d",
    "SpectralConv2d",
    "Synthesis",
    "WaveletConv1d",
    "WaveletConv2d",
    "check_config",
    "check_convex",
    "discrepancy_lambda",
    "image_gradient",
    "image_gradient_adjoint",
    "make_activation",
    "objective",
    "operator_norm_sq",
    "per_dim",
    "select_lambda",
    "solve",
    "solve_unrolled",
    "tikhonov",
    "total_variation",
    "tv_norm",
]
