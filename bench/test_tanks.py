"""Water tanks twin and the two-stage estimator: simulator throughput against a per-record NumPy
loop (how the authors' code simulates), and the time per estimate of TS fine-tuning against the
prediction-error method from a good start (each stage's seconds in extra_info).

    pytest bench/test_tanks.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtwin.estimation import prediction_error_method
from dtwin.sim import tanks

RECORDS = 1000


def _numpy_tanks(theta: np.ndarray, u: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The same Euler recursion, one record at a time (the reference implementation's pattern)."""
    out = np.empty_like(u)
    for b in range(theta.shape[0]):
        k1, k2, k3, k4 = theta[b]
        h1 = h2 = 0.0
        for t in range(u.shape[1]):
            out[b, t] = h2 + v[b, t]
            s1, s2 = np.sqrt(h1), np.sqrt(h2)
            h1, h2 = (
                max(h1 + tanks.DT * (-k1 * s1 + k4 * u[b, t]) + w[0, t, b], 0.0),
                max(h2 + tanks.DT * (k2 * s1 - k3 * s2) + w[1, t, b], 0.0),
            )
    return out


@pytest.mark.parametrize("role", ["dtwin", "numpy per-record loop"])
def test_tanks_simulator(benchmark, role):
    g = torch.Generator().manual_seed(0)
    theta = tanks.sample_prior(RECORDS, g)
    u = tanks.random_input(RECORDS, generator=g)
    draws = (
        torch.randn(2, tanks.N_SAMPLES, RECORDS, generator=g, dtype=torch.float64),
        torch.randn(RECORDS, tanks.N_SAMPLES, generator=g, dtype=torch.float64),
    )
    benchmark.extra_info.update(pair=f"tanks twin, {RECORDS} records x {tanks.N_SAMPLES} samples", role=role)
    if role == "dtwin":
        out = benchmark.pedantic(
            lambda: tanks.simulate(theta, u, draws=draws), rounds=10, iterations=1, warmup_rounds=1
        )
        ref = _numpy_tanks(
            theta[:5].numpy(),
            u[:5].numpy(),
            draws[0][:, :, :5].numpy() * tanks.PROCESS_NOISE,
            draws[1][:5].numpy() * tanks.MEASUREMENT_NOISE,
        )
        np.testing.assert_allclose(out[:5].numpy(), ref, rtol=1e-10, atol=1e-10)
    else:
        args = (
            theta.numpy(),
            u.numpy(),
            draws[0].numpy() * tanks.PROCESS_NOISE,
            draws[1].numpy() * tanks.MEASUREMENT_NOISE,
        )
        benchmark.pedantic(lambda: _numpy_tanks(*args), rounds=1, iterations=1)
    benchmark.extra_info["records_per_s"] = RECORDS / benchmark.stats.stats.median


@pytest.fixture(scope="module")
def estimator():
    from dtwin.data.tanks import TanksDataModule
    from dtwin.testing import quiet_trainer
    from dtwin_estimators.two_stage import TwoStage

    torch.manual_seed(0)
    model = TwoStage()
    trainer = quiet_trainer(max_epochs=10)
    trainer.fit(model, TanksDataModule(n_train=10000, n_val=0, n_test=1))
    return model.eval()


@pytest.mark.parametrize("role", ["dtwin", "PEM (good start)"])
def test_time_per_ood_estimate(benchmark, estimator, role):
    theta0 = torch.tensor(tanks.OOD["OOD1"], dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    u = tanks.random_input(1, generator=g)[0]
    y = tanks.simulate(theta0, u, generator=g)[0]
    benchmark.extra_info.update(pair="tanks OOD1 estimate: TS fine-tuning vs PEM", role=role)
    if role == "dtwin":
        _, report = benchmark.pedantic(lambda: estimator.fine_tune(u, y), rounds=3, iterations=1)
        benchmark.extra_info["stage_seconds"] = report["seconds"]
    else:
        start = theta0 * 1.05
        benchmark.pedantic(
            lambda: prediction_error_method(lambda th: tanks.simulate(th, u, noise=False)[0], y, start),
            rounds=3,
            iterations=1,
        )
