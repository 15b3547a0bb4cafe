"""The shared base of dtwin's image-reconstruction estimators (DRIP and its learned baselines):
recover images x Tensor[B, 1, H, W] from measurements y = A x + noise through one of the imaging
twins of :mod:`dtwin.sim.imaging` (blur, inpainting, tomography).

A :class:`ReconstructionModule` owns its forward operator, built from its hyperparameters
(``operator``, ``operator_args``, ``image_size``) with :func:`dtwin.sim.imaging.make_operator`, so a
checkpoint rebuilds the same operator (the inpainting mask is drawn from its seed). When it trains
on a data module that carries an operator too (``image_patches``), the two must be the same: the
check at ``setup`` names what differs.

Batches (the ``image_patches`` data module's samples): 'y' Tensor[B, *A.out_shape], the data;
'sigma' Tensor[B], the noise std per sample (sigma = noise * mean |A x|); 'x' Tensor[B, 1, H, W],
the truth (the target). Loss: the mean squared error; metric ``psnr`` (dB, peak 1: images in
[0, 1]; higher is better); validation and test also log ``ssim`` and ``fits_data``: the fraction
of samples whose misfit ||A x_hat - y|| is at most ``tau`` sigma sqrt(M) (the discrepancy bound,
M = the measurements per sample).
"""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics
from torch import Tensor

from dtwin import EstimatorModule
from dtwin.models.losses import psnr, ssim
from dtwin.sim.imaging import OPERATORS, LinearOperator, add_noise, make_operator

__all__ = ["ReconstructionModule", "misfit_ratio"]


def misfit_ratio(A: LinearOperator, x_hat: Tensor, y: Tensor, sigma: Tensor) -> Tensor:
    """||A x_hat - y|| / (sigma sqrt(M)) per sample: Tensor[B]; 1 is the noise level (a sample fits
    the data under the discrepancy principle when this is at most tau)."""
    M = y[0].numel()
    misfit = (A(x_hat.to(y.dtype)) - y).flatten(1).norm(dim=1)
    return misfit / (sigma.to(misfit.dtype).clamp_min(1e-30) * M**0.5)


