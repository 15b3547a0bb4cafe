"""LightningDataModules over dtwin's simulators and shipped data sets."""

from dtwin.data.base import TensorDictDataset, cache_dir, cached
from dtwin.data.digits import DigitsSyn2RealDataModule
from dtwin.data.hh import HHDataModule, generate_hh_dataset
from dtwin.data.images import ImagePatchesDataModule
from dtwin.data.tanks import TanksDataModule
from dtwin.data.trajectories import FHNDataModule, KSDataModule, TrajectoryDataModule

__all__ = [
    "DigitsSyn2RealDataModule",
    "FHNDataModule",
    "HHDataModule",
    "ImagePatchesDataModule",
    "KSDataModule",
    "TanksDataModule",
    "TensorDictDataset",
    "TrajectoryDataModule",
    "cache_dir",
    "cached",
    "generate_hh_dataset",
]
