"""Base LightningModules for the plugin kinds, with the losses and metrics they share."""

from dtwin.models.base import AutoencoderModule, DtwinModule, EstimatorModule, OperatorModule
from dtwin.models.losses import psnr, relative_l2, ssim

__all__ = [
    "AutoencoderModule",
    "DtwinModule",
    "EstimatorModule",
    "OperatorModule",
    "psnr",
    "relative_l2",
    "ssim",
]
