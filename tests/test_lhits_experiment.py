"""scripts/lhits_experiment.py: a tiny KS run end to end (fits, evaluation, tables, figures), its
resumption, and bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "lhits_experiment.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_a_tiny_run_then_the_report(tmp_path):
    tiny = [
        "--systems", "ks", "--variants", "lhits", "hits", "--latent-sizes", "2",
        "--epochs", "2", "--ae-epochs", "1", "--repeats", "1", "--quiet", "--root", str(tmp_path),
        "--set", "data.n_train=4", "data.n_val=2", "data.n_test=2", "data.n_steps_train=32",
        "data.n_steps_eval=32", f"data.cache_dir={tmp_path / 'cache'}", "model.step_exponents=[0,1,2]",
        "model.map_hidden=[8]", "model.ae_hidden=[8]", "model.ae_epochs=1",
        "trainer.check_val_every_n_epoch=1",
    ]  # fmt: skip
    first = run(*tiny)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("$ dtwin fit") == 3
    results = json.loads((tmp_path / "results.json").read_text())["ks"]
    assert results["n_test"] == 2 and results["n_steps"] == 32
    assert set(results["models"]) == {"lhits", "hits"}
    for m in results["models"].values():
        assert m["mse"] > 0 and m["wall_seconds"] > 0 and set(m["exponents"]) <= {0, 1, 2}
    assert results["models"]["lhits"]["latent_size"] == 8 and results["models"]["hits"]["latent_size"] is None
    assert set(results["reconstruction"]["pca"]) == {"2"} and set(
        results["reconstruction"]["autoencoder"]
    ) == {"2"}
    assert set(results["models"]["lhits"]["mse_by_horizon"]) == {"0.02", "0.1", "0.25", "0.5", "1.0"}
    assert (tmp_path / "ks-error-vs-time.png").stat().st_size > 0
    assert (tmp_path / "ks-spacetime.png").stat().st_size > 0 and (tmp_path / "ks-ae-vs-pca.png").is_file()
    assert "| lhits |" in (tmp_path / "results.md").read_text()
    # a second call finds the fits done and only evaluates
    again = run(*tiny)
    assert again.returncode == 0 and "$ dtwin fit" not in again.stdout

    # only an autoencoder, in a fresh root, over the kept records: those stay, the new size joins
    earlier = json.loads((tmp_path / "results.json").read_text())
    earlier["ks"]["reconstruction"]["autoencoder"]["2"] = 123.0  # kept: latent size 2 is not rerun
    earlier["fhn"] = {**earlier["ks"], "n_test": 7}  # a system not evaluated: carried over whole
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    fresh = tmp_path / "fresh"
    only_ae = [a if a != str(tmp_path) else str(fresh) for a in tiny]
    only_ae[only_ae.index("--variants") : only_ae.index("--epochs")] = ["--variants", "--latent-sizes", "3"]
    merged = run(*only_ae, "--merge", str(tmp_path / "earlier.json"))
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert merged.stdout.count("$ dtwin fit") == 1
    written = json.loads((fresh / "results.json").read_text())
    assert written["fhn"] == earlier["fhn"]
    kept = written["ks"]
    assert kept["models"] == earlier["ks"]["models"] and kept["solver"] == earlier["ks"]["solver"]
    assert list(kept["reconstruction"]["pca"]) == ["2", "3"]
    assert (
        kept["reconstruction"]["autoencoder"]["2"] == 123.0 and kept["reconstruction"]["autoencoder"]["3"] > 0
    )
    assert "| lhits |" in (fresh / "results.md").read_text() and (fresh / "ks-ae-vs-pca.png").is_file()


def test_bad_arguments_are_named():
    bad = run("--set", "n_train=3")
    assert (
        bad.returncode == 2 and "--set takes KEY=VALUE with KEY under data., model. or trainer." in bad.stderr
    )
    bad = run("--latent-sizes", "0")
    assert bad.returncode == 2 and "--latent-sizes must be >= 1" in bad.stderr
    assert "full-state HiTS" in run("--help").stdout


def test_a_bad_merge_file_is_named(tmp_path):
    (tmp_path / "not.json").write_text('{"lorenz": {}}')
    wrong = run("--report", "--root", str(tmp_path), "--merge", str(tmp_path / "not.json"))
    assert wrong.returncode == 2 and "--merge" in wrong.stderr and "not a results.json" in wrong.stderr
    missing = run("--report", "--root", str(tmp_path), "--merge", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
