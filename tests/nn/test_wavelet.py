"""dtwin.nn.WaveletConv1d / WaveletConv2d and the shared IntegralOperatorNet trunk."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dtwin.nn import IntegralOperatorNet, WaveletConv1d, WaveletConv2d
from dtwin.ops import wavelet_coefficient_size, wavelet_filters
from dtwin.ops.wavelet import wavelet_conv1d_reference, wavelet_conv2d_reference


def test_wavelet_conv1d_module():
    layer = WaveletConv1d(4, 6, size=500)  # the HH grid, db24, level 3
    m = wavelet_coefficient_size(500, "db24", 3)
    assert m == 103 and layer.weight.shape == (2, 4, 6, m)
    # the WNO reference code's initialisation
    assert 0 <= float(layer.weight.min()) and float(layer.weight.max()) <= 1 / 24
    x = torch.randn(3, 4, 500)
    expected = wavelet_conv1d_reference(x, layer.weight, wavelet_filters("db24", x.dtype), 3, "symmetric")
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-5)
    assert "wavelet='db24'" in repr(layer)


def test_wavelet_conv2d_module():
    layer = WaveletConv2d(2, 3, size=(20, 24), level=2, wavelet="db2", mode="periodization")
    assert layer.weight.shape == (4, 2, 3, 5, 6)
    x = torch.randn(2, 2, 20, 24)
    expected = wavelet_conv2d_reference(x, layer.weight, wavelet_filters("db2", x.dtype), 2, "periodization")
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-5)


def test_float64_input_runs_in_float64():
    layer = WaveletConv1d(2, 2, size=64, level=2, wavelet="db4").double()
    assert layer(torch.randn(1, 2, 64, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: WaveletConv1d(2, 2, size=100, level=4, wavelet="db4"), r"level must be an int in \[1, 3\]"),
        (lambda: WaveletConv1d(2, 2, size=100, wavelet="morlet"), "unknown wavelet"),
        (lambda: WaveletConv1d(2, 2, size=100, level=1, mode="zero"), "mode must be"),
        (lambda: WaveletConv1d(0, 2, size=100, level=1), "channels"),
        (lambda: WaveletConv2d(2, 2, size=(16,), level=1), "size must be 2"),
    ],
)
def test_bad_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_wrong_grid_is_named():
    layer = WaveletConv1d(2, 2, size=64, level=2, wavelet="db4")
    with pytest.raises(ValueError, match=r"x must be \[B, 2, 64\]"):
        layer(torch.randn(1, 2, 80))


def test_integral_operator_net():
    net = IntegralOperatorNet(
        [nn.Identity(), nn.Identity()], in_channels=3, out_channels=2, width=5, padding=4, activation="tanh"
    )
    assert net(torch.randn(2, 3, 17)).shape == (2, 2, 17)
    net2d = IntegralOperatorNet([nn.Identity()], 3, 1, 4, dim=2, padding=2, projection_channels=8)
    assert net2d(torch.randn(2, 3, 9, 7)).shape == (2, 1, 9, 7)
    with pytest.raises(ValueError, match="activation must be one of"):
        IntegralOperatorNet([nn.Identity()], 1, 1, 4, activation="swish")
    with pytest.raises(ValueError, match="at least one"):
        IntegralOperatorNet([], 1, 1, 4)