class ReconstructionModule(EstimatorModule):
    """Base of the image-reconstruction estimators: data y (and its noise level sigma) -> image x.

    Subclasses implement :meth:`reconstruct`. Args (besides those of ``EstimatorModule``):

    Args:
        operator: the forward operator A: 'blur', 'inpainting' or 'tomography'.
        operator_args: keyword arguments of its class (e.g. ``{'sigma': 2.0}``, ``{'observed':
            0.11, 'seed': 0}``, ``{'n_angles': 18}``); must equal the data module's.
        image_size: P, the images are P x P.
        tau: the discrepancy factor of the ``fits_data`` metric (the DRIP authors: about 1.2).
    """

    target_key = "x"
    metric_name = "psnr"
    batch_spec = {"y": "[B, *operator.out_shape]", "sigma": "[B]"}

    def __init__(
        self,
        *,
        operator: str = "blur",
        operator_args: dict[str, Any] | None = None,
        image_size: int = 32,
        tau: float = 1.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        if operator not in OPERATORS:
            raise ValueError(f"{owner}: operator must be one of {sorted(OPERATORS)}, got {operator!r}")
        if operator_args is not None and not isinstance(operator_args, dict):
            raise ValueError(
                f"{owner}: operator_args must be a dict of keyword arguments or None, "
                f"got {type(operator_args).__name__}"
            )
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 4:
            raise ValueError(f"{owner}: image_size must be an integer >= 4 (pixels), got {image_size!r}")
        if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not tau > 0:
            raise ValueError(f"{owner}: tau must be a number > 0, got {tau!r}")
        try:
            A = make_operator(operator, (image_size, image_size), **(operator_args or {}))
        except TypeError as err:
            raise ValueError(
                f"{owner}: operator_args {operator_args} do not fit the operator {operator!r}: {err}"
            ) from err
        self.operator: LinearOperator = A
        self.extra_metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{what}": torchmetrics.MeanMetric()
                for stage in ("val", "test")
                for what in ("ssim", "fits_data")
            }
        )

    # ---- contract ----------------------------------------------------------------------------

    def reconstruct(self, y: Tensor, sigma: Tensor) -> Tensor:
        """Data Tensor[B, *A.out_shape] and noise std Tensor[B] -> images Tensor[B, 1, P, P]."""
        raise NotImplementedError(f"{type(self).__name__} must implement reconstruct(y, sigma)")

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.reconstruct(batch["y"], batch["sigma"])

    # ---- checks --------------------------------------------------------------------------------

    def check_batch(self, batch: dict[str, Any]) -> None:
        owner = type(self).__name__
        if not isinstance(batch, dict):
            got = type(batch).__name__
            raise TypeError(f"{owner}: a batch is a dict of tensors with keys ['sigma', 'y'], got {got}")
        shapes = {"y": self.operator.out_shape, "sigma": ()}
        size = None
        for key, shape in shapes.items():
            want = f"Tensor[B{''.join(f', {n}' for n in shape)}]"
            if key not in batch:
                raise ValueError(f"{owner}: batch has no {key!r} (expected {want}); it has {sorted(batch)}")
            t = batch[key]
            if not isinstance(t, Tensor) or tuple(t.shape[1:]) != shape or t.dim() != len(shape) + 1:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(
                    f"{owner}: batch[{key!r}] must be {want} for the operator {self.hparams.operator!r} "
                    f"on {self.hparams.image_size} x {self.hparams.image_size} images, got {got}"
                )
            if not t.is_floating_point():
                raise ValueError(f"{owner}: batch[{key!r}] must be a float tensor, got {t.dtype}")
            if size is not None and t.shape[0] != size:
                raise ValueError(f"{owner}: batch[{key!r}] has {t.shape[0]} samples, batch['y'] has {size}")
            size = t.shape[0]
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{owner}: batch[{key!r}] contains non-finite values (NaN or inf)")
        if bool((batch["sigma"] < 0).any()):
            raise ValueError(f"{owner}: batch['sigma'] (the noise std) must be >= 0")

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        theirs = getattr(dm, "operator", None)
        if isinstance(theirs, LinearOperator):
            problem = _difference(self.operator, theirs)
            if problem:
                raise ValueError(
                    f"{type(self).__name__}: the model's operator ({self.hparams.operator}, "
                    f"{self.hparams.operator_args}, image_size {self.hparams.image_size}) is not the "
                    f"data module's ({type(theirs).__name__}: {theirs.extra_repr()}): {problem}. "
                    "Give the model the same operator, operator_args and image_size."
                )

    # ---- losses and metrics ---------------------------------------------------------------------

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return torch.nn.functional.mse_loss(pred, target)

    def per_sample_error(self, pred: Tensor, target: Tensor) -> Tensor:
        return psnr(pred.float(), target.float())

    def on_prediction(self, pred: Tensor, batch: dict[str, Tensor], stage: str) -> None:
        if stage == "train":
            return
        n = pred.shape[0]
        values = {
            "ssim": ssim(pred.float(), batch["x"].float()),
            "fits_data": (self.misfit_ratio(pred, batch) <= self.hparams.tau + 1e-6).float(),
        }
        for what, v in values.items():
            metric = self.extra_metrics[f"{stage}_{what}"]
            metric.update(v)
            self.log(f"{stage}/{what}", metric, on_step=False, on_epoch=True, batch_size=n)

    def misfit_ratio(self, x_hat: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """||A x_hat - y|| / (sigma sqrt(M)) per sample of ``batch``: Tensor[B]."""
        return misfit_ratio(self.operator, x_hat, batch["y"], batch["sigma"])

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        P = self.hparams.image_size
        coarse = torch.rand(batch_size, 1, max(2, P // 8), max(2, P // 8), generator=g)
        x = torch.nn.functional.interpolate(coarse, size=(P, P), mode="bilinear", align_corners=False)
        with torch.no_grad():
            y, sigma = add_noise(self.operator(x.double()), 0.05, generator=g)
        return {"y": y.float(), "sigma": sigma.float(), "x": x.contiguous()}


def _difference(a: LinearOperator, b: LinearOperator) -> str:
    """'' when the operators are the same map, else what differs."""
    if type(a) is not type(b):
        return f"{type(a).__name__} vs {type(b).__name__}"
    if a.in_shape != b.in_shape or a.out_shape != b.out_shape:
        return f"shapes {a.in_shape} -> {a.out_shape} vs {b.in_shape} -> {b.out_shape}"
    if a.extra_repr() != b.extra_repr():
        return f"{a.extra_repr()} vs {b.extra_repr()}"
    for (name, u), (_, v) in zip(a.named_buffers(), b.named_buffers(), strict=False):
        if u.shape != v.shape or not torch.equal(u.cpu().to(v.dtype), v.cpu()):
            return f"their {name} differ"
    return ""
