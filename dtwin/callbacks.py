"""Lightning callbacks that dtwin's command adds to every run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L


class MetricsJSON(L.Callback):
    """Writes the final logged metrics of each stage to ``<log_dir>/metrics.json``.

    One file per run, a section per stage ('fit', 'validate', 'test'), the values as Lightning
    aggregated them over all processes. Written by rank zero only.
    """

    def __init__(self, filename: str = "metrics.json") -> None:
        self.filename = filename

    def _write(self, trainer: L.Trainer, stage: str) -> None:
        if trainer.sanity_checking:
            return
        # log_dir is a collective under DDP: every rank asks, rank zero writes
        directory = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        path = directory / self.filename
        content: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            number = float(value)
            metrics[key] = number if math.isfinite(number) else str(number)
        content[stage] = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "metrics": metrics,
        }
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2, sort_keys=True))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "fit")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "test")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write(trainer, "validate")
