"""Losses and metrics shared by dtwin's models."""

from __future__ import annotations

import torch
from torch import Tensor


def relative_l2(pred: Tensor, target: Tensor, reduction: str = "mean", eps: float = 1e-12) -> Tensor:
    """Per-sample relative L2 error ||pred - target|| / ||target||, norms over all but dim 0.

    The error measure of the operator-learning papers (SPECS.md section 1): their training loss
    is the sum over the batch (``reduction='sum'``), the reported figure the mean.

    Args:
        pred, target: Tensor[B, ...] of equal shapes.
        reduction: 'mean', 'sum' or 'none' (Tensor[B]).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"relative_l2: pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}"
        )
    if pred.dim() < 1:
        raise ValueError("relative_l2: tensors need a batch dimension")
    diff = (pred - target).flatten(1).norm(dim=1)
    ref = target.flatten(1).norm(dim=1).clamp_min(eps)
    err = diff / ref
    if reduction == "none":
        return err
    if reduction == "sum":
        return err.sum()
    if reduction == "mean":
        return err.mean()
    raise ValueError(f"relative_l2: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_images(name: str, pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}")
    if pred.dim() != 4:
        raise ValueError(f"{name}: images must be Tensor[B, C, H, W], got {tuple(pred.shape)}")


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0, eps: float = 1e-20) -> Tensor:
    """Peak signal-to-noise ratio per sample, 10 log10(data_range^2 / MSE) in dB: Tensor[B].

    pred, target: Tensor[B, C, H, W] (images in [0, data_range]; pred is not clipped)."""
    _check_images("psnr", pred, target)
    mse = (pred - target).flatten(1).square().mean(1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(eps))


def ssim(
    pred: Tensor, target: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5
) -> Tensor:
    """Structural similarity per sample (Wang et al. 2004): Tensor[B], the mean over channels and
    over the valid (unpadded) positions of an 11 x 11 Gaussian window of std 1.5, with
    K1 = 0.01, K2 = 0.03 (the constants of scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, use_sample_covariance=False``, which it matches to rounding).

    pred, target: Tensor[B, C, H, W] with H, W >= ``window``."""
    _check_images("ssim", pred, target)
    if min(pred.shape[-2:]) < window:
        raise ValueError(f"ssim: images must be at least {window} x {window}, got {tuple(pred.shape[-2:])}")
    C = pred.shape[1]
    r = torch.arange(window, dtype=pred.dtype, device=pred.device) - (window - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(C, 1, window, window)

    def blur(x: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(x, kernel, groups=C)

    mx, my = blur(pred), blur(target)
    vx = blur(pred * pred) - mx * mx
    vy = blur(target * target) - my * my
    cxy = blur(pred * target) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
