"""Base LightningModules for the plugin kinds, with the losses and metrics they share."""

from dtwin.models.base import AutoencoderModule, DtwinModule, EstimatorModule, OperatorModule
from dtwin.models.losses import relative_l2

__all__ = ["AutoencoderModule", "DtwinModule", "EstimatorModule", "OperatorModule", "relative_l2"]
