"""The SMCAE plugin: architecture, loss terms, greedy-then-end-to-end schedule under a Trainer,
learning a synthetic-to-real map on a toy domain gap, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from dtwin import registry
from dtwin.data.digits import PairedDigits
from dtwin.testing import quiet_trainer
from dtwin_autoencoders.smcae import SMCAE, kl_sparsity


def toy_domains(n_per_class: int = 40, d: int = 16, classes: int = 3, seed: int = 0):
    """Real samples: class prototypes + noise; synthetic: the inverted prototypes + noise (a gap
    that no per-feature shift closes)."""
    g = torch.Generator().manual_seed(seed)
    protos = 0.1 + 0.8 * torch.rand(classes, d, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    real = (protos[labels] + 0.03 * torch.randn(len(labels), d, generator=g)).clamp(0, 1)
    syn = (1 - protos[labels] + 0.03 * torch.randn(len(labels), d, generator=g)).clamp(0, 1)
    return syn, real, labels, protos


def test_registered_and_the_papers_stack():
    assert registry.load("autoencoders", "smcae") is SMCAE
    model = SMCAE()
    assert [(e.in_features, e.out_features) for e in model.encoders] == [(64, 1000), (1000, 500), (500, 1000)]
    for decoders in (model.decoders_syn, model.decoders_real):
        assert [(d.in_features, d.out_features) for d in decoders] == [(1000, 64), (500, 1000), (1000, 64)]
    assert model.transform(torch.rand(5, 64)).shape == (5, 64)
    assert model.encode(torch.rand(5, 64)).shape == (5, 1000)


def test_kl_sparsity():
    rho = 0.1
    assert kl_sparsity(torch.full((8, 4), rho), rho).item() == pytest.approx(0.0, abs=1e-6)
    h = torch.full((8, 4), 0.5)
    expected = 4 * (rho * math.log(rho / 0.5) + (1 - rho) * math.log((1 - rho) / 0.5))
    assert kl_sparsity(h, rho).item() == pytest.approx(expected, rel=1e-5)


def test_loss_is_two_channels_plus_the_balance_term():
    torch.manual_seed(0)
    model = SMCAE(input_size=6, hidden=[5], beta=0.5, weight_penalty=1e-2, balance=2.0).double()
    x, real = torch.rand(4, 6, dtype=torch.float64), torch.rand(4, 6, dtype=torch.float64)
    enc, ds, dr = model.encoders[0], model.decoders_syn[0], model.decoders_real[0]

    def channel(inp, dec):
        h = torch.sigmoid(enc(inp))
        err = 0.5 * (torch.sigmoid(dec(h)) - real).pow(2).sum(1).mean()
        return err + 0.5 * kl_sparsity(h, 0.1) + 0.5e-2 * (enc.weight.pow(2).sum() + dec.weight.pow(2).sum())

    ls, lr = channel(x, ds), channel(real, dr)
    expected = ls + lr + 0.5 * 2.0 * (ls - lr) ** 2
    torch.testing.assert_close(model.smcae_loss({"x": x, "real": real}, 0), expected)
    # end to end, the sparsity term is dropped unless asked for
    e2e = model.smcae_loss({"x": x, "real": real}, -1)
    model.hparams.finetune_sparsity = True
    assert model.smcae_loss({"x": x, "real": real}, -1) > e2e


def _fit(model, syn, real, labels, epochs):
    loader = DataLoader(PairedDigits(syn, labels, real, labels), batch_size=20, shuffle=True)
    quiet_trainer(max_epochs=epochs).fit(model, loader)


def test_greedy_phases_train_one_layer_at_a_time():
    torch.manual_seed(0)
    syn, real, labels, _ = toy_domains(10)
    model = SMCAE(input_size=16, hidden=[12, 8, 12], layer_epochs=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _fit(model, syn, real, labels, epochs=1)  # the first layer's phase only
    changed = {k.rsplit(".", 1)[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"encoders.0", "decoders_syn.0", "decoders_real.0"}
    assert all(p.requires_grad for p in model.parameters())  # restored after training


def test_learns_to_map_synthetic_samples_to_their_real_class():
    torch.manual_seed(0)
    syn, real, labels, protos = toy_domains()
    model = SMCAE(input_size=16, hidden=[32, 16, 32], layer_epochs=15, lr=1e-2)
    _fit(model, syn, real, labels, epochs=90)
    with torch.no_grad():
        mapped = model.transform(syn)
    nearest = torch.cdist(mapped, protos).argmin(1)
    assert (nearest == labels).float().mean() > 0.95
    gap_before = (syn - protos[labels]).norm(dim=1).mean()
    gap_after = (mapped - protos[labels]).norm(dim=1).mean()
    assert gap_after < 0.2 * gap_before


def test_bad_input():
    model = SMCAE(input_size=16, hidden=[8])
    with pytest.raises(ValueError, match=r"batch\['real'\] has 12 features, expected input_size = 16"):
        model.training_step({"x": torch.rand(4, 16), "real": torch.rand(4, 12)}, 0)
    with pytest.raises(ValueError, match=r"x_syn must be Tensor\[N, 16\], got \(4, 9\)"):
        model.transform(torch.rand(4, 9))
    with pytest.raises(ValueError, match="sparsity must be in"):
        SMCAE(sparsity=1.5)
    with pytest.raises(ValueError, match="every hidden size must be >= 1"):
        SMCAE(hidden=[])
    with pytest.raises(ValueError, match="must be >= 0"):
        SMCAE(layer_epochs=-1)
