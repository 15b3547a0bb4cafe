"""KSDataModule and FHNDataModule: the splits' layout, that they are the twins' trajectories,
determinism by seed, the cache, and bad arguments."""

from __future__ import annotations

import pytest
import torch

from dtwin.data.trajectories import FHNDataModule, KSDataModule, TrajectoryDataModule
from dtwin.sim import fhn, ks

SMALL = dict(n_train=3, n_val=2, n_test=1, n_steps_train=40, n_steps_eval=20, batch_size=2)


def test_ks_splits_layout_and_loaders(tmp_path):
    dm = KSDataModule(**SMALL, burn_in=20.0, cache_dir=str(tmp_path))
    assert isinstance(dm, TrajectoryDataModule)
    assert dm.dt == ks.DT and dm.state_size == 120 and dm.field_shape == (120,)
    assert dm.grid.shape == (120,)
    assert dm.hparams.burn_in == 20.0 and dm.hparams.substeps == ks.SUBSTEPS
    dm.prepare_data()
    dm.setup("fit")
    sizes = {k: tuple(d.tensors["x"].shape) for k, d in dm.datasets.items()}
    assert sizes == {"train": (3, 41, 120), "val": (2, 21, 120), "test": (1, 21, 120)}
    assert all(d.tensors["x"].dtype == torch.float32 for d in dm.datasets.values())
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x"} and batch["x"].shape == (2, 41, 120)
    assert next(iter(dm.val_dataloader()))["x"].shape == (2, 21, 120)
    assert next(iter(dm.test_dataloader()))["x"].shape == (1, 21, 120)


def test_ks_trajectories_are_the_twins_from_the_attractor(tmp_path):
    dm = KSDataModule(**SMALL, cache_dir=str(tmp_path))
    dm.setup()
    x = dm.datasets["train"].tensors["x"]
    # after the burn-in: zero-mean fields with the attractor's amplitude, not the smooth start
    assert x.mean(-1).abs().max() < 1e-5 and 0.8 < x[:, 0].std() < 1.8
    assert torch.fft.rfft(x[:, 0].double())[:, 5:].abs().max() > 1e-2
    # the samples are the twin's trajectory at spacing dt (float32 storage)
    again = dm.simulate(x[:, 0].double(), 40)
    assert again.shape == (3, 41, 120) and again.dtype == torch.float64
    torch.testing.assert_close(again.float(), x, rtol=0, atol=1e-5)
    assert dm.simulate(x[:, 0], 3).dtype == torch.float32


def test_fhn_splits_layout_u_then_v(tmp_path):
    dm = FHNDataModule(**SMALL, cache_dir=str(tmp_path))
    assert dm.dt == fhn.DT and dm.state_size == 202 and dm.field_shape == (2, 101)
    dm.setup()
    x = dm.datasets["train"].tensors["x"]
    assert x.shape == (3, 41, 202) and x.dtype == torch.float32
    fields = x.unflatten(-1, dm.field_shape)
    u0, v0 = fields[:, 0, 0], fields[:, 0, 1]
    # the initial states: v flat at |v| <= 0.05, u on the branches at ~ -+1 with a front between
    assert (v0 - v0[:, :1]).abs().max() == 0 and v0.abs().max() <= 0.05
    assert (u0.max(-1).values > 0.9).all() and (u0.min(-1).values < -0.9).all()
    again = dm.simulate(fields[:, 0].double(), 40)
    assert again.shape == (3, 41, 202)
    torch.testing.assert_close(again.float(), x, rtol=0, atol=1e-5)
    assert next(iter(dm.test_dataloader()))["x"].shape == (1, 21, 202)


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = FHNDataModule(**SMALL, seed=4, cache_dir=str(tmp_path / "a"))
    b = FHNDataModule(**SMALL, seed=4, cache_dir=str(tmp_path / "b"))
    c = FHNDataModule(**SMALL, seed=5, cache_dir=str(tmp_path / "c"))
    for dm in (a, b, c):
        dm.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(a.datasets[split].tensors["x"], b.datasets[split].tensors["x"])
        assert not torch.equal(a.datasets[split].tensors["x"], c.datasets[split].tensors["x"])
    # the splits are drawn apart: val and test do not depend on n_train
    d = FHNDataModule(**{**SMALL, "n_train": 1}, seed=4, cache_dir=str(tmp_path / "d"))
    d.setup()
    assert torch.equal(d.datasets["val"].tensors["x"], a.datasets["val"].tensors["x"])
    assert not torch.equal(a.datasets["train"].tensors["x"][0], a.datasets["val"].tensors["x"][0, :21])


def test_a_cache_hit_returns_the_same_tensors_without_simulating(tmp_path, monkeypatch):
    first = KSDataModule(**SMALL, burn_in=5.0, cache_dir=str(tmp_path))
    first.setup()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and all(name.startswith("ks-") for name in files)

    def fail(*args, **kwargs):
        raise AssertionError("simulated although cached")

    monkeypatch.setattr(KSDataModule, "generate", fail)
    second = KSDataModule(**SMALL, burn_in=5.0, cache_dir=str(tmp_path))
    second.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(first.datasets[split].tensors["x"], second.datasets[split].tensors["x"])
    # a changed generating setting is a different data set: it would have to be simulated
    with pytest.raises(AssertionError, match="simulated although cached"):
        KSDataModule(**SMALL, burn_in=6.0, cache_dir=str(tmp_path)).setup()
    with pytest.raises(AssertionError, match="simulated although cached"):
        KSDataModule(**SMALL, burn_in=5.0, substeps=2, cache_dir=str(tmp_path)).setup()


def test_empty_validation_and_test_splits(tmp_path):
    dm = FHNDataModule(**{**SMALL, "n_val": 0, "n_test": 0}, cache_dir=str(tmp_path))
    dm.setup()
    assert dm.datasets["val"].tensors["x"].shape == (0, 21, 202) and len(dm.datasets["test"]) == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: KSDataModule(n_train=0), "n_train must be an integer >= 1"),
        (lambda: KSDataModule(n_val=-1), "n_val must be an integer >= 0"),
        (lambda: FHNDataModule(n_test=1.5), "n_test must be an integer >= 0"),
        (lambda: KSDataModule(n_steps_train=0), "n_steps_train must be an integer >= 1"),
        (lambda: FHNDataModule(n_steps_eval=-3), "n_steps_eval must be an integer >= 1"),
        (lambda: KSDataModule(dt=0.0), "dt must be a finite number > 0"),
        (lambda: FHNDataModule(dt=float("nan")), "dt must be a finite number > 0"),
        (lambda: KSDataModule(substeps=0), "substeps must be an integer >= 1"),
        (lambda: FHNDataModule(seed=-1), "seed must be an integer >= 0"),
        (lambda: KSDataModule(batch_size=0), "batch_size must be an integer >= 1"),
        (lambda: KSDataModule(burn_in=-5.0), "burn_in must be a number >= 0"),
        (lambda: FHNDataModule().simulate(torch.zeros(2, 101), 3), r"state0 must be \[B, 202\]"),
        (lambda: KSDataModule().generate("dev"), "split must be one of"),
    ],
)
def test_bad_arguments_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()
