"""LightningDataModules over dtwin's simulators and shipped data sets."""

from dtwin.data.base import TensorDictDataset, cache_dir, cached
from dtwin.data.hh import HHDataModule, generate_hh_dataset

__all__ = ["HHDataModule", "TensorDictDataset", "cache_dir", "cached", "generate_hh_dataset"]
