"""scripts/digits_experiment.py: the alignment baselines, one tiny run end to end and its resumption."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT, load_script

SCRIPT = ROOT / "scripts" / "digits_experiment.py"


def load():
    return load_script("digits_experiment")


def test_alignment_baselines_match_the_real_statistics():
    rng = np.random.default_rng(0)
    real = 0.5 + 0.1 * rng.standard_normal((400, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 0.5]])
    syn = 0.2 + 0.05 * rng.standard_normal((400, 3))
    exp = load()
    std = exp.standardise(syn, real)
    np.testing.assert_allclose(std.mean(0), real.mean(0), atol=1e-3)
    np.testing.assert_allclose(std.std(0), real.std(0), rtol=0.02)
    mapped = exp.coral(syn, real, eps=1e-6)
    np.testing.assert_allclose(np.cov(mapped, rowvar=False), np.cov(real, rowvar=False), atol=1e-4)
    np.testing.assert_allclose(mapped.mean(0), real.mean(0), atol=1e-6)


def test_a_tiny_run_resumes_and_reports(tmp_path):
    args = [sys.executable, str(SCRIPT), "--k", "1", "--seeds", "0", "--epochs", "1", "--layer-epochs", "0"]
    first = subprocess.run([*args, "--root", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("logreg", "mlp"):
        assert set(results["1/0"][name]) == {"real", "raw", "standardise", "coral", "smcae"}
        assert all(0.0 <= a <= 1.0 for a in results["1/0"][name].values())
    assert set(results["1/0"]["own_centroid"]) == {"raw", "smcae"}
    assert "| 1 | 1 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "digits.png").stat().st_size > 0
    again = subprocess.run([*args, "--root", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0 and "done before" in again.stdout
    assert results["1/0"]["pairing"] == "random"
    mixed = subprocess.run(
        [*args, "--root", str(tmp_path), "--pairing", "nearest"], capture_output=True, text=True, cwd=ROOT
    )
    assert (
        mixed.returncode == 2
        and "--pairing nearest:" in mixed.stderr
        and "give another --root" in mixed.stderr
    )
    bad = subprocess.run([*args[:2], "--k", "0"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--k: each k must be >= 1" in bad.stderr
