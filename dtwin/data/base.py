"""Pieces shared by dtwin's data modules: a dataset of named tensors and an on-disk cache of
generated data keyed by the generating configuration."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["TensorDictDataset", "cache_dir", "cached"]


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
