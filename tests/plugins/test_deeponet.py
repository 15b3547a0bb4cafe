"""The DeepONet plugin: defaults, the Cartesian-product evaluation, adaptive activations, the
current-sampled branch, configuration errors, learning a parametric family."""

from __future__ import annotations

import pytest
import torch

from dtwin import registry
from dtwin_operators.deeponet import AdaptiveActivation, DeepONet


def test_registered_as_deeponet():
    assert registry.load("operators", "deeponet") is DeepONet


def test_defaults_are_the_hh_papers():
    model = DeepONet()
    hp = model.hparams
    assert (hp.branch_in, hp.latent, hp.activation, hp.layer_norm, hp.adaptive_activation) == (
        3,
        700,
        "tanh",
        True,
        True,
    )
    widths = (
        [lin.out_features for lin in model.branch.linears],
        [lin.out_features for lin in model.trunk.linears],
    )
    assert widths == ([700] * 5, [700] * 4)
    assert (hp.lr, hp.weight_decay) == (1e-3, 1e-4)
    batch = {"branch": torch.rand(4, 3), "t": torch.linspace(0, 1, 500).expand(4, 500)}
    assert model(batch).shape == (4, 1, 500)


def test_one_trunk_pass_equals_per_sample_evaluation():
    torch.manual_seed(0)
    model = DeepONet(branch_hidden=[16, 16], trunk_hidden=[16], latent=8).double()
    u = torch.rand(3, 3, dtype=torch.float64)
    t = torch.linspace(0, 1, 20, dtype=torch.float64)
    shared = model({"branch": u, "t": t.expand(3, 20)})
    # per-sample grids (here equal values, but not recognised as one grid): the N x T path
    jitter = torch.zeros(3, 20, dtype=torch.float64)
    jitter[1, 0] = 1e-300  # differs from row 0, evaluates every row on its own
    separate = model({"branch": u, "t": t + jitter})
    torch.testing.assert_close(shared, separate, rtol=1e-12, atol=1e-12)


def test_adaptive_activation_starts_as_the_plain_one():
    act = AdaptiveActivation(torch.nn.Tanh(), 5)
    z = torch.randn(7, 5)
    torch.testing.assert_close(act(z), torch.tanh(z))
    assert act.slope.requires_grad


def test_current_branch_reads_the_sampled_current():
    model = DeepONet(branch_input="current", branch_in=40, branch_hidden=[8], trunk_hidden=[8], latent=4)
    batch = {"x": torch.randn(2, 2, 40), "t": torch.linspace(0, 1, 40).expand(2, 40)}
    assert model(batch).shape == (2, 1, 40)
    with pytest.raises(ValueError, match=r"must be \[B, 40\] \(branch_in\)"):
        model({"x": torch.randn(2, 2, 30), "t": torch.linspace(0, 1, 30).expand(2, 30)})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(branch_input="pulses"), "branch_input"),
        (dict(latent=0), "latent"),
        (dict(branch_hidden=[]), "branch_hidden"),
        (dict(trunk_hidden=[8, 0]), "trunk_hidden"),
        (dict(activation="swish"), "activation"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepONet(**kwargs)


def test_missing_key_named():
    with pytest.raises(ValueError, match="branch"):
        DeepONet(branch_hidden=[4], trunk_hidden=[4], latent=4)({"t": torch.linspace(0, 1, 5)})


def test_learns_a_parametric_family():
    """y(t) = 2 + a sin(2 pi f t + p) from (a, f, p): a small DeepONet fits held-out members."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 64)

    def family(n):
        u = torch.rand(n, 3, generator=g) + torch.tensor([1.0, 0.5, 0.0])
        y = 2 + u[:, :1] * torch.sin(2 * torch.pi * u[:, 1:2] * t + u[:, 2:3])
        return {"branch": u, "t": t.expand(n, 64), "y": y[:, None, :]}

    model = DeepONet(branch_hidden=[64, 64], trunk_hidden=[64, 64], latent=32)
    train = family(256)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(900):
        opt.zero_grad()
        loss = model.loss(model(train), train["y"])
        loss.backward()
        opt.step()
    test = family(64)
    with torch.no_grad():
        err = float(model.per_sample_error(model(test), test["y"]).mean())
    assert err < 0.05, err
