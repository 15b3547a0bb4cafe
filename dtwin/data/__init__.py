"""LightningDataModules over dtwin's simulators and shipped data sets."""

from dtwin.data.base import TensorDictDataset, cache_dir, cached
from dtwin.data.digits import DigitsSyn2RealDataModule
from dtwin.data.hh import HHDataModule, generate_hh_dataset

__all__ = [
    "DigitsSyn2RealDataModule",
    "HHDataModule",
    "TensorDictDataset",
    "cache_dir",
    "cached",
    "generate_hh_dataset",
]
