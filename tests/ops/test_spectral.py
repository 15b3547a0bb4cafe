"""dtwin.ops.spectral_conv1d / spectral_conv2d: both algorithms against the definition, opcheck,
gradcheck, gradients against autograd of the definition, neuraloperator equality, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtwin.ops import (
    spectral_conv1d,
    spectral_conv1d_reference,
    spectral_conv2d,
    spectral_conv2d_reference,
)
from dtwin.testing.ops import DEVICES, OpSample, OpTestBase, relayout, requires_kernel

DTYPES = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _rand(g, *shape, dtype):
    return torch.randn(*shape, generator=g, dtype=dtype)


@st.composite
def samples_1d(draw) -> OpSample:
    dtype = draw(st.sampled_from(list(DTYPES)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    B, Cin, Cout = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    L = draw(st.integers(2, 40))
    M = draw(st.integers(1, L // 2 + 1))
    out_len = draw(st.one_of(st.none(), st.integers(1, 50)))
    x = relayout(
        _rand(g, B, Cin, L, dtype=dtype), draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    )
    w = relayout(
        _rand(g, Cin, Cout, M, dtype=DTYPES[dtype]), draw(st.sampled_from(["contiguous", "strided"]))
    )
    algorithm = draw(st.sampled_from(["auto", "dft", "fft"]))
    return OpSample(
        (x, w, out_len), {"algorithm": algorithm}, f"B{B} Cin{Cin} Cout{Cout} L{L} M{M} out{out_len}"
    )


@st.composite
def samples_2d(draw) -> OpSample:
    dtype = draw(st.sampled_from(list(DTYPES)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    B, Cin, Cout = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    H, W = draw(st.integers(2, 16)), draw(st.integers(2, 16))
    M1, M2 = draw(st.integers(1, H // 2)), draw(st.integers(1, W // 2 + 1))
    out_shape = draw(st.one_of(st.none(), st.tuples(st.integers(2 * M1, 20), st.integers(1, 20))))
    x = relayout(
        _rand(g, B, Cin, H, W, dtype=dtype), draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    )
    w = relayout(
        _rand(g, Cin, Cout, 2 * M1, M2, dtype=DTYPES[dtype]), draw(st.sampled_from(["contiguous", "strided"]))
    )
    algorithm = draw(st.sampled_from(["auto", "dft", "fft"]))
    return OpSample(
        (x, w, out_shape),
        {"algorithm": algorithm},
        f"B{B} Cin{Cin} Cout{Cout} {H}x{W} M({M1},{M2}) out{out_shape}",
    )


def _op_args_1d(requires_grad: bool):
    g = torch.Generator().manual_seed(0)
    x = _rand(g, 2, 3, 12, dtype=torch.float64).requires_grad_(requires_grad)
    w = _rand(g, 3, 4, 5, dtype=torch.complex128).requires_grad_(requires_grad)
    return x, w


class TestSpectralConv1d(OpTestBase):
    op = "spectral_conv1d"
    tolerances = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-10, 1e-10)}

    def samples(self):
        return samples_1d()

    def call(self, sample):
        return spectral_conv1d(*sample.args, **sample.kwargs)

    def call_reference(self, sample):
        return spectral_conv1d_reference(*sample.args)

    def opcheck_samples(self):
        x, w = _op_args_1d(True)
        modes = torch.randn(2, 1, 2, 3, 5, dtype=torch.float64)
        grad = torch.randn(2, 4, 15, dtype=torch.float64)
        op, back = "spectral_conv1d", "spectral_conv1d_backward"
        return [
            (op, (x, w, None, "dft"), {}),
            (op, (x, w, 15, "fft"), {}),
            (op, (x.float().detach(), w.cfloat().detach(), 7, "auto"), {}),
            (back, (grad, [2, 3, 12], w.detach(), modes, "dft", True, True), {}),
            (back, (grad, [2, 3, 12], w.detach(), modes, "fft", False, True), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for algorithm in ("dft", "fft"):
            for out_len in (None, 17, 7):
                x, w = _op_args_1d(True)
                cases.append(
                    (lambda x, w, a=algorithm, n=out_len: spectral_conv1d(x, w, n, algorithm=a), (x, w))
                )
        return cases


class TestSpectralConv2d(OpTestBase):
    op = "spectral_conv2d"
    tolerances = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-10, 1e-10)}

    def samples(self):
        return samples_2d()

    def call(self, sample):
        return spectral_conv2d(*sample.args, **sample.kwargs)

    def call_reference(self, sample):
        return spectral_conv2d_reference(*sample.args)

    def opcheck_samples(self):
        g = torch.Generator().manual_seed(1)
        x = _rand(g, 2, 3, 8, 9, dtype=torch.float64).requires_grad_()
        w = _rand(g, 3, 2, 4, 3, dtype=torch.complex128).requires_grad_()
        modes = torch.randn(2, 4, 2, 3, 3, dtype=torch.float64)
        grad = torch.randn(2, 2, 10, 7, dtype=torch.float64)
        op, back = "spectral_conv2d", "spectral_conv2d_backward"
        return [
            (op, (x, w, None, "dft"), {}),
            (op, (x, w, [10, 7], "fft"), {}),
            (back, (grad, [2, 3, 8, 9], w.detach(), modes, "dft", True, True), {}),
            (back, (grad, [2, 3, 8, 9], w.detach(), modes, "fft", True, False), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for algorithm in ("dft", "fft"):
            for out_shape in (None, (10, 7)):
                g = torch.Generator().manual_seed(2)
                x = _rand(g, 2, 3, 8, 9, dtype=torch.float64).requires_grad_()
                w = _rand(g, 3, 2, 4, 3, dtype=torch.complex128).requires_grad_()
                cases.append(
                    (lambda x, w, a=algorithm, s=out_shape: spectral_conv2d(x, w, s, algorithm=a), (x, w))
                )
        return cases


@pytest.mark.skipif("cuda" not in DEVICES, reason="float16/bfloat16 run on CUDA only")
@requires_kernel("spectral_conv1d", "cuda")
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)], ids=["bf16", "fp16"]
)
def test_reduced_precision_on_cuda(dims, dtype, tol):
    """float16/bfloat16 input (complex64 weight, float32 accumulation): output and gradients
    against the float64 definition evaluated at the same rounded input."""
    g = torch.Generator().manual_seed(5)
    if dims == 1:
        x, w = _rand(g, 3, 5, 96, dtype=torch.float32), _rand(g, 5, 4, 20, dtype=torch.complex64) * 0.3
        op, ref = spectral_conv1d, spectral_conv1d_reference
    else:
        x, w = _rand(g, 2, 3, 24, 20, dtype=torch.float32), _rand(g, 3, 4, 8, 6, dtype=torch.complex64) * 0.3
        op, ref = spectral_conv2d, spectral_conv2d_reference
    x = x.to(dtype)
    xd, wd = x.cuda().requires_grad_(), w.cuda().requires_grad_()
    y = op(xd, wd)
    assert y.dtype == dtype and y.device.type == "cuda"
    grad = torch.randn(y.shape, generator=g).to(dtype)
    y.backward(grad.cuda())
    assert xd.grad.dtype == dtype and wd.grad.dtype == torch.complex64
    x64, w64 = x.double().requires_grad_(), w.to(torch.complex128).requires_grad_()
    y64 = ref(x64, w64)
    y64.backward(grad.double())
    for name, ours, theirs in (("y", y, y64), ("grad x", xd.grad, x64.grad), ("grad w", wd.grad, w64.grad)):
        ours = ours.detach().cpu().to(theirs.dtype)
        rel = float((ours - theirs).norm() / theirs.norm())
        assert rel < tol, f"{name}: relative L2 error {rel:.2e} in {dtype} (tolerance {tol})"


@requires_kernel("spectral_conv1d")
@settings(max_examples=25, deadline=None, derandomize=True)
@given(sample=st.one_of(samples_1d(), samples_2d()))
def test_gradients_match_autograd_of_the_definition(sample):
    """The backward ops against autograd through the definition, for a random upstream gradient."""
    x, w, out = sample.args
    op, ref = (
        (spectral_conv1d, spectral_conv1d_reference)
        if x.dim() == 3
        else (spectral_conv2d, spectral_conv2d_reference)
    )
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y = op(x, w, out, **sample.kwargs)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), gy)
    rx, rw = torch.autograd.grad(ref(x, w, out), (x, w), gy)
    tol = dict(rtol=1e-4, atol=1e-4) if x.dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gx, rx, **tol)
    torch.testing.assert_close(gw, rw, **tol)


def test_only_the_requested_gradient_is_computed():
    x, w = _op_args_1d(False)
    modes = torch.ops.dtwin.spectral_conv1d(x, w, None, "dft")[1]
    grad = torch.randn(2, 4, 12, dtype=torch.float64)
    gx, gw = torch.ops.dtwin.spectral_conv1d_backward(grad, [2, 3, 12], w, modes, "dft", True, False)
    assert gx.shape == x.shape and gw.numel() == 0


# --------------------------------------------------------------------------------------------
# equality with neuraloperator 2.0


@pytest.fixture(scope="module")
def neuralop_spectral_conv():
    module = pytest.importorskip(
        "neuralop.layers.spectral_convolution",
        reason="neuraloperator is not installed (pip install neuraloperator)",
    )
    return module.SpectralConv


def test_equals_neuraloperator_1d(neuralop_spectral_conv):
    torch.manual_seed(0)
    # neuraloperator's n_modes counts the whole spectrum: n_modes=30 keeps the 16 rfft modes meant here
    layer = neuralop_spectral_conv(4, 3, n_modes=(30,), bias=False)
    weight = layer.weight.to_tensor() if hasattr(layer.weight, "to_tensor") else layer.weight
    assert weight.shape == (4, 3, 16)
    x = torch.randn(5, 4, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            spectral_conv1d(x, weight.detach().clone()), layer(x), rtol=1e-4, atol=1e-5
        )


def test_equals_neuraloperator_2d(neuralop_spectral_conv):
    torch.manual_seed(1)
    layer = neuralop_spectral_conv(3, 2, n_modes=(8, 10), bias=False)
    weight = (layer.weight.to_tensor() if hasattr(layer.weight, "to_tensor") else layer.weight).detach()
    assert weight.shape == (3, 2, 8, 6)
    # neuraloperator orders the rows of dim -2 by frequency -M1..M1-1 (fftshifted); dtwin keeps
    # rows [:M1] (0..M1-1) then [-M1:] (-M1..-1)
    ours = torch.cat((weight[:, :, 4:], weight[:, :, :4]), dim=2).contiguous()
    x = torch.randn(2, 3, 16, 18)
    with torch.no_grad():
        torch.testing.assert_close(spectral_conv2d(x, ours), layer(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# bad input

BAD = {
    "x rank": (
        lambda: spectral_conv1d(torch.randn(2, 3), torch.randn(3, 2, 2, dtype=torch.cfloat)),
        "x must be",
    ),
    "weight rank": (
        lambda: spectral_conv1d(torch.randn(2, 3, 8), torch.randn(3, 2, dtype=torch.cfloat)),
        "weight must be",
    ),
    "real weight": (lambda: spectral_conv1d(torch.randn(2, 3, 8), torch.randn(3, 2, 2)), "complex"),
    "channels": (
        lambda: spectral_conv1d(torch.randn(2, 4, 8), torch.randn(3, 2, 2, dtype=torch.cfloat)),
        "4 channels but weight expects Cin = 3",
    ),
    "too many modes": (
        lambda: spectral_conv1d(torch.randn(2, 3, 8), torch.randn(3, 2, 6, dtype=torch.cfloat)),
        "M = 6 modes",
    ),
    "dtype mix": (
        lambda: spectral_conv1d(
            torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(3, 2, 2, dtype=torch.cfloat)
        ),
        "complex128",
    ),
    "device mix": (
        lambda: spectral_conv1d(
            torch.randn(2, 3, 8, device="meta"), torch.randn(3, 2, 2, dtype=torch.cfloat)
        ),
        "meta",
    ),
    "bf16 on cpu": (
        lambda: spectral_conv1d(
            torch.randn(2, 3, 8, dtype=torch.bfloat16), torch.randn(3, 2, 2, dtype=torch.cfloat)
        ),
        "CUDA",
    ),
    "out_len": (
        lambda: spectral_conv1d(torch.randn(2, 3, 8), torch.randn(3, 2, 2, dtype=torch.cfloat), 0),
        "out_len",
    ),
    "algorithm": (
        lambda: spectral_conv1d(
            torch.randn(2, 3, 8), torch.randn(3, 2, 2, dtype=torch.cfloat), algorithm="wavelet"
        ),
        "algorithm",
    ),
    "2d rows": (
        lambda: spectral_conv2d(torch.randn(2, 3, 8, 8), torch.randn(3, 2, 3, 2, dtype=torch.cfloat)),
        "2\\*M1 rows",
    ),
    "2d too many rows": (
        lambda: spectral_conv2d(torch.randn(2, 3, 4, 8), torch.randn(3, 2, 6, 2, dtype=torch.cfloat)),
        "2\\*M1 <= H",
    ),
    "2d columns": (
        lambda: spectral_conv2d(torch.randn(2, 3, 8, 8), torch.randn(3, 2, 4, 6, dtype=torch.cfloat)),
        "M2 = 6",
    ),
    "2d out_shape": (
        lambda: spectral_conv2d(torch.randn(2, 3, 8, 8), torch.randn(3, 2, 4, 2, dtype=torch.cfloat), (3, 8)),
        "out_shape",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_the_problem(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        fn()


@requires_kernel("spectral_conv1d")
def test_direct_op_call_checks_its_arguments():
    with pytest.raises(RuntimeError, match="weight keeps M = 6 modes"):
        torch.ops.dtwin.spectral_conv1d(
            torch.randn(2, 3, 8), torch.randn(3, 2, 6, dtype=torch.cfloat), None, "auto"
        )
    with pytest.raises(RuntimeError, match="algorithm must be"):
        torch.ops.dtwin.spectral_conv1d(
            torch.randn(2, 3, 8), torch.randn(3, 2, 2, dtype=torch.cfloat), None, "x"
        )
