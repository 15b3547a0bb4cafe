"""The base modules: the papers' loss, batch checks, hyperparameters, optimizer, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from dtwin import AutoencoderModule, CheckpointError, EstimatorModule, OperatorModule, relative_l2
from dtwin.testing import quiet_trainer


class TinyOperator(OperatorModule):
    batch_spec = {"x": "[B, C, L]"}

    def __init__(self, channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.net = torch.nn.Conv1d(channels, 1, 1)

    def forward(self, batch):
        self.check_batch(batch)
        return self.net(batch["x"])


class TinyEstimator(EstimatorModule):
    batch_spec = {"z": "[B, D]"}

    def __init__(self, dim: int = 5, n_params: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.net = torch.nn.Linear(dim, n_params)

    def forward(self, batch):
        self.check_batch(batch)
        return self.net(batch["z"])


class TinyAutoencoder(AutoencoderModule):
    batch_spec = {"x": "[B, D]"}

    def __init__(self, dim: int = 6, latent: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.enc, self.dec = torch.nn.Linear(dim, latent), torch.nn.Linear(latent, dim)

    def encode(self, x):
        return self.enc(x)

    def decode(self, z):
        return self.dec(z)


def test_relative_l2_is_the_papers_measure():
    y = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    pred = torch.tensor([[3.0, 4.5], [1.0, 1.0]])
    per = relative_l2(pred, y, reduction="none")
    torch.testing.assert_close(per, torch.tensor([0.5 / 5.0, 1.0]))
    assert math.isclose(float(relative_l2(pred, y, reduction="sum")), 1.1, rel_tol=1e-6)
    assert math.isclose(float(relative_l2(pred, y)), 0.55, rel_tol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        relative_l2(pred, y[:, :1])
    with pytest.raises(ValueError, match="reduction"):
        relative_l2(pred, y, reduction="max")


def test_hyperparameters_of_the_whole_chain_are_saved():
    model = TinyOperator(channels=3, lr=5e-4)
    assert model.hparams.channels == 3 and model.hparams.lr == 5e-4
    assert model.hparams.loss_reduction == "sum" and model.hparams.weight_decay == 1e-4


def test_optimizer_defaults_are_the_papers():
    model = TinyOperator()
    config = model.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert (
        isinstance(opt, torch.optim.AdamW)
        and opt.defaults["lr"] == 1e-3
        and opt.defaults["weight_decay"] == 1e-4
    )
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert sched.factor == 0.95 and sched.patience == 10 and sched.min_lrs == [2e-4]


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({"y": torch.zeros(2, 1, 4)}, "no 'x'"),
        ({"x": torch.zeros(2, 4), "y": torch.zeros(2, 1, 4)}, r"'x'.*\[B, C, L\]"),
        ({"x": torch.zeros(2, 1, 4)}, "no target 'y'"),
        ([1, 2], "dict"),
    ],
)
def test_bad_batches_name_the_problem(batch, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TinyOperator().training_step(batch, 0)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="lr"):
        TinyOperator(lr=0)
    with pytest.raises(ValueError, match="loss_reduction"):
        TinyOperator(loss_reduction="max")


@pytest.mark.parametrize(
    ("model", "batch", "metric"),
    [
        (TinyOperator(), {"x": torch.randn(8, 1, 5), "y": torch.randn(8, 1, 5)}, "rel_l2"),
        (TinyEstimator(), {"z": torch.randn(8, 5), "theta": torch.randn(8, 2)}, "param_mse"),
        (TinyAutoencoder(), {"x": torch.randn(8, 6)}, "mse"),
    ],
)
def test_each_kind_trains_and_logs_its_metric(model, batch, metric, tmp_path):
    loader = torch.utils.data.DataLoader([batch] * 3, batch_size=None)
    trainer = quiet_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, loader, loader)
    assert f"val/{metric}" in trainer.callback_metrics and "train/loss_epoch" in trainer.callback_metrics
    result = trainer.test(model, loader, verbose=False)[0]
    assert math.isfinite(result[f"test/{metric}"])


def test_loading_another_plugins_checkpoint_is_refused(tmp_path):
    model = TinyOperator()
    trainer = quiet_trainer(tmp_path, max_steps=1)
    batch = {"x": torch.randn(2, 1, 5), "y": torch.randn(2, 1, 5)}
    trainer.fit(model, torch.utils.data.DataLoader([batch], batch_size=None))
    path = tmp_path / "op.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"TinyOperator.*cannot be loaded into TinyEstimator"):
        TinyEstimator.load_from_checkpoint(path, weights_only=True)
