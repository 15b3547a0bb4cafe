"""scripts/drip_experiment.py: a tiny inpainting run end to end (fits, evaluation, table, figure),
its resumption, and bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "drip_experiment.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_a_tiny_run_then_the_report(tmp_path):
    tiny = [
        "--tasks", "inpainting", "--methods", "tikhonov", "tv-dp", "unrolled", "drip", "drip-dp",
        "--epochs", "1", "--quiet", "--root", str(tmp_path),
        "--set", "data.patch_size=16", "data.n_train=8", "data.n_val=4", "data.n_test=4",
        "data.batch_size=4", "model.image_size=16", "drip:model.latent_channels=4", "drip:model.n_filters=4",
        "drip:model.max_iter=10",
    ]  # fmt: skip
    first = run(*tiny)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("$ dtwin fit") == 2  # unrolled and drip; drip-dp reuses drip
    results = json.loads((tmp_path / "results.json").read_text())["inpainting"]
    assert set(results) == {"tikhonov", "tv-dp", "unrolled", "drip", "drip-dp"}
    for r in results.values():
        assert 0 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1 and 0 <= r["fits_data"] <= 1
    assert results["tv-dp"]["fits_data"] == 1.0  # lam chosen per sample to fit the data
    assert results["tikhonov"]["lam"] > 0 and results["tikhonov"]["parameters"] == 0
    drip, unrolled = results["drip"], results["unrolled"]
    assert drip["parameters"] > 0 and drip["epochs"] == 1 and drip["train_peak_MiB"] is not None
    # the unrolled network's width is chosen for DRIP's parameter budget
    assert abs(unrolled["parameters"] - drip["parameters"]) < 0.5 * drip["parameters"]
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
    assert "| inpainting | drip |" in (tmp_path / "results.md").read_text()
    again = run(*tiny)
    assert again.returncode == 0 and "$ dtwin fit" not in again.stdout


def test_bad_arguments_are_named():
    bad = run("--set", "n_train=3")
    assert bad.returncode == 2 and "--set takes KEY=VALUE" in bad.stderr
    bad = run("--set", "unet_posts:model.width=3")
    assert bad.returncode == 2 and "names no learned method" in bad.stderr
    bad = run("--epochs", "0")
    assert bad.returncode == 2 and "--epochs must be >= 1" in bad.stderr
    bad = run("--tasks", "denoise")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert "discrepancy principle" in run("--help").stdout
