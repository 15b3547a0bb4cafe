"""How every dtwin op reaches a kernel: the compiled extension when it serves the tensor's
device, else the op's pure-torch reference (one warning per op and device type per process).

``DTWIN_BACKEND`` chooses: ``auto`` (default), ``reference`` (always the reference) or
``compiled`` (the compiled kernel, an error if this build has none for the device).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

from dtwin.errors import BackendUnavailableError

_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
_BACKENDS = ("auto", "reference", "compiled")
_warned: set[tuple[str, str]] = set()
_registered: list[str] = []
_extension_error: str | None = None

try:
    from dtwin import _C  # noqa: F401  (loading the library registers the ops)
except ImportError as exc:  # pragma: no cover - exercised by the reference-only CI leg
    _extension_error = f"{type(exc).__name__}: {exc}"


def extension_loaded() -> bool:
    """True when ``dtwin._C`` was imported (its ops are registered with torch)."""
    return _extension_error is None


def extension_error() -> str | None:
    """Why ``dtwin._C`` failed to import, or None."""
    return _extension_error


def backend() -> str:
    """The backend that ``DTWIN_BACKEND`` asks for."""
    value = os.environ.get("DTWIN_BACKEND", "auto").strip().lower() or "auto"
    if value not in _BACKENDS:
        raise ValueError(f"DTWIN_BACKEND must be one of {', '.join(_BACKENDS)}, got {value!r}")
    return value


def has_kernel(op: str, device_type: str) -> bool:
    """Whether the compiled ``dtwin::op`` has a kernel for ``device_type`` ('cpu', 'cuda')."""
    key = _DISPATCH_KEYS.get(device_type)
    if not extension_loaded() or key is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"dtwin::{op}", key)


@torch.compiler.assume_constant_result
def use_compiled(op: str, device: torch.device) -> bool:
    """Decide, for one call, between the compiled kernel and the reference. Under torch.compile
    the decision is taken once, while tracing, and is a constant of the graph (no graph break)."""
    choice = backend()
    if choice == "reference":
        return False
    if has_kernel(op, device.type):
        return True
    reason = (
        f"dtwin._C failed to import ({_extension_error})"
        if not extension_loaded()
        else f"this build of dtwin._C has no {device.type} kernel for it"
    )
    if choice == "compiled":
        raise BackendUnavailableError(
            f"dtwin.ops.{op}: DTWIN_BACKEND=compiled but {reason}. Rebuild with "
            "`pip install -e . --no-build-isolation` (CUDA kernels need a CUDA build of torch and nvcc)."
        )
    if (op, device.type) not in _warned:
        _warned.add((op, device.type))
        warnings.warn(
            f"dtwin.ops.{op}: {reason}; using the pure-torch reference on {device.type} "
            "(correct, much slower). Rebuild with `pip install -e . --no-build-isolation`.",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


def register(
    op: str,
    *,
    fake: Callable[..., Any],
    backward: Callable[..., Any] | None = None,
    setup_context: Callable[..., Any] | None = None,
) -> None:
    """Attach the Python parts of ``dtwin::op`` (fake kernel, autograd) when it is compiled."""
    _registered.append(op)
    if not extension_loaded():
        return
    name = f"dtwin::{op}"
    torch.library.register_fake(name)(fake)
    if backward is not None:
        torch.library.register_autograd(name, backward, setup_context=setup_context)


def registered_ops() -> list[str]:
    """The dtwin ops that have a Python face (backward ops included)."""
    return list(_registered)


def build_info() -> dict[str, Any]:
    """What the compiled extension contains (empty when it is not loaded)."""
    if not extension_loaded():
        return {}
    return json.loads(torch.ops.dtwin.build_info())
