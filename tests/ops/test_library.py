"""The op machinery: backend choice, the one-time fallback warning, build facts."""

from __future__ import annotations

import warnings

import pytest
import torch

from dtwin.errors import BackendUnavailableError
from dtwin.ops import _library


def test_backend_env(monkeypatch):
    monkeypatch.setenv("DTWIN_BACKEND", "reference")
    assert _library.use_compiled("hh_simulate", torch.device("cpu")) is False
    monkeypatch.setenv("DTWIN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="DTWIN_BACKEND"):
        _library.backend()


def test_compiled_required_but_missing_raises(monkeypatch):
    monkeypatch.setenv("DTWIN_BACKEND", "compiled")
    with pytest.raises(BackendUnavailableError, match=r"no meta kernel|failed to import"):
        _library.use_compiled("hh_simulate", torch.device("meta"))


def test_fallback_warns_once_per_op_and_device(monkeypatch):
    monkeypatch.setenv("DTWIN_BACKEND", "auto")
    monkeypatch.setattr(_library, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert _library.use_compiled("hh_simulate", torch.device("meta")) is False
    relevant = [w for w in caught if "pure-torch reference" in str(w.message)]
    assert len(relevant) == 1


def test_reference_backend_gives_the_same_answer(monkeypatch):
    from dtwin.sim import hh

    pulses = torch.tensor([[1.0, 6.0, 7.0]], dtype=torch.float64)
    t = torch.linspace(0, 8, 17, dtype=torch.float64)
    compiled = hh.simulate(pulses, t, method="rk4")
    monkeypatch.setenv("DTWIN_BACKEND", "reference")
    reference = hh.simulate(pulses, t, method="rk4")
    torch.testing.assert_close(compiled, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(not _library.extension_loaded(), reason="dtwin._C is not built")
def test_build_info():
    info = _library.build_info()
    assert info["cpu"] is True
    assert info["cpu_simd"] in ("avx512", "avx2", "default")
    assert isinstance(info["cuda"], bool)
    assert _library.has_kernel("hh_simulate", "cpu")
