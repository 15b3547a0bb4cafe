"""torch.compile traces the operators built on dtwin's ops in one graph (fake kernels, autograd
and the kernel choice are all traceable) and the compiled model equals eager."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dtwin.ops import extension_loaded

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compile_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("compile_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not extension_loaded(), reason="dtwin._C is not built")
@pytest.mark.parametrize("model", ["fno", "wno"])
def test_operator_compiles_without_graph_breaks(model, capsys):
    assert (
        _script().main(
            ["--model", model, "--device", "cpu", "--backend", "aot_eager", "--batch", "4", "--repeats", "1"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "0 break(s)" in out, out
