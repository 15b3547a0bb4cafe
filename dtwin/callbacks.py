"""Lightning callbacks that dtwin's command adds to every run."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L


class MetricsJSON(L.Callback):
    """Writes the final logged metrics of each stage to ``<log_dir>/metrics.json``.

    One file per run, a section per stage ('fit', 'validate', 'test'), the values as Lightning
    aggregated them over all processes; the 'fit' section also holds the median wall time of a
    training epoch in this process (``seconds_per_epoch``). Written by rank zero only.
    """

    def __init__(self, filename: str = "metrics.json") -> None:
        self.filename = filename
        self._epoch_start: float | None = None
        self._epoch_seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch_start is not None:
            self._epoch_seconds.append(time.perf_counter() - self._epoch_start)

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
        if stage == "fit" and self._epoch_seconds:
            content[stage]["seconds_per_epoch"] = statistics.median(self._epoch_seconds)
            content[stage]["epochs_timed"] = len(self._epoch_seconds)
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2, sort_keys=True))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "fit")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "test")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write(trainer, "validate")


class OperatorReport(L.Callback):
    """After a test run of an operator, writes ``report.json`` (the per-sample relative L2 error:
    mean, std, quantiles, worst) and ``predictions.png`` (truth against prediction for the best,
    median and worst test samples, and the histogram of errors) into the log directory.

    Works with any :class:`dtwin.OperatorModule` whose outputs are 1D functions (traces) or 2D
    fields (images). A data module may name its grid and units through ``grid`` (a Tensor[L]),
    ``grid_label`` and ``target_label``. Errors are gathered from every process; the traces come
    from rank zero's shard.
    """

    def __init__(self, filename: str = "report.json", figure: str = "predictions.png") -> None:
        self.filename, self.figure = filename, figure
        self._errors: list = []
        self._samples: list = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._errors, self._samples = [], []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        from dtwin.models.base import OperatorModule

        if not isinstance(pl_module, OperatorModule) or not isinstance(batch, dict) or "y" not in batch:
            return
        import torch

        with torch.no_grad():
            pred = pl_module(batch)
        errors = pl_module.per_sample_error(pred, batch["y"]).detach().cpu()
        self._errors.append(errors)
        self._samples.extend(
            zip(errors.tolist(), pred.detach().cpu(), batch["y"].detach().cpu(), strict=True)
        )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._errors:
            return
        import torch

        errors = torch.cat(self._errors).to(pl_module.device)
        gathered = trainer.strategy.all_gather(errors)
        directory = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        errors = gathered.reshape(-1).double().cpu()
        q = torch.quantile(errors, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
        report = {
            "samples": int(errors.numel()),
            "rel_l2_mean": float(errors.mean()),
            "rel_l2_std": float(errors.std()) if errors.numel() > 1 else 0.0,
            "rel_l2_p05": float(q[0]),
            "rel_l2_median": float(q[1]),
            "rel_l2_p95": float(q[2]),
            "rel_l2_max": float(errors.max()),
            "model": type(pl_module).__name__,
            "parameters": sum(p.numel() for p in pl_module.parameters()),
        }
        directory.mkdir(parents=True, exist_ok=True)
        (directory / self.filename).write_text(json.dumps(report, indent=2))
        figure = directory / self.figure
        self._plot(trainer, figure, errors)
        print(
            f"dtwin: test relative L2 {report['rel_l2_mean']:.4%} +- {report['rel_l2_std']:.4%} over "
            f"{report['samples']} samples; report {directory / self.filename}; figure {figure}"
        )

    def _plot(self, trainer: L.Trainer, path: Path, errors) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ranked = sorted(self._samples, key=lambda s: s[0])
        picks = [("best", ranked[0]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[-1])]
        dm = trainer.datamodule
        grid = getattr(dm, "grid", None)
        grid_label = getattr(dm, "grid_label", "grid point")
        target_label = getattr(dm, "target_label", "output")
        two_d = picks[0][1][1].dim() == 3
        fig, axes = (
            plt.subplots(1, 4, figsize=(17, 3.6)) if not two_d else plt.subplots(3, 4, figsize=(15, 10))
        )
        if not two_d:
            for ax, (name, (err, pred, y)) in zip(axes[:3], picks, strict=True):
                x = grid.numpy() if grid is not None and len(grid) == y.shape[-1] else range(y.shape[-1])
                ax.plot(x, y[0].numpy(), color="black", lw=1.5, label="truth")
                ax.plot(x, pred[0].numpy(), color="tab:red", lw=1.0, ls="--", label="prediction")
                ax.set_title(f"{name} test sample: rel. L2 {err:.2%}")
                ax.set_xlabel(grid_label)
                ax.set_ylabel(target_label)
            axes[0].legend(loc="best")
            hist_ax = axes[3]
        else:
            for row, (name, (err, pred, y)) in enumerate(picks):
                for col, (title, img) in enumerate(
                    (("truth", y[0]), ("prediction", pred[0]), ("error", pred[0] - y[0]))
                ):
                    im = axes[row, col].imshow(img.numpy(), cmap="RdBu_r" if col == 2 else "viridis")
                    axes[row, col].set_title(f"{name} ({err:.2%}): {title}")
                    fig.colorbar(im, ax=axes[row, col], shrink=0.8)
                axes[row, 3].axis("off")
            hist_ax = axes[0, 3]
            hist_ax.axis("on")
        hist_ax.hist(errors.numpy() * 100, bins=30, color="tab:blue")
        hist_ax.set_xlabel("relative L2 error (%)")
        hist_ax.set_ylabel("test samples")
        hist_ax.set_title(f"mean {float(errors.mean()):.2%}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
