"""dtwin.nn.ChannelLinear: a 1x1 convolution computed as a batched matrix product."""

from __future__ import annotations

import pytest
import torch

from dtwin.nn import ChannelLinear


@pytest.mark.parametrize("grid", [(17,), (5, 6)])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_a_1x1_convolution(grid, bias):
    layer = ChannelLinear(3, 4, bias=bias)
    conv = (torch.nn.Conv1d if len(grid) == 1 else torch.nn.Conv2d)(3, 4, 1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(layer.weight.view(4, 3, *([1] * len(grid))))
        if bias:
            conv.bias.copy_(layer.bias)
    x = torch.randn(2, 3, *grid, requires_grad=True)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-6)
    g = torch.randn(2, 4, *grid)
    gx = torch.autograd.grad(layer(x), x, g)[0]
    torch.testing.assert_close(gx, torch.autograd.grad(conv(x), x, g)[0], rtol=1e-5, atol=1e-6)


def test_gradcheck():
    layer = ChannelLinear(3, 2).double()
    x = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_bad_input():
    with pytest.raises(ValueError, match=r"x must be \[B, 3, \*grid\]"):
        ChannelLinear(3, 2)(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="channels"):
        ChannelLinear(0, 2)
