"""Base LightningModules, one per plugin kind: what every dtwin model shares.

A plugin subclasses one of them, implements ``forward(batch)`` and ``example_batch()``, and
declares the batch keys it reads in ``batch_spec``; the base supplies the papers' losses and
metrics, train/val/test logging, AdamW with ReduceLROnPlateau (the operator papers' optimizer),
saved hyperparameters, and a record in each checkpoint of the plugin that wrote it, so that
:func:`dtwin.registry.load_checkpoint` can rebuild it by name (with ``weights_only=True``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import lightning as L
import torch
import torchmetrics
from torch import Tensor

from dtwin import registry
from dtwin.errors import CheckpointError
from dtwin.models.losses import relative_l2

__all__ = ["AutoencoderModule", "DtwinModule", "EstimatorModule", "OperatorModule"]


class DtwinModule(L.LightningModule):
    """Shared machinery; subclass one of the three kinds below, not this class.

    Args:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_factor, lr_patience, lr_min: ReduceLROnPlateau on the epoch's training loss.
    """

    #: input key read by forward -> the shape it must have, e.g. {"x": "[B, C, L]"}; ranks and
    #: batch sizes are checked before every step (the target is checked against the output).
    batch_spec: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_factor: float = 0.95,
        lr_patience: int = 10,
        lr_min: float = 2e-4,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        if not 0 < lr_factor < 1:
            raise ValueError(f"{type(self).__name__}: lr_factor must be in (0, 1), got {lr_factor}")
        # collects the arguments of every __init__ in the chain, the plugin's included
        self.save_hyperparameters()

    # ---- contract for plugins -------------------------------------------------------------

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(batch)")

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        """A small valid batch for this model with its default hyperparameters (the conformance
        kit trains a step on it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement example_batch(batch_size)")

    def check_batch(self, batch: dict[str, Any]) -> None:
        """Raise a ValueError naming the key when the batch lacks what ``batch_spec`` promises."""
        if not isinstance(batch, dict):
            raise TypeError(
                f"{type(self).__name__}: a batch is a dict of tensors with keys {sorted(self.batch_spec)}, "
                f"got {type(batch).__name__}"
            )
        size = None
        for key, shape in self.batch_spec.items():
            if key not in batch:
                raise ValueError(
                    f"{type(self).__name__}: batch has no {key!r} (expected Tensor{shape}); "
                    f"it has {sorted(batch)}"
                )
            x = batch[key]
            rank = len(shape.strip("[]").split(","))
            if not isinstance(x, Tensor) or x.dim() != rank:
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{type(self).__name__}: batch[{key!r}] must be a Tensor{shape}, got {got}")
            if shape.startswith("[B"):
                if size is not None and x.shape[0] != size:
                    raise ValueError(
                        f"{type(self).__name__}: batch[{key!r}] has {x.shape[0]} samples, "
                        f"other keys have {size}"
                    )
                size = x.shape[0]

    # ---- Lightning hooks ------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = list(self.parameters())
        # the fused AdamW kernel (one pass over every tensor) is 15-20% faster per step for MLP
        # models on the CPU; it takes real floating parameters only (spectral weights are complex)
        fused = bool(params) and all(p.is_floating_point() for p in params)
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, fused=fused or None)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=hp.lr_factor, patience=hp.lr_patience, min_lr=hp.lr_min
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "train/loss_epoch", "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dtwin_plugin"] = registry.plugin_record(self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _check_writer(type(self), checkpoint)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's loader, after checking that this class wrote the checkpoint (before its
        hyperparameters are fed to the wrong __init__)."""
        if isinstance(checkpoint_path, (str, os.PathLike)):
            _check_writer(cls, torch.load(checkpoint_path, map_location="cpu", weights_only=True))
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _check_writer(cls: type, checkpoint: dict[str, Any]) -> None:
    """Raise CheckpointError when the checkpoint records another plugin as its writer."""
    record = checkpoint.get("dtwin_plugin") if isinstance(checkpoint, dict) else None
    mine = f"{cls.__module__}.{cls.__qualname__}"
    if record is not None and record.get("class_path") != mine:
        by = record.get("name") or record.get("class_path")
        raise CheckpointError(
            f"this checkpoint was written by plugin {by!r} ({record.get('class_path')}); it cannot be loaded "
            f"into {cls.__name__} ({mine}). Load it with the plugin that wrote it."
        )


class _SupervisedModule(DtwinModule):
    """Training loop of the three kinds: loss on (forward(batch), batch[target_key]), a metric
    averaged over samples, logged per stage as '{stage}/loss' and '{stage}/{metric_name}'."""

    target_key: ClassVar[str] = "y"
    metric_name: ClassVar[str] = "error"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # per stage: the mean loss and the mean per-sample error of the epoch, synchronised
        # across processes by torchmetrics at epoch end (ModuleDict keys cannot shadow
        # nn.Module attributes such as train(), hence the suffixes)
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{what}": torchmetrics.MeanMetric()
                for stage in ("train", "val", "test")
                for what in ("loss", "error")
            }
        )

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def per_sample_error(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        self.check_batch(batch)
        if self.target_key not in batch:
            raise ValueError(
                f"{type(self).__name__}: batch has no target {self.target_key!r}; it has {sorted(batch)}"
            )
        target = batch[self.target_key]
        pred = self(batch)
        if pred.shape != target.shape:
            raise ValueError(
                f"{type(self).__name__}: forward returned {tuple(pred.shape)} but "
                f"batch[{self.target_key!r}] is {tuple(target.shape)}"
            )
        loss = self.loss(pred, target)
        n = target.shape[0]
        self.on_prediction(pred.detach(), batch, stage)
        error = self.metrics[f"{stage}_error"]
        error.update(self.per_sample_error(pred.detach(), target))
        if stage == "train":
            self.log_train_loss(loss, n)
        else:
            mean_loss = self.metrics[f"{stage}_loss"]
            mean_loss.update(loss.detach(), weight=n)
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log(
            f"{stage}/{self.metric_name}",
            error,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "train",
            batch_size=n,
        )
        return loss

    def on_prediction(self, pred: Tensor, batch: dict[str, Tensor], stage: str) -> None:
        """Called by every train/val/test step with the (detached) prediction and its batch: a
        plugin logs its own metrics here ('train', 'val' or 'test' in ``stage``) without running
        ``forward`` again. Does nothing by default."""

    def log_train_loss(self, loss: Tensor, batch_size: int) -> None:
        """Log a training loss: 'train/loss' per step and its epoch mean 'train/loss_epoch' (the
        learning-rate schedule's monitor). A plugin with its own ``training_step`` calls this."""
        mean_loss = self.metrics["train_loss"]
        mean_loss.update(loss.detach(), weight=batch_size)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size)
        self.log("train/loss_epoch", mean_loss, on_step=False, on_epoch=True, batch_size=batch_size)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.check_batch(batch)
        return self(batch)


