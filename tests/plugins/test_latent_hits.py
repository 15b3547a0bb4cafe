"""The L-HiTS plugin: multiscale rollout semantics on exact maps, step selection, the training
schedule (autoencoder, then maps; or joint) under a Trainer, learning a toy system, bad input."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from dtwin import registry
from dtwin.data import TensorDictDataset
from dtwin.testing import quiet_trainer
from dtwin_autoencoders.latent_hits import LatentHiTS


def exact_linear_maps(model: LatentHiTS, a: float, wrong: tuple[int, ...] = ()) -> None:
    """Make map k the exact flow of z_{n+1} = a z_n over 2^k samples (or a wrong one for k in
    ``wrong``): a single linear layer with weight (a^(2^k) - 1) I, so z + net(z) = a^(2^k) z."""
    for k, flow in zip(model.exponents, model.maps, strict=True):
        (linear,) = flow.net
        factor = a ** (2**k) if k not in wrong else 1.0
        with torch.no_grad():
            linear.weight.copy_((factor - 1) * torch.eye(linear.in_features, dtype=linear.weight.dtype))
            linear.bias.zero_()


def rotation_data(n_traj: int, length: int, d: int = 4, seed: int = 0) -> torch.Tensor:
    """Trajectories of a slowly damped rotation in the first two coordinates of R^d (the rest decay)."""
    g = torch.Generator().manual_seed(seed)
    angle, damp = 0.05, 0.999
    step = torch.zeros(d, d)
    c, s = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
    step[:2, :2] = damp * torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    if d > 2:
        step[2:, 2:] = 0.98 * torch.eye(d - 2)
    x = torch.randn(n_traj, d, generator=g)
    out = [x]
    for _ in range(length - 1):
        out.append(out[-1] @ step.T)
    return torch.stack(out, 1)


def test_registered_with_defaults_of_the_paper():
    assert registry.load("autoencoders", "latent_hits") is LatentHiTS
    model = LatentHiTS()
    assert model.exponents == list(range(11))
    assert model.encode(torch.randn(3, 120)).shape == (3, 8)
    assert model.decode(torch.randn(3, 8)).shape == (3, 120)
    full = LatentHiTS(latent_size=None)
    x = torch.randn(3, 120)
    assert torch.equal(full.encode(x), x)


@pytest.mark.parametrize("exponents", [[0, 1, 2, 3], [1, 2, 3], [3], [0, 3], [2, 3]])
def test_multiscale_rollout_matches_the_exact_flow(exponents):
    """Exact maps give the exact trajectory at every multiple of the finest step in use; between
    them the trajectory is the linear interpolation."""
    model = LatentHiTS(state_size=3, latent_size=None, map_hidden=[], step_exponents=[0, 1, 2, 3]).double()
    a = 0.97
    exact_linear_maps(model, a)
    z0 = torch.randn(5, 3, dtype=torch.float64)
    n = 32
    traj = model.rollout(z0, n, exponents)
    assert traj.shape == (5, n + 1, 3)
    truth = a ** torch.arange(n + 1, dtype=torch.float64)[None, :, None] * z0[:, None]
    finest = 2 ** min(exponents)
    torch.testing.assert_close(traj[:, ::finest], truth[:, ::finest], rtol=1e-12, atol=1e-12)
    if finest > 1:
        mid = 0.5 * (traj[:, :-finest:finest] + traj[:, finest::finest])
        torch.testing.assert_close(traj[:, finest // 2 :: finest], mid)


def test_coarse_steps_reset_the_error_of_fine_ones():
    """A biased fine map accumulates error over a sequential rollout; in the multiscale rollout
    each fine segment restarts from an exact coarse point, so the error stays bounded."""
    model = LatentHiTS(state_size=2, latent_size=None, map_hidden=[], step_exponents=[0, 4]).double()
    exact_linear_maps(model, 1.0)
    with torch.no_grad():
        model.maps[0].net[0].bias.fill_(1e-3)  # map k=0 drifts by 1e-3 per step
    z0 = torch.zeros(1, 2, dtype=torch.float64)
    sequential = model.rollout(z0, 64, [0])
    multiscale = model.rollout(z0, 64, [0, 4])
    assert sequential[0, -1, 0].item() == pytest.approx(64e-3)
    assert multiscale.abs().max().item() == pytest.approx(15e-3)  # 15 fine steps at most


def test_select_steps_picks_the_exact_range():
    model = LatentHiTS(state_size=2, latent_size=None, map_hidden=[], step_exponents=[0, 1, 2, 3, 4]).double()
    a = 0.95
    exact_linear_maps(model, a, wrong=(0, 4))
    x0 = torch.randn(4, 2, dtype=torch.float64)
    x = a ** torch.arange(33, dtype=torch.float64)[None, :, None] * x0[:, None]
    scores = model.select_steps(x)
    assert model.selected_exponents() == [1, 2, 3]
    assert scores[(1, 2, 3)] == min(scores.values())
    assert (0, 1, 2, 3, 4) in scores and scores[(0, 1, 2, 3, 4)] > scores[(1, 2, 3)]
    # windows of 8 samples: 4 rollouts per trajectory, from states along it; exponent 4 (16) skipped
    scores = model.select_steps(x, horizon=8)
    assert model.selected_exponents() == [1, 2, 3] and (0, 1, 2, 3, 4) not in scores
    with pytest.raises(ValueError, match=r"horizon must be in \[1, 32\] samples"):
        model.select_steps(x, horizon=40)


def test_separate_training_schedule_under_a_trainer():
    """Epoch 0 trains only the autoencoder, epoch 1 only the maps (the encoder frozen)."""
    x = rotation_data(8, 33)
    model = LatentHiTS(
        state_size=4, latent_size=2, ae_hidden=[8], map_hidden=[8], step_exponents=[0, 1], ae_epochs=1
    )
    loader = DataLoader(TensorDictDataset({"x": x}), batch_size=4)

    snapshots = [{n: p.detach().clone() for n, p in model.named_parameters()}]

    class Snapshot(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            snapshots.append({n: p.detach().clone() for n, p in module.named_parameters()})

    quiet_trainer(max_epochs=2, callbacks=[Snapshot()]).fit(model, loader)

    def changed(a, b):
        return {n.split(".")[0] for n in a if not torch.equal(a[n], b[n])}

    assert changed(snapshots[0], snapshots[1]) == {"encoder", "decoder"}
    assert changed(snapshots[1], snapshots[2]) == {"maps"}
    # the maps' coordinates were standardised on the encoded states when the maps started
    assert model.standardised and not torch.equal(model.scale, torch.ones(2))
    assert all(p.requires_grad for p in model.parameters())  # restored after fitting


def test_learns_a_toy_system_and_selects_steps_on_validation():
    torch.manual_seed(0)
    train, val = rotation_data(64, 65, seed=1), rotation_data(8, 65, seed=2)

    class DM(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(TensorDictDataset({"x": train}), batch_size=16, shuffle=True)

        def val_dataloader(self):
            return DataLoader(TensorDictDataset({"x": val}), batch_size=8)

    model = LatentHiTS(
        state_size=4,
        latent_size=None,
        map_hidden=[32],
        step_exponents=[0, 1, 2, 3, 4],
        windows=16,
        lr=3e-3,
        weight_decay=0.0,
    )
    with torch.no_grad():
        untrained = (model({"x": val}) - val).pow(2).mean().item()
    quiet_trainer(max_epochs=60, check_val_every_n_epoch=20).fit(model, datamodule=DM())
    with torch.no_grad():
        trained = (model({"x": val}) - val).pow(2).mean().item()
    assert trained < 0.05 * untrained, (trained, untrained)
    # the exponents in use were chosen on the validation trajectories: no contiguous range does better
    chosen = model.selected_exponents()
    assert chosen == list(range(chosen[0], chosen[-1] + 1))
    with torch.no_grad():
        every = (model.rollout(val[:, 0], 64, model.exponents) - val).pow(2).mean().item()
    assert trained <= every


def test_joint_training_moves_every_part():
    x = rotation_data(4, 17)
    model = LatentHiTS(
        state_size=4, latent_size=2, ae_hidden=[8], map_hidden=[8], step_exponents=[0, 2], joint=True
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    quiet_trainer(max_epochs=1).fit(model, DataLoader(TensorDictDataset({"x": x}), batch_size=4))
    moved = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert moved == {"encoder", "decoder", "maps"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"state_size": 4, "latent_size": 5}, "latent_size must be in [1, state_size = 4]"),
        ({"step_exponents": [0, 1, 1]}, "step_exponents must be distinct"),
        ({"step_exponents": [-1, 2]}, "step_exponents must be distinct integers >= 0"),
        ({"n_recursive": 0}, "n_recursive must be >= 1"),
        ({"activation": "swish"}, "activation must be one of"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LatentHiTS(**kwargs)


def test_bad_input():
    model = LatentHiTS(state_size=4, latent_size=2, ae_hidden=[8], map_hidden=[8], step_exponents=[0, 3])
    with pytest.raises(
        ValueError, match=r"n_steps = 12 must be a multiple of the largest step in use, 2\^3 = 8"
    ):
        model.rollout(torch.randn(2, 4), 12)
    with pytest.raises(ValueError, match=r"shorter than the largest step 2\^3 = 8"):
        model.training_step({"x": torch.randn(2, 5, 4)}, 0)
    with pytest.raises(ValueError, match=r"states of size 5, expected state_size = 4"):
        model({"x": torch.randn(2, 9, 5)})
    with pytest.raises(ValueError, match=r"x0 must be Tensor\[B, 4\]"):
        model.rollout(torch.randn(4), 8)
    with pytest.raises(ValueError, match="non-empty subset"):
        model.rollout(torch.randn(2, 4), 8, [1])
