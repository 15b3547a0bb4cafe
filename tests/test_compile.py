"""torch.compile traces the operators built on dtwin's ops in one graph (fake kernels, autograd
and the kernel choice are all traceable) and the compiled model equals eager."""

from __future__ import annotations

import pytest

from dtwin.ops import extension_loaded
from tests.conftest import load_script


def _script():
    return load_script("compile_check")


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