class OperatorModule(_SupervisedModule):
    """A neural operator: input functions (batch keys in ``batch_spec``) -> output function
    ``batch['y']``. Loss: per-sample relative L2 summed over the batch (``loss_reduction``),
    the papers' choice; metric ``rel_l2``: its mean over samples.
    """

    metric_name = "rel_l2"

    def __init__(self, *, loss_reduction: str = "sum", **kwargs: Any) -> None:
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(
                f"{type(self).__name__}: loss_reduction must be 'sum' or 'mean', got {loss_reduction!r}"
            )
        super().__init__(**kwargs)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return relative_l2(pred, target, reduction=self.hparams.loss_reduction)

    def per_sample_error(self, pred: Tensor, target: Tensor) -> Tensor:
        return relative_l2(pred, target, reduction="none")


class EstimatorModule(_SupervisedModule):
    """A parameter estimator: data records -> parameters ``batch['theta']`` (Tensor[B, P]).
    Loss and metric ``param_mse``: mean squared parameter error."""

    target_key = "theta"
    metric_name = "param_mse"

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return torch.nn.functional.mse_loss(pred, target)

    def per_sample_error(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).pow(2).flatten(1).mean(1)


class AutoencoderModule(_SupervisedModule):
    """An autoencoder: ``batch['x']`` -> latent (``encode``) -> reconstruction (``decode``).
    Loss and metric ``mse``: mean squared reconstruction error."""

    target_key = "x"
    metric_name = "mse"

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement encode(x)")

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement decode(z)")

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.decode(self.encode(batch["x"]))

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return torch.nn.functional.mse_loss(pred, target)

    def per_sample_error(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).pow(2).flatten(1).mean(1)
