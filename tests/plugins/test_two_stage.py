"""The two-stage estimator: registration, the compressions, training on the tanks twin moves the
estimate toward the truth, fine-tuning on an out-of-distribution record (gate verdict reported,
estimate improved), and bad input; the same for the Hodgkin-Huxley twin, with the Jacobians of
its warm starts checked against finite differences of the simulator."""

from __future__ import annotations

import pytest
import torch

from dtwin import registry
from dtwin.data.tanks import HHConductanceDataModule, TanksDataModule
from dtwin.sim import hh, tanks
from dtwin.testing import quiet_trainer
from dtwin_estimators.two_stage import TwoStage

pytestmark = pytest.mark.usefixtures("one_thread")


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


# ---- the Hodgkin-Huxley twin ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_hh():
    torch.manual_seed(0)
    model = TwoStage(twin="hh", hidden=64, trunk_layers=2)
    data = HHConductanceDataModule(n_train=3000, n_val=0, n_test=300, batch_size=128)
    trainer = quiet_trainer(max_epochs=4)
    trainer.fit(model, data)
    test = trainer.test(model, data, verbose=False)[0]
    return model.eval(), test


def ood_record(case: str = "OOD2", seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    theta0 = torch.tensor(hh.OOD_CONDUCTANCES[case], dtype=torch.float64)
    y = hh.simulate_conductances(theta0, generator=torch.Generator().manual_seed(seed))[0]
    return hh.protocol_current(), y, theta0


def test_hh_defaults_and_a_training_step(tmp_path):
    model = TwoStage(twin="hh", hidden=16, trunk_layers=1)
    assert model.hparams.compression == "spiking" and model.hparams.n_samples == hh.ESTIMATION_N
    batch = model.example_batch(3)
    assert batch["u"].shape == batch["y"].shape == (3, 500) and batch["theta"].shape == (3, 3)
    assert model(batch).shape == (3, 3)
    # one optimizer step through Lightning, then a checkpoint round trip
    data = HHConductanceDataModule(n_train=32, n_val=0, n_test=8, batch_size=16)
    before = [p.detach().clone() for p in model.heads.parameters()]
    trainer = quiet_trainer(tmp_path, max_steps=1, max_epochs=1)
    trainer.fit(model, data)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.heads.parameters(), strict=True))
    trainer.save_checkpoint(tmp_path / "hh.ckpt")
    loaded = TwoStage.load_from_checkpoint(tmp_path / "hh.ckpt", map_location="cpu").eval()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(batch), model(batch))
    conv = TwoStage(twin="hh", compression="conv", hidden=16, trunk_layers=1)
    assert conv(batch).shape == (3, 3)


def test_hh_training_learns_the_prior_box(trained_hh):
    _, test = trained_hh
    # in units of the defaults: predicting the centre of the +-20% box scores 0.4^2 / 12 = 0.013
    assert test["test/param_mse"] < 0.008, test


def test_hh_fine_tune_reports_the_gate_and_reaches_the_ood_truth(trained_hh):
    model, _ = trained_hh
    u, y, theta0 = ood_record()
    tuned, report = model.fine_tune(u, y, replicates=64, restarts=4, n_synthetic=200, epochs=60)
    assert report["verdict"] == "out of distribution" and report["gate_p_value"] < 0.01
    assert report["gate_dof"] == hh.N_VOLTAGE_FEATURES and report["fine_tuned"]
    assert report["warm_start"] == "trace" and "sensitivities" in report["gn_jacobian"]
    assert report["gn_misfit"] <= report["gn_initial_misfit"]
    # the measurement noise alone: the trace misfit ends at its noise floor
    assert report["gn_misfit"] <= report["gn_noise_floor"] and report["gn_rescue_rounds"] in (0, 1, 2)

    def error(key: str) -> float:
        return float(((torch.tensor(report[key], dtype=torch.float64) - theta0) / theta0).pow(2).sum())

    # the trace warm start reaches the noise floor (a few per cent) from the box's edge
    assert error("theta_gauss_newton") < 0.01 < error("theta_pretrained"), report
    assert error("theta_fine_tuned") < error("theta_pretrained"), report
    with torch.no_grad():
        again = tuned({"u": u[None].float(), "y": y[None].float()})[0]
    assert torch.allclose(again, torch.tensor(report["theta_fine_tuned"]), rtol=1e-5)
    # the paper's warm start on the features runs too, and lowers its misfit
    _, report = model.fine_tune(
        u, y, warm_start="features", replicates=32, gn_iterations=1, restarts=2, n_synthetic=50, epochs=2
    )
    assert report["warm_start"] == "features" and "through the features" in report["gn_jacobian"]
    assert report["gn_misfit"] <= report["gn_initial_misfit"] and "verdict" in report


def test_hh_gate_verdict_when_in_distribution(trained_hh):
    model, _ = trained_hh
    theta = torch.tensor(hh.DEFAULT_CONDUCTANCES, dtype=torch.float64)
    y = hh.simulate_conductances(theta, generator=torch.Generator().manual_seed(1))[0]
    _, report = model.fine_tune(hh.protocol_current(), y, replicates=64, gate_level=0.0)
    assert report["verdict"] == "in distribution" and report["fine_tuned"] is False
    assert "gate_statistic" in report and report["gate_p_value"] >= 0.0


