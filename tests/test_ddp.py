"""Scale-out: a two-process DDP fit on the CPU through the `dtwin` command."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_dtwin


@pytest.mark.slow
def test_two_process_ddp_fit(template_plugin, tmp_path):
    args = [
        "fit",
        "--model",
        "conv_operator",
        "--data",
        "hh",
        "--data.n_samples",
        "72",
        "--data.n_train",
        "48",
        "--data.n_val",
        "8",
        "--data.n_points",
        "32",
        "--data.batch_size",
        "8",
        "--data.seed",
        "3",
        "--model.out_offset",
        "-65",
        "--model.out_scale",
        "30",
        "--trainer.max_epochs",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
    ]
    result = run_dtwin(*args, env={"PYTHONPATH": str(template_plugin), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    fit = json.loads(next(tmp_path.glob("**/metrics.json")).read_text())["fit"]
    # 48 training samples sharded over 2 ranks in batches of 8: 3 steps per epoch, not 6
    assert fit["global_step"] == 6
    # the logged validation metric is the mean over all 8 validation samples, both ranks' shards:
    # recompute it in one process from the saved weights
    from dtwin import registry
    from dtwin.data import HHDataModule

    ckpt = next(tmp_path.glob("**/last.ckpt"))
    state = torch.load(ckpt, weights_only=True)
    cls_path = state["dtwin_plugin"]["class_path"]
    assert cls_path == "dtwin_plugin_template.conv.ConvOperator"
    import sys

    sys.path.insert(0, str(template_plugin))
    try:
        import importlib

        importlib.invalidate_caches()
        registry._loaded.clear()
        model = registry.load_checkpoint("conv_operator", ckpt).eval()
        dm = HHDataModule(n_samples=72, n_train=48, n_val=8, n_points=32, batch_size=8, seed=3)
        dm.setup()
        batch = dm.datasets["val"][:]
        with torch.no_grad():
            err = model.per_sample_error(model(batch), batch["y"]).mean()
        assert abs(float(err) - fit["metrics"]["val/rel_l2"]) < 1e-5
    finally:
        sys.path.remove(str(template_plugin))
        registry._loaded.clear()
