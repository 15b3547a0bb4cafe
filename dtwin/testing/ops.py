"""The shared test base of dtwin's ops: every op's tests subclass :class:`OpTestBase`.

A subclass says how to draw valid inputs (a hypothesis strategy) and how to call the op; the
base supplies the tests: compiled kernel against the pure-torch reference over random shapes,
dtypes and memory layouts, ``torch.library.opcheck`` on the registered op, and ``gradcheck``
in float64 where the op has a backward. Third-party op authors can reuse it the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

__all__ = [
    "DEVICES",
    "OpSample",
    "OpTestBase",
    "assert_close_to_reference",
    "layouts",
    "relayout",
    "requires_kernel",
    "to_device",
]

#: The devices the op tests run on: the CPU always, CUDA when torch sees a GPU.
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

#: How a tensor is laid out in memory: as allocated, a strided view, or a transposed copy.
LAYOUTS = ("contiguous", "strided", "transposed")


def layouts() -> st.SearchStrategy[str]:
    return st.sampled_from(LAYOUTS)


def relayout(x: Tensor, layout: str) -> Tensor:
    """The same values as ``x`` in another memory layout (never contiguous unless asked)."""
    if layout == "contiguous" or x.dim() == 0:
        return x.contiguous()
    if layout == "strided":
        # every other element of a buffer twice as long in the last dimension
        buf = torch.empty(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
        buf.fill_(float("nan") if x.is_floating_point() else 0)
        view = buf[..., ::2]
        view.copy_(x)
        return view
    if layout == "transposed":
        if x.dim() < 2:
            return relayout(x, "strided")
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    raise ValueError(f"relayout: unknown layout {layout!r}; use one of {LAYOUTS}")


def to_device(value: Any, device: str | torch.device) -> Any:
    """``value`` with every tensor (in nested lists and tuples too) on ``device``, keeping each
    tensor's strides (a strided or transposed layout stays one) and its ``requires_grad``."""
    if isinstance(value, Tensor):
        if value.device == torch.device(device):
            return value
        out = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=device)
        out.copy_(value.detach())
        return out.requires_grad_(value.requires_grad)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


@dataclass
class OpSample:
    """Inputs of one call: positional and keyword arguments of the public function."""

    args: tuple
    kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def map_tensors(self, fn) -> OpSample:
        def apply(v: Any) -> Any:
            return fn(v) if isinstance(v, Tensor) else v

        return OpSample(
            tuple(apply(a) for a in self.args), {k: apply(v) for k, v in self.kwargs.items()}, self.note
        )


def assert_close_to_reference(actual: Any, expected: Any, rtol: float, atol: float, what: str = "") -> None:
    """Compare nested tuples of tensors; NaNs must sit in the same places."""
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected), f"{what}: {len(actual)} outputs, reference has {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close_to_reference(a, e, rtol, atol, f"{what}[{i}]")
        return
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{what}: {m}"
    )


def requires_kernel(op: str, device: str = "cpu"):
    """Skip (with the reason) when this build has no compiled kernel of ``op`` for ``device``."""
    from dtwin.ops import _library

    return pytest.mark.skipif(
        not _library.has_kernel(op, device),
        reason=f"dtwin._C has no {device} kernel for {op} "
        f"({_library.extension_error() or 'not built for this device'})",
    )


class OpTestBase:
    """Base of an op's test class. Subclasses set ``op`` and implement the hooks below.

    Every test runs once per device of :data:`DEVICES`. Samples are drawn on the CPU; on another
    device the compiled op runs on a copy of the sample (same strides) and is compared with the
    reference computed on the CPU. The opcheck and gradcheck hooks may read ``self.device`` to
    build tensors that their closures capture; their arguments and inputs are moved there."""

    #: the op's name in the dtwin namespace (torch.ops.dtwin.<op>)
    op: ClassVar[str] = ""
    #: dtype -> (rtol, atol) for compiled vs reference
    tolerances: ClassVar[dict[torch.dtype, tuple[float, float]]] = {
        torch.float32: (1e-4, 1e-5),
        torch.float64: (1e-10, 1e-12),
    }
    max_examples: ClassVar[int] = int(os.environ.get("DTWIN_HYPOTHESIS_EXAMPLES", "30"))
    #: the device of the test that is running (set by the tests before the hooks are called)
    device: str = "cpu"

    # ---- hooks ------------------------------------------------------------------------------

    def samples(self) -> st.SearchStrategy[OpSample]:
        """A strategy of valid inputs to the public function (any dtype and layout)."""
        raise NotImplementedError

    def call(self, sample: OpSample) -> Any:
        """The public op (dispatching to the compiled kernel)."""
        raise NotImplementedError

    def call_reference(self, sample: OpSample) -> Any:
        """The op's pure-torch reference on the same sample."""
        raise NotImplementedError

    def tolerance(self, sample: OpSample) -> tuple[float, float]:
        """The tolerances of the first floating tensor among the arguments (lists searched too)."""

        def floats(v: Any):
            if isinstance(v, Tensor):
                if v.is_floating_point() or v.is_complex():
                    yield v.dtype
            elif isinstance(v, (list, tuple)):
                for item in v:
                    yield from floats(item)

        dtype = next(floats([*sample.args, *sample.kwargs.values()]), torch.float64)
        real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
        return self.tolerances[real]

    def opcheck_samples(self) -> Sequence[tuple[str, tuple, dict]]:
        """(op name, args, kwargs) for ``torch.library.opcheck(torch.ops.dtwin.<name>, ...)``: the
        op itself and any companion ops (its backward)."""
        return []

    def gradcheck_samples(self) -> Sequence[tuple[Any, tuple[Tensor, ...]]]:
        """(function, float64 or complex128 inputs requiring grad) for gradcheck; empty when no
        backward."""
        return []

    # ---- the tests ----------------------------------------------------------------------------

    def _use_device(self, device: str) -> None:
        if not self.op:
            pytest.skip("abstract base")
        from dtwin.ops import _library

        if not _library.has_kernel(self.op, device):
            pytest.skip(f"dtwin._C has no {device} kernel for {self.op}")
        self.device = device

    @pytest.mark.parametrize("device", DEVICES)
    def test_matches_reference(self, device: str) -> None:
        self._use_device(device)

        @settings(
            max_examples=self.max_examples,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(sample=self.samples())
        def run(sample: OpSample) -> None:
            rtol, atol = self.tolerance(sample)
            moved = OpSample(to_device(sample.args, device), to_device(sample.kwargs, device), sample.note)
            actual = to_device(self.call(moved), "cpu")
            assert_close_to_reference(
                actual, self.call_reference(sample), rtol, atol, f"{self.op} ({sample.note}) on {device}"
            )

        run()

    @pytest.mark.parametrize("device", DEVICES)
    def test_opcheck(self, device: str) -> None:
        self._use_device(device)
        cases = to_device(self.opcheck_samples(), device)
        assert any(name == self.op for name, _, _ in cases), (
            f"{type(self).__name__} gives no opcheck sample of {self.op}"
        )
        for name, args, kwargs in cases:
            torch.library.opcheck(getattr(torch.ops.dtwin, name).default, args, kwargs)

    @pytest.mark.parametrize("device", DEVICES)
    def test_gradcheck(self, device: str) -> None:
        self._use_device(device)
        cases = self.gradcheck_samples()
        if not cases:
            pytest.skip(f"{self.op} has no backward")
        for fn, inputs in cases:
            inputs = to_device(tuple(inputs), device)
            assert all(x.dtype in (torch.float64, torch.complex128) for x in inputs), (
                "gradcheck inputs must be float64 or complex128"
            )
            assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
