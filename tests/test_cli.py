"""The `dtwin` command, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.conftest import run_dtwin

SMALL_DATA = [
    "--data",
    "hh",
    "--data.n_samples",
    "48",
    "--data.n_train",
    "32",
    "--data.n_val",
    "8",
    "--data.n_points",
    "40",
    "--data.batch_size",
    "8",
]


def test_help_lists_the_commands():
    result = run_dtwin("--help")
    assert result.returncode == 0
    for command in ("fit", "list", "info", "simulate", "bench"):
        assert command in result.stdout


def test_info_shows_the_compiled_backend():
    result = run_dtwin("info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["extension"] == "loaded"
    assert info["cpu_simd"] in ("avx512", "avx2", "default")
    assert "cpu" in info["kernels"]["hh_simulate"]


def test_list_shows_builtin_and_installed_plugins(template_plugin):
    result = run_dtwin("list", env={"PYTHONPATH": str(template_plugin)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["datamodules", "hh"] and "ok" in line for line in lines)
    assert any(line.split()[:3] == ["operators", "conv_operator", "dtwin-plugin-template"] for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--model", "nonexistent", "--data", "hh"], "no model plugin named 'nonexistent'"),
        (
            ["fit", "--model", "conv_operator", "--data", "nothing"],
            "no plugin named 'nothing' in dtwin.datamodules; "
            "available datamodules: digits_syn2real, fhn, hh, hh_conductance, image_patches, ks, tanks",
        ),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_bad_names_get_clear_errors(args, message, template_plugin):
    result = run_dtwin(*args, env={"PYTHONPATH": str(template_plugin)})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_option_names_it(template_plugin):
    result = run_dtwin(
        "fit",
        "--model",
        "conv_operator",
        *SMALL_DATA,
        "--model.widthh",
        "3",
        env={"PYTHONPATH": str(template_plugin)},
    )
    assert result.returncode == 2
    assert "widthh" in result.stderr and "not accepted" in result.stderr


def test_fit_then_resume_then_test(template_plugin, tmp_path):
    env = {"PYTHONPATH": str(template_plugin)}
    common = [
        "--model",
        "conv_operator",
        *SMALL_DATA,
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--model.out_offset",
        "-65",
        "--model.out_scale",
        "30",
    ]
    first = run_dtwin("fit", *common, "--trainer.max_epochs", "1", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_dtwin("fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", "last", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "--ckpt_path last: " in second.stderr
    metrics = sorted(tmp_path.glob("**/metrics.json"))
    fit = json.loads(metrics[-1].read_text())["fit"]
    assert fit["epoch"] == 2 and fit["global_step"] == 8  # 4 steps per epoch, the first epoch restored
    assert fit["epochs_timed"] == 1 and fit["seconds_per_epoch"] > 0  # the epoch this process ran
    ckpt = sorted(tmp_path.glob("**/last.ckpt"))[-1]
    test = run_dtwin("test", *common, "--ckpt_path", str(ckpt), env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    result = json.loads(sorted(tmp_path.glob("**/metrics.json"), key=os.path.getmtime)[-1].read_text())
    assert 0 < result["test"]["metrics"]["test/rel_l2"] < 1
    # the operator report: per-sample errors over the 8 test samples and the figure
    run_dir = sorted(tmp_path.glob("**/report.json"), key=os.path.getmtime)[-1].parent
    report = json.loads((run_dir / "report.json").read_text())
    assert (
        report["samples"] == 8
        and abs(report["rel_l2_mean"] - result["test"]["metrics"]["test/rel_l2"]) < 1e-5
    )
    assert (run_dir / "predictions.png").stat().st_size > 20_000
    assert "dtwin: test relative L2" in test.stdout


def test_every_epoch_is_checkpointed_when_validation_is_sparse(template_plugin, tmp_path):
    """With validation every 2 epochs, the last of 3 epochs is still in last.ckpt (Lightning alone
    saves only on validation epochs: an interrupted run would lose the epochs since)."""
    args = ["--model", "conv_operator", *SMALL_DATA, "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "3"]
    result = run_dtwin(
        "fit", *args, "--trainer.check_val_every_n_epoch", "2", env={"PYTHONPATH": str(template_plugin)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(sorted(tmp_path.glob("**/last.ckpt"))[-1], map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 12


def test_config_file_takes_plugin_names(template_plugin, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: conv_operator\n"
        "data:\n  class_path: hh\n  init_args: {n_samples: 24, n_train: 16, n_points: 20, batch_size: 8}\n"
        f"trainer: {{max_epochs: 1, default_root_dir: {tmp_path}, enable_progress_bar: false}}\n"
    )
    result = run_dtwin("fit", "--config", str(config), env={"PYTHONPATH": str(template_plugin)})
    assert result.returncode == 0, result.stderr[-3000:]
    saved = next(tmp_path.glob("**/config.yaml")).read_text()
    assert "dtwin_plugin_template.conv.ConvOperator" in saved and "dtwin.data.hh.HHDataModule" in saved


def test_simulate_writes_traces_and_a_plot(tmp_path):
    out = tmp_path / "hh.pt"
    result = run_dtwin("simulate", "hh", "--n", "30", "--out", str(out), "--points", "101")
    assert result.returncode == 0, result.stderr
    data = torch.load(out, weights_only=True)
    assert data["V"].shape == (30, 101) and data["pulses"].shape == (30, 1, 3)
    assert out.with_suffix(".png").stat().st_size > 10_000
    bad = run_dtwin("simulate", "hh", "--n", "0", "--out", str(out))
    assert bad.returncode == 2 and "--n must be >= 1" in bad.stderr
