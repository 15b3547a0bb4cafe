"""Every registered plugin passes the conformance kit; the template distribution installs,
shows up, and passes it too, through dtwin's pytest plugin as a third party would run it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from dtwin import registry
from dtwin.testing import check_plugin
from tests.conftest import ROOT

MODEL_PLUGINS = [s for s in registry.discover() if s.kind in registry.MODEL_KINDS]


@pytest.mark.parametrize("spec", MODEL_PLUGINS, ids=lambda s: f"{s.kind}/{s.name}")
def test_registered_plugin_conforms(spec):
    results = check_plugin(registry.load(spec.kind, spec.name), spec.name, kind=spec.kind)
    assert set(results.values()) == {"ok"}


def test_registered_datamodules_load():
    for spec in registry.discover("datamodules"):
        assert registry.load("datamodules", spec.name)


def test_template_plugin_conforms(template_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(template_plugin))
    importlib.invalidate_caches()
    registry._loaded.clear()
    spec = registry.get("operators", "conv_operator")
    assert spec.distribution == "dtwin-plugin-template" and spec.version == "0.1.0"
    results = check_plugin(registry.load("operators", "conv_operator"))
    assert len(results) == 7 and set(results.values()) == {"ok"}
    registry._loaded.clear()


def test_template_plugin_runs_its_own_tests_with_the_fixture(template_plugin):
    """The template's test suite uses the `dtwin_check_plugin` fixture from dtwin's pytest11 entry point."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(ROOT / "plugins" / "template" / "tests"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(template_plugin)},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout
