"""The WNO plugin: defaults, shapes, configuration errors, learning an operator."""

from __future__ import annotations

import pytest
import torch

from dtwin import registry
from dtwin_operators.wno import WNO


def test_registered_as_wno():
    assert registry.load("operators", "wno") is WNO


def test_defaults_are_the_hh_papers():
    model = WNO()
    hp = model.hparams
    assert (hp.width, hp.n_layers, hp.level, hp.wavelet, hp.activation, hp.projection_channels) == (
        64,
        5,
        3,
        "db24",
        "gelu",
        128,
    )
    assert (hp.mode, hp.size, hp.in_channels, hp.out_channels) == ("symmetric", 500, 2, 1)
    assert (hp.lr, hp.weight_decay, hp.lr_factor, hp.lr_patience, hp.lr_min) == (1e-3, 1e-4, 0.95, 10, 2e-4)
    assert model({"x": torch.randn(2, 2, 500)}).shape == (2, 1, 500)


def test_2d_and_padding():
    model = WNO(
        in_channels=3, out_channels=2, size=[24, 20], width=4, level=2, wavelet="db2", dim=2, padding=3
    )
    assert model({"x": torch.randn(2, 3, 24, 20)}).shape == (2, 2, 24, 20)
    assert model.net.kernels[0].size == (27, 23)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dim=3), "dim"),
        (dict(activation="swish"), "activation"),
        (dict(size=[500, 500]), "size"),
        (dict(width=0), "width"),
        (dict(padding=-1), "padding"),
        (dict(level=4), "level"),
        (dict(wavelet="bior2.2"), "orthogonal"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WNO(**kwargs)


def test_wrong_grid_and_channels_named():
    model = WNO(size=64, width=4, level=1, wavelet="db4", n_layers=1)
    with pytest.raises(ValueError, match=r"size=\[64\]"):
        model({"x": torch.randn(2, 2, 128)})
    with pytest.raises(ValueError, match="in_channels=2"):
        model({"x": torch.randn(2, 3, 64)})


def test_learns_a_smoothing_operator():
    """A small WNO fits a local smoothing operator (symmetric boundaries) on a held-out batch."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def task(n):
        x = torch.cumsum(torch.randn(n, 1, 64, generator=g), -1) / 8  # rough random walks
        kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]).view(1, 1, 5) / 16
        y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (2, 2), mode="replicate"), kernel)
        return x, y

    model = WNO(in_channels=1, size=64, width=16, level=2, wavelet="db4", n_layers=2, projection_channels=32)
    x, y = task(64)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = model.loss(model({"x": x}), y)
        loss.backward()
        opt.step()
    x_test, y_test = task(32)
    with torch.no_grad():
        err = float(model.per_sample_error(model({"x": x_test}), y_test).mean())
    assert err < 0.05, err
