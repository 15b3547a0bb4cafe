"""scripts/ks_predictability.py: the exact solver's rollout MSE from a perturbed state."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "ks_predictability.py"


def load():
    spec = importlib.util.spec_from_file_location("ks_predictability", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_floor_starts_at_the_initial_error_and_grows():
    result = load().floor(states=2, steps=400, initial_mse=[1e-4, 1e-6], seed=0)
    for target, curve in result["curves"].items():
        assert len(curve) == 401
        assert abs(curve[0] - target) < 1e-3 * target  # the initial error has the requested MSE
        assert curve[-1] > 2 * curve[0]  # chaos (and the transient growth) amplify it by t = 4
    big, small = result["curves"][1e-4], result["curves"][1e-6]
    assert big[200] > 10 * small[200]  # still in the linear regime: the error scales with its start
    assert 0.5 < result["variance"] < 3


def test_the_command_prints_the_table_and_writes_its_files(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--states", "1", "--steps", "100", "--initial-mse", "1e-4",
         "--plot", str(tmp_path / "f.png"), "--json", str(tmp_path / "c.json")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| 1.0e-04 |" in done.stdout and "to t = 1" in done.stdout
    assert (tmp_path / "f.png").stat().st_size > 0
    assert len(json.loads((tmp_path / "c.json").read_text())["0.0001"]) == 101
    bad = subprocess.run([sys.executable, str(SCRIPT), "--initial-mse", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--initial-mse" in bad.stderr