def test_hh_jacobians_equal_finite_differences():
    """The Jacobians the Gauss-Newton warm starts use (forward mode, from the HH op's
    sensitivities) against central differences of the plain simulator."""
    model = TwoStage(twin="hh", hidden=8, trunk_layers=1)
    u = hh.protocol_current()
    theta = torch.tensor([[150.0, 30.0, 0.4], [100.0, 40.0, 0.25]], dtype=torch.float64)

    def central(fn, theta: torch.Tensor, rel: float) -> torch.Tensor:
        columns = []
        for k in range(theta.shape[1]):
            step = torch.zeros_like(theta)
            step[:, k] = rel * theta[:, k]
            columns.append((fn(theta + step) - fn(theta - step)) / (2 * step[:, k : k + 1]))
        return torch.stack(columns, -1)  # [S, M, P]

    # the trace (the hh default): d V / d theta
    S = theta.shape[0]
    J = torch.func.jacfwd(lambda th: model.simulated_output(th, u))(theta)
    J = J[torch.arange(S), :, torch.arange(S), :]  # rows depend on their own theta only
    fd = central(lambda th: hh.simulate_conductances(th, u, noise=False), theta, 1e-6)
    assert J.abs().max() > 1.0
    assert torch.allclose(J, fd, rtol=1e-4, atol=1e-6 * float(fd.abs().max()))
    # and reverse mode reads the same sensitivities
    th = theta.clone().requires_grad_()
    model.simulated_output(th, u).sum().backward()
    assert torch.allclose(th.grad, J.sum(1), rtol=1e-10)
    # the mean simulated features (the 'features' warm start): sensitivities chained through them
    draws = model.noise_draws(8, hh.ESTIMATION_N, torch.Generator().manual_seed(0))
    J = torch.func.jacfwd(lambda th: model.mean_simulated_features(th, u, draws))(theta)
    J = J[torch.arange(S), :, torch.arange(S), :]
    fd = central(lambda th: model.simulated_features(th, u, draws).mean(1), theta, 1e-7)
    assert J.abs().max() > 1.0
    assert torch.allclose(J, fd, rtol=1e-3, atol=1e-5 * float(fd.abs().max()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(compression="arx"), "compression must be one of"),
        (dict(prior_low=[144.0, 28.8, 0.24], prior_high=[96.0, 43.2, 0.36]), "low > high"),
        (dict(prior_low=[96.0, 28.8, 0.24, 1.0]), "need 3 values"),
        (dict(prior_low=[0.0, 28.8, 0.24]), "positive"),
        (dict(n_samples=400), "n_samples must be 500"),
        (dict(prior_low=[1e5, 36.0, 0.3], prior_high=[2e5, 36.0, 0.3]), "cannot simulate the prior box"),
    ],
)
def test_hh_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TwoStage(twin="hh", hidden=8, trunk_layers=1, **kwargs)


def test_hh_bad_records(monkeypatch):
    model = TwoStage(twin="hh", hidden=8, trunk_layers=1)
    u, y, _ = ood_record()
    with pytest.raises(ValueError, match="records of 500 samples"):
        model.fine_tune(u[:400], y[:400])
    with pytest.raises(ValueError, match="non-finite"):
        model.fine_tune(u, torch.where(torch.arange(500) == 7, float("inf"), y))
    with pytest.raises(ValueError, match="known current"):
        model.fine_tune(2 * u, y)
    with pytest.raises(ValueError, match="cannot produce it"):
        model.fine_tune(u, y * 1000)  # in microvolts: not a membrane voltage in mV
    with pytest.raises(ValueError, match="warm_start must be one of"):
        model.fine_tune(u, y, warm_start="spikes")
    with pytest.raises(ValueError, match="gn_iterations"):
        model.fine_tune(u, y, gn_iterations=-1)
    batch = model.example_batch(2)
    with pytest.raises(ValueError, match="records of 500 samples"):
        model({"u": batch["u"][:, :400], "y": batch["y"][:, :400]})
    with pytest.raises(ValueError, match=r"batch\['u'\] must be the known current"):
        model({"u": batch["u"] + 1, "y": batch["y"]})
    # an observation the twin cannot simulate: g answers conductances the scheme cannot follow
    monkeypatch.setattr(model, "regress", lambda f: torch.tensor([[1e6, 36.0, 0.3]]).expand(f.shape[0], -1))
    with pytest.raises(ValueError, match="cannot simulate the record"):
        model.fine_tune(u, y)


def test_hh_twin_checks():
    with pytest.raises(ValueError, match="non-positive"):
        hh.simulate_conductances(torch.tensor([120.0, -1.0, 0.3]))
    with pytest.raises(ValueError, match=r"theta must be \[B, 3\]"):
        hh.simulate_conductances(torch.ones(2, 4))
    with pytest.raises(ValueError, match="draws must be"):
        hh.simulate_conductances(torch.tensor([120.0, 36.0, 0.3]), draws=torch.zeros(1, 10))
    with pytest.raises(ValueError, match="low > high"):
        hh.conductance_prior_box([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="voltage records must be"):
        hh.voltage_features(torch.zeros(2, 400))
    current = hh.protocol_current()
    assert current.shape == (500,) and current.unique().tolist() == [0.0, 3.0, 8.0, 16.0]
    V = hh.simulate_conductances(torch.tensor(hh.DEFAULT_CONDUCTANCES), noise=False)
    features = hh.voltage_features(V)
    assert features.shape == (1, hh.N_VOLTAGE_FEATURES)
    # the soft spike counts (last feature of each step) count the spikes
    counts = features[0, hh.N_VOLTAGE_FEATURES // 4 - 1 :: hh.N_VOLTAGE_FEATURES // 4]
    hard = [int(((s[1:] > -20) & (s[:-1] <= -20)).sum()) for s in V[0].split([50, 125, 150, 175])]
    assert torch.allclose(counts, torch.tensor(hard, dtype=counts.dtype), atol=0.2), (counts, hard)
