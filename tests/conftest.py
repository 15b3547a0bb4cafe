"""Suite-wide settings: generated data go to a temporary cache, hypothesis is deterministic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("dtwin", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("dtwin")

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """Import scripts/<name>.py as a module (the experiment scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    """Data sets that tests generate go to a temporary cache, not the user's."""
    old = os.environ.get("DTWIN_CACHE_DIR")
    os.environ["DTWIN_CACHE_DIR"] = str(tmp_path_factory.mktemp("dtwin-cache"))
    yield
    if old is None:
        os.environ.pop("DTWIN_CACHE_DIR", None)
    else:
        os.environ["DTWIN_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def template_plugin(tmp_path_factory) -> Path:
    """plugins/template installed (as a user would, from its pyproject) into a temporary folder;
    put the folder on sys.path / PYTHONPATH to see it."""
    target = tmp_path_factory.mktemp("template-plugin")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(target),
            str(ROOT / "plugins" / "template"),
        ],
        check=True,
    )
    return target


def run_dtwin(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m dtwin ARGS` in a subprocess, from the repository root."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dtwin", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def one_thread():
    """torch on one thread for the test (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    the models and problems of these tests are small, one thread is as fast, and on a busy machine
    two threads that wait on each other at every convolution make a step up to 100 times slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
