"""scripts/hh_estimation_experiment.py: one tiny run end to end (train, fine-tune with both warm
starts, PEM, table, figure), its resumption, and a report with nothing to report."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import load_script

pytestmark = pytest.mark.usefixtures("one_thread")


def load():
    return load_script("hh_estimation_experiment")


def test_one_run_end_to_end_and_resumed(tmp_path, capsys):
    exp = load()
    out = tmp_path / "hh"
    argv = [
        "--runs",
        "1",
        "--cases",
        "OOD2",
        "--epochs",
        "1",
        "--n-train",
        "300",
        "--out",
        str(out),
        "--quiet",
    ]
    assert exp.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 1
    entry = results[0]
    # the gate's verdict is always recorded
    assert entry["gate"]["verdict"] in ("out of distribution", "in distribution")
    assert 0.0 <= entry["gate"]["gate_p_value"] <= 1.0
    assert set(entry["estimates"]) >= {
        "TS pre-trained",
        "TS fine-tuned",
        "TS fine-tuned (features warm start)",
        "PEM (good start)",
        "PEM (poor start)",
    }
    assert all(len(v) == 3 for v in entry["estimates"].values())
    # PEM from a start within 10% of the truth reaches it (OOD2: a few per cent)
    good = torch.tensor(entry["estimates"]["PEM (good start)"])
    assert float(((good - torch.tensor(entry["theta0"])) / torch.tensor(entry["theta0"])).abs().max()) < 0.1
    assert (out / "estimates.png").stat().st_size > 0 and (out / "two_stage.ckpt").is_file()
    table = (out / "table.md").read_text()
    assert "| TS fine-tuned |" in table and "OOD2 MSE (median)" in table and "flagged OOD2:" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["OOD2"]["runs"] == 1 and "PEM (poor start)" in summary["OOD2"]["methods"]
    printed = capsys.readouterr().out
    assert "OOD2" in printed and "param MSE" in printed
    # resumed: the run is not repeated, the trained estimator is reused
    assert exp.main(["--runs", "1", "--cases", "OOD2", "--out", str(out), "--quiet", "--no-pem"]) == 0
    assert len(json.loads((out / "results.json").read_text())) == 1
    assert exp.main(["--report", "--out", str(out)]) == 0


def test_report_without_results_and_bad_arguments(tmp_path, capsys):
    exp = load()
    assert exp.main(["--report", "--out", str(tmp_path / "empty")]) == 1
    for argv, message in (
        (["--runs", "0"], "--runs must be >= 1"),
        (["--n-train", "0"], "--n-train must be"),
    ):
        with pytest.raises(SystemExit):
            exp.main(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        exp.main(["--cases", "OOD3"])


def test_pem_simulator_turns_impossible_trials_into_nan():
    exp = load()
    sim = exp.pem_simulator(exp.hh.protocol_current())
    V = sim(torch.tensor(exp.hh.DEFAULT_CONDUCTANCES, dtype=torch.float64))
    assert V.shape == (500,) and bool(torch.isfinite(V).all())
    for bad in ([float("inf"), 36.0, 0.3], [120.0, 0.0, 0.3], [1e7, 36.0, 0.3]):
        assert bool(torch.isnan(sim(torch.tensor(bad, dtype=torch.float64))).any()), bad
