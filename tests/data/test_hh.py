"""HHDataModule: the paper's data set, its splits, caching and the batch contract."""

from __future__ import annotations

import pytest
import torch

from dtwin.data import HHDataModule, generate_hh_dataset
from dtwin.sim import hh

SMALL = dict(n_samples=40, n_train=30, n_val=4, n_points=51, batch_size=8)


def test_batches_carry_what_each_operator_reads():
    dm = HHDataModule(**SMALL)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 2, 51)
    assert batch["y"].shape == (8, 1, 51)
    assert batch["branch"].shape == (8, 3)
    assert batch["t"].shape == (8, 51)
    assert batch["x"].dtype == torch.float32
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [30, 4, 6]
    # channel 1 is normalised time, channel 0 the current over amp_range[1]; branch is (tin, tf, amp) scaled
    torch.testing.assert_close(batch["x"][0, 1], torch.linspace(0, 1, 51))
    assert batch["x"][:, 0].max() <= 1.0 and batch["branch"][:, 0].allclose(torch.tensor(0.01))


def test_data_match_the_simulator_and_the_paper_distribution():
    data = generate_hh_dataset(12, seed=3, n_points=101)
    pulses = data["pulses"][:, 0]
    assert torch.all(pulses[:, 0] == 1.0)
    V = hh.simulate(pulses, data["t"])
    torch.testing.assert_close(data["V"], V)
    on = (data["t"] >= pulses[:, :1]) & (data["t"] <= pulses[:, 1:2])
    torch.testing.assert_close(data["current"], on * pulses[:, 2:3])


def test_same_seed_same_data_and_cache_reuse(monkeypatch):
    a = HHDataModule(**SMALL, seed=7)
    a.setup()
    import dtwin.data.hh as module

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(module, "generate_hh_dataset", fail)
    b = HHDataModule(**SMALL, seed=7)
    b.setup()
    torch.testing.assert_close(a.datasets["test"].tensors["y"], b.datasets["test"].tensors["y"])


def test_other_seed_other_data():
    a, b = HHDataModule(**SMALL, seed=1), HHDataModule(**SMALL, seed=2)
    a.setup()
    b.setup()
    assert not torch.equal(a.datasets["train"].tensors["y"], b.datasets["train"].tensors["y"])


@pytest.mark.parametrize("family", ["train", "smooth"])
def test_out_of_family_inputs(family):
    dm = HHDataModule(**SMALL, family=family)
    dm.setup()
    sample = dm.datasets["test"][0]
    assert "branch" not in sample and sample["x"].shape == (2, 51)
    assert torch.isfinite(sample["y"]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_train=40), "n_train"),
        (dict(family="noise"), "family"),
        (dict(dtype="int8"), "dtype"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HHDataModule(**(SMALL | kwargs))
