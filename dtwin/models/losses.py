"""Losses and metrics shared by dtwin's models."""

from __future__ import annotations

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
