"""``check_plugin``: the contract every dtwin plugin meets, runnable by anyone on their own class.

Modelled on scikit-learn's ``check_estimator`` and timm's model contract tests: the plugin is
built from its defaults, trained one step on the batch its ``example_batch()`` returns, saved,
reloaded through the registry by its registered name, and fed badly shaped input.
"""

from __future__ import annotations

import inspect
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["PluginCheckError", "check_plugin", "quiet_trainer"]


class PluginCheckError(AssertionError):
    """One or more conformance checks failed; the message lists each with what to fix."""


def _silence_lightning() -> None:
    for pattern in (
        ".*does not have many workers.*",
        ".*GPU available but not used.*",
        ".*LightningModule.*saving hyperparameters.*",
        ".*is an instance of `nn.Module`.*",
        ".*Checkpoint directory.*exists and is not empty.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def quiet_trainer(root: str | Path | None = None, **overrides: Any):
    """A Lightning Trainer for tests, scripts and benchmarks: one CPU process, no logger, no
    checkpoints, no progress bar, no model summary. ``overrides`` are further Trainer arguments
    (``max_epochs=...``, ``callbacks=[...]``) and win over these defaults."""
    import lightning as L

    options: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if root is not None:
        options["default_root_dir"] = str(root)
    options.update(overrides)
    return L.Trainer(**options)


def _trainer(root: Path, **overrides: Any):
    return quiet_trainer(root, **{"max_steps": 1, "max_epochs": 1, "num_sanity_val_steps": 0, **overrides})


def _outputs(model: torch.nn.Module, batch: dict[str, Tensor]) -> Tensor:
    model.eval()
    with torch.no_grad():
        return model(batch)


def check_plugin(
    cls: type, name: str | None = None, *, kind: str | None = None, batch_size: int = 2
) -> dict[str, str]:
    """Run the conformance checks on a plugin class; raise PluginCheckError listing failures.

    Args:
        cls: the plugin's LightningModule subclass (a dtwin base module: OperatorModule,
            EstimatorModule or AutoencoderModule).
        name: its registered entry-point name; found from the installed metadata when None.
        kind: its kind ('operators', ...); found with the name when None.
        batch_size: samples in the example batch.

    Returns:
        check name -> 'ok' for every check (all passed).
    """
    from dtwin import registry
    from dtwin.models.base import DtwinModule

    _silence_lightning()
    results: dict[str, str] = {}
    failures: list[str] = []

    def check(label: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
        except Exception as exc:  # every failure is reported, not only the first
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            results[label] = "failed"
            return False
        results[label] = "ok"
        return True

    if not (isinstance(cls, type) and issubclass(cls, DtwinModule)):
        raise PluginCheckError(
            f"{cls!r} is not a subclass of a dtwin base module (OperatorModule, EstimatorModule, "
            "AutoencoderModule)"
        )
    if name is None or kind is None:
        found = registry.find_name(cls)
        if found is None:
            raise PluginCheckError(
                f"{cls.__module__}.{cls.__qualname__} is not registered under any dtwin entry point; "
                "add it to "
                '[project.entry-points."dtwin.operators"] (or estimators / autoencoders) and reinstall'
            )
        kind, name = kind or found[0], name or found[1]

    state: dict[str, Any] = {}

    def build() -> None:
        state["model"] = cls()

    if not check("builds from its defaults", build):
        raise PluginCheckError(f"{cls.__name__}: " + "; ".join(failures))
    model: DtwinModule = state["model"]

    def registry_entry() -> None:
        loaded = registry.load(kind, name)
        if loaded is not cls:
            raise AssertionError(
                f"registry name {name!r} loads {loaded.__module__}.{loaded.__qualname__}, not {cls.__name__}"
            )

    def hyperparameters() -> None:
        params = [
            p
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        missing = [p.name for p in params if p.name not in model.hparams]
        if missing:
            raise AssertionError(
                f"hyperparameters {missing} are not saved; call super().__init__(...) from __init__ "
                "(dtwin's base saves every __init__ argument)"
            )

    def example() -> None:
        batch = model.example_batch(batch_size)
        if not isinstance(batch, dict) or not batch:
            raise AssertionError("example_batch() must return a non-empty dict of tensors")
        state["batch"] = batch
        out = _outputs(model, batch)
        target = batch.get(model.target_key)
        if target is not None and out.shape != target.shape:
            raise AssertionError(
                f"forward returned {tuple(out.shape)}, the target {model.target_key!r} is "
                f"{tuple(target.shape)}"
            )

    def gradients() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached here
            loss = model.training_step(state["batch"], 0)
        if not torch.isfinite(loss):
            raise AssertionError(f"the training loss on the example batch is {float(loss)}")
        loss.backward()
        dead = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        if dead:
            raise AssertionError(f"parameters get no gradient from the loss: {dead[:10]}")
        model.zero_grad(set_to_none=True)

    def train_save_reload() -> None:
        from torch.utils.data import DataLoader

        batch = state["batch"]
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        loader = DataLoader([batch], batch_size=None)
        with tempfile.TemporaryDirectory(prefix="dtwin-check-") as tmp:
            trainer = _trainer(Path(tmp))
            trainer.fit(model, train_dataloaders=loader)
            changed = any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
            if before and not changed:
                raise AssertionError("one training step changed no parameter")
            path = Path(tmp) / "model.ckpt"
            trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint, as ModelCheckpoint writes
            reloaded = registry.load_checkpoint(name, path, kind=kind)
            if type(reloaded) is not cls:
                raise AssertionError(f"the checkpoint reloads as {type(reloaded).__name__}")
            a, b = _outputs(model, batch), _outputs(reloaded, batch)
            if not torch.equal(a, b):
                raise AssertionError(
                    f"reloaded outputs differ (max |diff| = {float((a - b).abs().max()):.3g})"
                )
            if dict(reloaded.hparams) != dict(model.hparams):
                raise AssertionError("reloaded hyperparameters differ")

    def bad_input() -> None:
        batch = state["batch"]
        spec = getattr(model, "batch_spec", {})
        if not spec:
            raise AssertionError(
                "batch_spec is empty: declare the batch keys forward reads, with their shapes"
            )
        problems = []
        for key in spec:
            for label, bad in (
                ("missing", {k: v for k, v in batch.items() if k != key}),
                ("wrong rank", {**batch, key: batch[key][..., None]}),
            ):
                try:
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message=".*self.log.*")
                        model.training_step(bad, 0)
                except (ValueError, TypeError) as exc:
                    if key not in str(exc):
                        problems.append(f"{label} {key!r}: the error does not name the key: {exc}")
                except Exception as exc:
                    problems.append(
                        f"{label} {key!r}: {type(exc).__name__} instead of a ValueError naming the key: {exc}"
                    )
                else:
                    problems.append(f"{label} {key!r}: accepted without an error")
        if problems:
            raise AssertionError("; ".join(problems))

    check("registered name loads the class", registry_entry)
    check("hyperparameters saved", hyperparameters)
    if check("example batch and forward", example):
        check("every parameter gets a gradient", gradients)
        check("trains a step, checkpoint reloads by name to identical outputs", train_save_reload)
        check("bad input gets a clear error", bad_input)
    if failures:
        raise PluginCheckError(
            f"{cls.__name__} ({kind}/{name}) failed {len(failures)} check(s):\n  - " + "\n  - ".join(failures)
        )
    return results
