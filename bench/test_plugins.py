"""A training step of every registered model plugin (defaults, its example batch), dtwin's
compiled kernels against the same step on the pure-torch reference ops (DTWIN_BACKEND=reference).
Plugins that use no dtwin op sit near 1x: the pair then guards the step's own cost against a
baseline run (dtwin bench --compare).

    pytest bench/test_plugins.py --benchmark-enable
"""

from __future__ import annotations

import pytest
import torch

from dtwin import registry

PLUGINS = [(kind, name) for kind in registry.MODEL_KINDS for name in registry.names(kind)]


@pytest.fixture(scope="module", autouse=True)
def warm_process():
    """Step every plugin once before timing: the first model of a process runs ~40% slower
    (glibc raises its mmap threshold only after the first large frees), which would favour
    whichever member of a pair runs second."""
    from dtwin.benchmarking import training_step

    for kind, name in PLUGINS:
        model = registry.load(kind, name)()
        step = training_step(model, model.example_batch(8))
        for _ in range(3):
            step()


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=[f"{k}-{n}" for k, n in PLUGINS])
def test_plugin_training_step(dtwin_benchmark_training_step, monkeypatch, kind, name, backend):
    monkeypatch.setenv("DTWIN_BACKEND", backend)
    torch.manual_seed(0)
    model = registry.load(kind, name)()
    dtwin_benchmark_training_step(
        model,
        model.example_batch(8),
        pair=f"{name} training step, batch 8",
        role="dtwin" if backend == "auto" else "reference ops",
        rounds=20,
        warmup=5,
    )
