"""Records for the two-stage estimator, parameters drawn from a prior box.

:class:`TanksDataModule`: cascaded water tanks, each record simulated with its own random input
(dtwin.sim.tanks). Each sample is a dict: 'u' Tensor[N] (input), 'y' Tensor[N] (measured level of
tank 2), 'theta' Tensor[4] (k1, k2, k3, k4).

:class:`HHConductanceDataModule`: Hodgkin-Huxley conductances, every record the noisy voltage
response to the same known current (dtwin.sim.hh, "conductance estimation"). Each sample: 'u'
Tensor[500] (the current, uA/cm^2), 'y' Tensor[500] (V in mV), 'theta' Tensor[3] (gNa, gK, gL).

Simulating 20000 records takes about a second (tanks) or three (HH), so nothing is cached.
"""

from __future__ import annotations

import torch

from dtwin.data.base import SplitDataModule, TensorDictDataset, check_integers
from dtwin.sim import hh, tanks


def _check_sizes(owner: str, n_train: int, n_val: int, n_test: int, batch_size: int) -> None:
    check_integers(
        owner,
        ("n_train", n_train, 1),
        ("n_val", n_val, 0),
        ("n_test", n_test, 1),
        ("batch_size", batch_size, 1),
    )


class TanksDataModule(SplitDataModule):
    """Args:
    n_train, n_val, n_test: records per split (the test set is in the prior box too; the
        out-of-distribution cases are the experiment's, scripts/tanks_experiment.py).
    prior_low, prior_high: the prior box (default: the paper's).
    n_samples: samples per record (paper: 400 at dt = 0.5).
    seed: seed of the draw; batch_size: training batch size.
    """

    def __init__(
        self,
        n_train: int = 20000,
        n_val: int = 2000,
        n_test: int = 2000,
        prior_low: list[float] | None = None,
        prior_high: list[float] | None = None,
        n_samples: int = tanks.N_SAMPLES,
        seed: int = 0,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        _check_sizes("TanksDataModule", n_train, n_val, n_test, batch_size)
        lo, hi = tanks.prior_box(prior_low, prior_high, owner="TanksDataModule")
        low, high = tuple(lo.tolist()), tuple(hi.tolist())
        self.save_hyperparameters()
        self.low, self.high = low, high

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        g = torch.Generator().manual_seed(hp.seed)  # one stream through the splits, in order
        for split, n in (("train", hp.n_train), ("val", hp.n_val), ("test", hp.n_test)):
            theta = tanks.sample_prior(max(n, 1), g, self.low, self.high)[:n]
            u = tanks.random_input(max(n, 1), hp.n_samples, generator=g)[:n]
            y = tanks.simulate(theta, u, generator=g) if n else u
            self.datasets[split] = TensorDictDataset({"u": u.float(), "y": y.float(), "theta": theta.float()})


class HHConductanceDataModule(SplitDataModule):
    """Args:
    n_train, n_val, n_test: records per split (all in the prior box; the out-of-distribution
        truths are the experiment's, scripts/hh_estimation_experiment.py).
    prior_low, prior_high: the prior box of (gNa, gK, gL) (default: the defaults +-20%).
    seed: seed of the draw; batch_size: training batch size.
    """

    def __init__(
        self,
        n_train: int = 20000,
        n_val: int = 2000,
        n_test: int = 2000,
        prior_low: list[float] | None = None,
        prior_high: list[float] | None = None,
        seed: int = 0,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        _check_sizes("HHConductanceDataModule", n_train, n_val, n_test, batch_size)
        lo, hi = hh.conductance_prior_box(prior_low, prior_high, owner="HHConductanceDataModule")
        self.save_hyperparameters()
        self.low, self.high = tuple(lo.tolist()), tuple(hi.tolist())

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        g = torch.Generator().manual_seed(self.hparams.seed)  # one stream through the splits, in order
        current = hh.protocol_current()
        for split in ("train", "val", "test"):
            n = self.hparams[f"n_{split}"]
            theta = hh.sample_conductances(n, g, self.low, self.high)
            y = hh.simulate_conductances(theta, generator=g) if n else current.expand(0, -1)
            u = current.expand(n, -1).contiguous()
            self.datasets[split] = TensorDictDataset({"u": u.float(), "y": y.float(), "theta": theta.float()})
