"""The FNO plugin: shapes, configuration errors, learning an operator, zero-shot super-resolution."""

from __future__ import annotations

import math

import pytest
import torch

from dtwin import registry
from dtwin_operators.fno import FNO


def test_registered_as_fno():
    assert registry.load("operators", "fno") is FNO


def test_defaults_are_the_hh_papers():
    model = FNO()
    hp = model.hparams
    assert (hp.width, hp.modes, hp.n_layers, hp.padding, hp.activation) == (32, 16, 3, 10, "relu")
    assert (hp.lr, hp.weight_decay, hp.lr_factor, hp.lr_patience, hp.lr_min) == (1e-3, 1e-4, 0.95, 10, 2e-4)
    out = model({"x": torch.randn(2, 2, 500)})
    assert out.shape == (2, 1, 500)


def test_2d():
    model = FNO(in_channels=3, out_channels=2, width=8, modes=[4, 5], dim=2, padding=3)
    assert model({"x": torch.randn(2, 3, 20, 18)}).shape == (2, 2, 20, 18)
    assert FNO(dim=2, modes=6, width=4)({"x": torch.randn(1, 2, 16, 16)}).shape == (1, 1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dim=3), "dim"),
        (dict(activation="swish"), "activation"),
        (dict(modes=[4, 4]), "modes"),
        (dict(width=0), "width"),
        (dict(padding=-1), "padding"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FNO(**kwargs)


def test_wrong_channels_named():
    with pytest.raises(ValueError, match="in_channels=2"):
        FNO()({"x": torch.randn(2, 3, 64)})


def _smoothing_task(n, L, generator):
    """Periodic inputs and their convolution with a Gaussian: an operator an FNO can represent."""
    x = torch.randn(n, 1, L, generator=generator)
    k = torch.fft.rfftfreq(L, d=1.0 / L)
    y = torch.fft.irfft(torch.fft.rfft(x) * torch.exp(-0.5 * (k / 3.0) ** 2), n=L)
    return x, y


def test_learns_an_operator_and_transfers_to_a_finer_grid():
    """Trained at 64 points, an FNO is evaluated at 128: the error stays small (zero-shot
    super-resolution, resolution independence of the spectral layers)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = FNO(
        in_channels=1, width=16, modes=12, n_layers=2, padding=0, projection_channels=32, activation="gelu"
    )
    x, y = _smoothing_task(64, 64, g)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = model.loss(model({"x": x}), y)
        loss.backward()
        opt.step()
    x_test, y_test = _smoothing_task(32, 64, g)
    x_fine, y_fine = _smoothing_task(32, 128, g)
    with torch.no_grad():
        err = float(model.per_sample_error(model({"x": x_test}), y_test).mean())
        err_fine = float(model.per_sample_error(model({"x": x_fine}), y_fine).mean())
    assert err < 0.05, err
    assert err_fine < 0.1, err_fine
    assert math.isfinite(err_fine)
