"""Pieces shared by dtwin's data modules: a dataset of named tensors and an on-disk cache of
generated data keyed by the generating configuration."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["SplitDataModule", "TensorDictDataset", "cache_dir", "cached", "check_integers"]

SPLITS = ("train", "val", "test")


class TensorDictDataset(Dataset):
    """Samples ``{key: tensor[i]}`` from tensors that share their first dimension."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        sizes = {k: v.shape[0] for k, v in tensors.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"TensorDictDataset: tensors must share their first dimension, got {sizes}")
        self.tensors = tensors
        self.size = next(iter(sizes.values()), 0)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where generated data sets live: ``override``, else $DTWIN_CACHE_DIR, else ~/.cache/dtwin."""
    if override is not None:
        return Path(override)
    env = os.environ.get("DTWIN_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dtwin"


def cached(
    name: str,
    config: dict[str, Any],
    make: Callable[[], dict[str, Tensor]],
    directory: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """Load ``name`` generated with ``config`` from the cache, or make, save and return it.

    The file name carries a hash of the configuration, so a changed setting never reads stale
    data; the write is atomic (a temporary file renamed), so an interrupted run leaves no
    half-written cache behind.
    """
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir(directory) / f"{name}-{key}.pt"
    if path.is_file():
        data = torch.load(path, weights_only=True)
        data.pop("config", None)
        return data
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({**data, "config": json.dumps(config, sort_keys=True, default=str)}, tmp)
    os.replace(tmp, path)
    return data


def check_integers(owner: str, *checks: tuple[str, Any, int]) -> None:
    """Raise a ValueError naming ``owner`` and the argument for each (name, value, low) whose value
    is not an integer >= low (bools are not integers here)."""
    for arg, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{owner}: {arg} must be an integer >= {low}, got {value!r}")


class SplitDataModule(L.LightningDataModule):
    """A data module of three in-memory splits: ``setup`` fills ``datasets`` ('train', 'val',
    'test' -> TensorDictDataset) through :meth:`make_split`; the loaders batch them by the
    ``batch_size`` hyperparameter (and ``num_workers`` if saved), shuffling only the training split."""

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, TensorDictDataset] = {}

    def make_split(self, split: str) -> TensorDictDataset:
        raise NotImplementedError(f"{type(self).__name__} must implement make_split(split)")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split in SPLITS:
            self.datasets[split] = self.make_split(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            self.setup()
        hp = self.hparams
        return DataLoader(
            self.datasets[split],
            batch_size=hp.batch_size,
            shuffle=shuffle,
            num_workers=hp.get("num_workers", 0),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
