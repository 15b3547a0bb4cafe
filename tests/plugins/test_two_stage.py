"""The two-stage estimator: registration, the compressions, training on the tanks twin moves the
estimate toward the truth, fine-tuning on an out-of-distribution record (gate verdict reported,
estimate improved), and bad input."""

from __future__ import annotations

import pytest
import torch

from dtwin import registry
from dtwin.data.tanks import TanksDataModule
from dtwin.sim import tanks
from dtwin.testing import quiet_trainer
from dtwin_estimators.two_stage import TwoStage


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = TwoStage(hidden=64, trunk_layers=2)
    data = TanksDataModule(n_train=4000, n_val=0, n_test=500, batch_size=128)
    trainer = quiet_trainer(max_epochs=8)
    trainer.fit(model, data)
    test = trainer.test(model, data, verbose=False)[0]
    return model.eval(), test


def test_registered():
    assert registry.load("estimators", "two_stage") is TwoStage
    assert registry.load("datamodules", "tanks") is TanksDataModule


@pytest.mark.parametrize("compression", ["arx", "quantiles", "conv"])
def test_each_compression_estimates_four_parameters(compression):
    model = TwoStage(compression=compression, hidden=16, trunk_layers=1)
    batch = model.example_batch(3)
    assert model(batch).shape == (3, 4)


def test_training_learns_the_prior_box(trained):
    _, test = trained
    # predicting the centre of the box scores (0.4^2 / 12) / 0.4^2 = 1/12 in box units per parameter
    assert test["test/param_mse"] < 0.02, test


def test_fine_tune_reports_the_gate_and_improves_an_ood_estimate(trained):
    model, _ = trained
    theta0 = torch.tensor(tanks.OOD["OOD1"], dtype=torch.float64)
    g = torch.Generator().manual_seed(11)
    u = tanks.random_input(1, generator=g)[0]
    y = tanks.simulate(theta0, u, generator=g)[0]
    before = [p.detach().clone() for p in model.parameters()]
    tuned, report = model.fine_tune(u, y, replicates=32, restarts=4, n_synthetic=300, epochs=100)
    assert report["verdict"] == "out of distribution" and report["gate_p_value"] < 0.01
    assert report["fine_tuned"] and set(report["seconds"]) >= {
        "gate",
        "gauss_newton",
        "synthetic_set",
        "fine_tune",
    }
    assert report["gn_misfit"] <= report["gn_initial_misfit"]
    err = {
        k: float((torch.tensor(report[k]) - theta0).pow(2).sum())
        for k in ("theta_pretrained", "theta_gauss_newton")
    }
    assert err["theta_gauss_newton"] < err["theta_pretrained"], err
    # self is untouched; the tuned copy's trunk is the original's
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert all(
        torch.equal(a, b) for a, b in zip(model.trunk.parameters(), tuned.trunk.parameters(), strict=True)
    )


def test_a_record_the_gate_passes_is_not_fine_tuned(trained):
    model, _ = trained
    theta = torch.tensor([0.6, 0.6, 0.6, 1.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    u = tanks.random_input(1, generator=g)[0]
    y = tanks.simulate(theta, u, generator=g)[0]
    # gate_level 0: no p-value is below it, every record passes the gate
    _, report = model.fine_tune(u, y, replicates=32, gate_level=0.0)
    assert report["verdict"] == "in distribution" and report["fine_tuned"] is False
    assert report["theta_fine_tuned"] == report["theta_pretrained"] and "gate_p_value" in report
    _, report = model.fine_tune(
        u, y, replicates=32, restarts=2, n_synthetic=100, epochs=5, gate_level=0.0, force=True
    )
    assert report["fine_tuned"] is True and report["verdict"] == "in distribution"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(compression="pca"), "compression must be one of"),
        (dict(twin="pendulum"), "twin must be one of"),
        (dict(prior_low=[0.8, 0.4, 0.4, 0.8], prior_high=[0.4, 0.8, 0.8, 1.2]), "low > high"),
        (dict(prior_low=[0.4, 0.4, 0.8]), "need 4 values"),
        (dict(na=-1), "ARX orders"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TwoStage(hidden=8, trunk_layers=1, **kwargs)


def test_bad_records():
    model = TwoStage(hidden=8, trunk_layers=1)
    u = torch.ones(400, dtype=torch.float64)
    with pytest.raises(ValueError, match="records of 400 samples"):
        model.fine_tune(u[:300], u[:300])
    with pytest.raises(ValueError, match="non-finite"):
        model.fine_tune(u, torch.full((400,), float("nan")))
    with pytest.raises(ValueError, match="one record each"):
        model.fine_tune(u[None], u[None])
    batch = model.example_batch(2)
    batch["y"] = batch["y"][:, :300]
    with pytest.raises(ValueError, match="differ"):
        model(batch)
