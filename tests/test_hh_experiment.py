"""scripts/hh_experiment.py: one tiny run end to end, resumption, the tables."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "hh_experiment.py"


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd)


def test_a_tiny_run_then_the_report(tmp_path):
    args = ["--operators", "fno", "--seeds", "0", "--samples", "40", "--epochs", "fno=1", "--quiet"]
    first = run(*args, "--root", str(tmp_path))
    assert first.returncode == 0, first.stderr[-3000:]
    seed_dir = tmp_path / "fno" / "n40" / "seed0"
    report = json.loads((seed_dir / "test.json").read_text())
    assert report["samples"] == 8 and report["model"] == "FNO"
    assert json.loads((seed_dir / "fit.done").read_text())["epoch"] == 1
    # a second call finds the run done and only collects
    again = run(*args, "--root", str(tmp_path))
    assert again.returncode == 0 and "$ dtwin" not in again.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["fno"]["40"]["seeds"]["0"]["test"]["rel_l2_mean"] == report["rel_l2_mean"]
    # a fresh root with no runs reports the earlier results when they are merged in
    fresh = tmp_path / "fresh"
    alone = run("--report", "--root", str(fresh))
    assert alone.returncode == 0 and "fno" not in json.loads((fresh / "results.json").read_text())
    earlier = results
    earlier["fno"]["40"]["seeds"]["0"]["test"]["rel_l2_mean"] = 0.5  # a run under --root wins over this
    earlier["fno"]["80"] = {"seeds": {"3": {"test": {"rel_l2_mean": 0.25}}}}
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    merged = run("--report", "--root", str(tmp_path), "--merge", str(tmp_path / "earlier.json"))
    assert merged.returncode == 0, merged.stderr[-3000:]
    collected = json.loads((tmp_path / "results.json").read_text())["fno"]
    assert collected["40"]["seeds"]["0"]["test"]["rel_l2_mean"] == report["rel_l2_mean"]
    assert collected["80"]["seeds"]["3"]["test"]["rel_l2_mean"] == 0.25
    assert "| 80 | 25.00%" in merged.stdout


def test_bad_arguments_are_named(tmp_path):
    bad = run("--epochs", "fno:10", "--root", str(tmp_path))
    assert bad.returncode == 2 and "--epochs takes OP=N" in bad.stderr
    assert "hh_experiment" in run("--help").stdout
    (tmp_path / "not.json").write_text('{"lstm": {}}')
    wrong = run("--report", "--root", str(tmp_path), "--merge", str(tmp_path / "not.json"))
    assert wrong.returncode == 2 and "--merge" in wrong.stderr and "not a results.json" in wrong.stderr
    missing = run("--report", "--root", str(tmp_path), "--merge", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
