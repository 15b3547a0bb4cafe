"""dtwin.nn.SpectralConv1d / SpectralConv2d."""

from __future__ import annotations

import math

import pytest
import torch

from dtwin.nn import SpectralConv1d, SpectralConv2d
from dtwin.ops import spectral_conv1d_reference, spectral_conv2d_reference


def test_spectral_conv1d_module():
    layer = SpectralConv1d(4, 6, modes=5)
    assert layer.weight.shape == (4, 6, 5) and layer.weight.dtype == torch.complex64
    x = torch.randn(3, 4, 20)
    torch.testing.assert_close(layer(x), spectral_conv1d_reference(x, layer.weight), rtol=1e-4, atol=1e-5)
    assert layer(x, out_len=40).shape == (3, 6, 40)
    assert "modes=5" in repr(layer)


def test_spectral_conv2d_module():
    layer = SpectralConv2d(2, 3, modes=(3, 4))
    assert layer.weight.shape == (2, 3, 6, 4)
    x = torch.randn(2, 2, 12, 10)
    torch.testing.assert_close(layer(x), spectral_conv2d_reference(x, layer.weight), rtol=1e-4, atol=1e-5)
    assert layer(x, out_shape=(24, 20)).shape == (2, 3, 24, 20)


def test_initial_scale():
    torch.manual_seed(0)
    layer = SpectralConv1d(64, 64, modes=32)
    assert math.isclose(float(layer.weight.abs().pow(2).mean()), 2 / 128, rel_tol=0.05)


@pytest.mark.parametrize("args", [(0, 2, 3), (2, 2, 0)])
def test_bad_construction(args):
    with pytest.raises(ValueError, match="SpectralConv1d"):
        SpectralConv1d(*args)
    with pytest.raises(ValueError, match="SpectralConv2d"):
        SpectralConv2d(2, 2, modes=(3,))
