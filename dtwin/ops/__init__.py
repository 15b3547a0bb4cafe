"""dtwin's ops: the Python face of the C++/CUDA kernels, each with its pure-torch reference.

Every op dispatches to the compiled kernel for the tensor's device when this build has one,
else to its reference (``DTWIN_BACKEND`` overrides; see :mod:`dtwin.ops._library`).
"""

from dtwin.ops._library import backend, build_info, extension_error, extension_loaded, has_kernel
from dtwin.ops.drip import drip_step, drip_step_reference
from dtwin.ops.hh import hh_simulate, hh_simulate_reference
from dtwin.ops.spectral import (
    spectral_conv1d,
    spectral_conv1d_reference,
    spectral_conv2d,
    spectral_conv2d_reference,
)
from dtwin.ops.wavelet import (
    dwt1d,
    dwt2d,
    idwt1d,
    idwt2d,
    wavelet_coefficient_size,
    wavelet_conv1d,
    wavelet_conv2d,
    wavelet_filters,
)

__all__ = [
    "backend",
    "build_info",
    "drip_step",
    "drip_step_reference",
    "dwt1d",
    "dwt2d",
    "extension_error",
    "extension_loaded",
    "has_kernel",
    "hh_simulate",
    "hh_simulate_reference",
    "idwt1d",
    "idwt2d",
    "spectral_conv1d",
    "spectral_conv1d_reference",
    "spectral_conv2d",
    "spectral_conv2d_reference",
    "wavelet_coefficient_size",
    "wavelet_conv1d",
    "wavelet_conv2d",
    "wavelet_filters",
]
