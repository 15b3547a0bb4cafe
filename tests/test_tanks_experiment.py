"""scripts/tanks_experiment.py: one tiny run end to end (train, fine-tune, PEM, table, figure),
its resumption, and a report with nothing to report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_script


def load():
    return load_script("tanks_experiment")


def test_one_run_end_to_end_and_resumed(tmp_path, capsys):
    exp = load()
    out = tmp_path / "tanks"
    assert exp.main(["--runs", "1", "--cases", "OOD2", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 1 and results[0]["gate"]["verdict"] in ("out of distribution", "in distribution")
    assert set(results[0]["estimates"]) >= {
        "TS pre-trained",
        "TS fine-tuned",
        "PEM (good start)",
        "PEM (poor start)",
    }
    assert (out / "estimates.png").stat().st_size > 0 and (out / "two_stage.ckpt").is_file()
    printed = capsys.readouterr().out
    assert "OOD2" in printed and "param MSE" in printed
    # resumed: the run is not repeated
    assert exp.main(["--runs", "1", "--cases", "OOD2", "--out", str(out), "--quiet", "--no-pem"]) == 0
    assert len(json.loads((out / "results.json").read_text())) == 1
    assert results[0]["warm_start"] == "features"
    # the other warm start does not go into the same results
    assert exp.main(["--runs", "2", "--cases", "OOD2", "--out", str(out), "--warm-start", "trace"]) == 2
    assert "were made with --warm-start features" in capsys.readouterr().err


def test_report_without_results_and_bad_arguments(tmp_path, capsys):
    exp = load()
    assert exp.main(["--report", "--out", str(tmp_path / "empty")]) == 1
    with pytest.raises(SystemExit):
        exp.main(["--runs", "0"])
    assert "--runs must be >= 1" in capsys.readouterr().err
