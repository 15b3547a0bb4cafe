"""dtwin: digital-twin scientific machine learning for PyTorch Lightning.

Fast simulators (the twins, :mod:`dtwin.sim`), neural operators and autoencoders that learn
them, estimators that calibrate them, all as LightningModule plugins found through entry points
(:mod:`dtwin.registry`); hot loops as C++/CUDA ops (:mod:`dtwin.ops`) beside pure-torch
references. This module is the public surface that plugins (built-in or third-party) use.
"""

from importlib.metadata import PackageNotFoundError, version

from dtwin import data, errors, models, nn, ops, registry, sim
from dtwin.errors import (
    CheckpointError,
    DtwinError,
    DuplicatePluginError,
    PluginLoadError,
    PluginTypeError,
    SimulationError,
    UnknownPluginError,
)
from dtwin.models import AutoencoderModule, DtwinModule, EstimatorModule, OperatorModule, relative_l2

try:
    __version__ = version("dtwin")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "AutoencoderModule",
    "CheckpointError",
    "DtwinError",
    "DtwinModule",
    "DuplicatePluginError",
    "EstimatorModule",
    "OperatorModule",
    "PluginLoadError",
    "PluginTypeError",
    "SimulationError",
    "UnknownPluginError",
    "__version__",
    "data",
    "errors",
    "models",
    "nn",
    "ops",
    "registry",
    "relative_l2",
    "sim",
]
