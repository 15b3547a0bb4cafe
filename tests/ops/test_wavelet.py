"""dtwin.ops wavelet transforms and the WNO layer: against PyWavelets (wavedec, waverec, wavedec2,
waverec2), against the pure-torch references, perfect reconstruction, the fused layer against
the separate ops, opcheck, gradcheck and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtwin.ops import (
    dwt1d,
    dwt2d,
    idwt1d,
    idwt2d,
    wavelet_coefficient_size,
    wavelet_conv1d,
    wavelet_conv2d,
    wavelet_filters,
)
from dtwin.ops.wavelet import (
    MODES,
    dwt1d_reference,
    dwt2d_reference,
    idwt1d_reference,
    idwt2d_reference,
    wavelet_conv1d_reference,
    wavelet_conv2d_reference,
)
from dtwin.testing.ops import OpSample, OpTestBase, relayout, requires_kernel

pywt = pytest.importorskip("pywt", reason="PyWavelets is not installed (pip install PyWavelets)")

#: several families and filter lengths 2 to 76 (db38, the longest Daubechies of PyWavelets)
WAVELETS = ("haar", "db2", "db4", "db8", "db24", "db38", "sym5", "sym8", "coif1", "coif3")
DTYPES = (torch.float32, torch.float64)
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _flen(wavelet: str) -> int:
    return pywt.Wavelet(wavelet).dec_len


@st.composite
def signals_1d(draw, max_len: int = 600):
    """(x, wavelet, level, mode): a batch of 0-2 leading dims, any length the wavelet admits."""
    wavelet, mode = draw(st.sampled_from(WAVELETS)), draw(st.sampled_from(MODES))
    F = _flen(wavelet)
    L = draw(st.integers(2 * (F - 1), max(2 * (F - 1), max_len)))
    level = draw(st.integers(1, pywt.dwt_max_level(L, F)))
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    dtype = draw(st.sampled_from(DTYPES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = relayout(
        torch.randn(*lead, L, generator=g, dtype=dtype), draw(st.sampled_from(["contiguous", "strided"]))
    )
    return x, wavelet, level, mode


@st.composite
def signals_2d(draw, max_side: int = 48):
    wavelet = draw(st.sampled_from(("haar", "db2", "db4", "sym5", "coif1", "db8")))
    mode = draw(st.sampled_from(MODES))
    F = _flen(wavelet)
    H = draw(st.integers(2 * (F - 1), max(2 * (F - 1), max_side)))
    W = draw(st.integers(2 * (F - 1), max(2 * (F - 1), max_side)))
    level = draw(st.integers(1, pywt.dwt_max_level(min(H, W), F)))
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    dtype = draw(st.sampled_from(DTYPES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    x = relayout(torch.randn(*lead, H, W, generator=g, dtype=dtype), layout)
    return x, wavelet, level, mode


def _close_to_pywt(ours: torch.Tensor, theirs: np.ndarray, what: str) -> None:
    """Within 1e-5 (float32) or 1e-12 (float64) of the largest magnitude, element by element."""
    assert tuple(ours.shape) == theirs.shape, f"{what}: shape {tuple(ours.shape)}, pywt {theirs.shape}"
    ref = torch.from_numpy(np.ascontiguousarray(theirs)).to(torch.float64)
    tol = 1e-5 if ours.dtype == torch.float32 else 1e-12
    scale = max(ref.abs().max().item(), 1.0)
    err = (ours.to(torch.float64) - ref).abs().max().item() / scale
    assert err <= tol, f"{what}: max deviation {err:.3g} of the largest magnitude (tolerance {tol})"


# --------------------------------------------------------------------------------------------
# against PyWavelets


@SETTINGS
@given(sig=signals_1d())
def test_dwt1d_and_idwt1d_match_pywt(sig):
    x, wavelet, level, mode = sig
    note = f"{wavelet} {mode} L={x.shape[-1]} level={level} {x.dtype}"
    x64 = x.double().numpy()
    expected = pywt.wavedec(x64, wavelet, mode=mode, level=level)
    cA, details = dwt1d(x, wavelet, level, mode)
    assert len(details) == level
    for i, (ours, theirs) in enumerate(zip([cA, *details], expected, strict=True)):
        _close_to_pywt(ours, theirs, f"dwt1d coefficient {i} ({note})")
    coeffs = [torch.from_numpy(c).to(x.dtype) for c in expected]
    _close_to_pywt(
        idwt1d(coeffs, wavelet, mode), pywt.waverec(expected, wavelet, mode=mode), f"idwt1d ({note})"
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_the_hh_grid_with_the_wno_wavelet(mode, dtype):
    """Length 500 (the HH data set) with db24, every level pywt allows (3), forward and inverse."""
    x = torch.randn(4, 2, 500, dtype=dtype, generator=torch.Generator().manual_seed(5))
    for level in range(1, pywt.dwt_max_level(500, 48) + 1):
        expected = pywt.wavedec(x.double().numpy(), "db24", mode=mode, level=level)
        cA, details = dwt1d(x, "db24", level, mode)
        for i, (ours, theirs) in enumerate(zip([cA, *details], expected, strict=True)):
            _close_to_pywt(ours, theirs, f"coefficient {i} of level {level}")
        _close_to_pywt(
            idwt1d((cA, details), "db24", mode), pywt.waverec(expected, "db24", mode=mode), "idwt1d"
        )


@SETTINGS
@given(sig=signals_2d())
def test_dwt2d_and_idwt2d_match_pywt(sig):
    x, wavelet, level, mode = sig
    note = f"{wavelet} {mode} {tuple(x.shape[-2:])} level={level} {x.dtype}"
    expected = pywt.wavedec2(x.double().numpy(), wavelet, mode=mode, level=level)
    cA, details = dwt2d(x, wavelet, level, mode)
    _close_to_pywt(cA, expected[0], f"dwt2d cA ({note})")
    assert len(details) == level
    for lv, (ours, theirs) in enumerate(zip(details, expected[1:], strict=True)):
        for name, o, t in zip("HVD", ours, theirs, strict=True):
            _close_to_pywt(o, t, f"dwt2d c{name} of level {level - lv} ({note})")
    coeffs = [torch.from_numpy(expected[0]).to(x.dtype)] + [
        tuple(torch.from_numpy(c).to(x.dtype) for c in lv) for lv in expected[1:]
    ]
    # pywt.wavedec2's own list layout, [cA, (cH, cV, cD), ...], is accepted as is
    _close_to_pywt(
        idwt2d(coeffs, wavelet, mode), pywt.waverec2(expected, wavelet, mode=mode), f"idwt2d ({note})"
    )


def tagged(max_len: int = 600, max_side: int = 48):
    """1D or 2D signals, tagged: (dwt, idwt, dwt reference, idwt reference, (x, wavelet, level, mode))."""
    ops_1d = (dwt1d, idwt1d, dwt1d_reference, idwt1d_reference)
    ops_2d = (dwt2d, idwt2d, dwt2d_reference, idwt2d_reference)
    return st.one_of(
        signals_1d(max_len).map(lambda s: (*ops_1d, s)), signals_2d(max_side).map(lambda s: (*ops_2d, s))
    )


def _flat(out) -> list[torch.Tensor]:
    cA, details = out
    return [cA, *[c for lv in details for c in (lv if isinstance(lv, tuple) else (lv,))]]


@SETTINGS
@given(case=tagged())
def test_perfect_reconstruction(case):
    fwd, inv, _, _, (x, wavelet, level, mode) = case
    y = inv(fwd(x, wavelet, level, mode), wavelet, mode)
    # like pywt, an odd length comes back one sample longer (the inverse cannot know the parity)
    y = y[..., : x.shape[-2], : x.shape[-1]] if fwd is dwt2d else y[..., : x.shape[-1]]
    tol = 1e-5 if x.dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y, x, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------
# compiled kernels against the pure-torch references (the shared op test base)


def _filters(wavelet, x):
    return wavelet_filters(wavelet, x.dtype)


def _small_conv(g, dims: int, B=2, Cin=3, Cout=2, size=40, wavelet="db2", level=2, mode="symmetric"):
    grid = (size,) * dims
    m = [wavelet_coefficient_size(s, wavelet, level, mode) for s in grid]
    x = torch.randn(B, Cin, *grid, generator=g, dtype=torch.float64)
    w = torch.randn(2 if dims == 1 else 4, Cin, Cout, *m, generator=g, dtype=torch.float64)
    return x, w


class TestDwt1d(OpTestBase):
    op = "dwt1d"
    tolerances = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12)}

    def samples(self):
        return signals_1d(max_len=300).map(
            lambda s: OpSample(s, {}, f"{s[1]} {s[3]} L{s[0].shape[-1]} l{s[2]}")
        )

    def call(self, sample):
        cA, details = dwt1d(*sample.args)
        return [cA, *details]

    def call_reference(self, sample):
        x, wavelet, level, mode = sample.args
        return dwt1d_reference(x, _filters(wavelet, x), level, mode)

    def opcheck_samples(self):
        x = torch.randn(2, 3, 37, dtype=torch.float64, requires_grad=True)
        f = wavelet_filters("db2")
        grads = [torch.randn(2, 3, n, dtype=torch.float64) for n in (11, 11, 20)]
        return [
            ("dwt1d", (x, f, 2, "symmetric"), {}),
            ("dwt1d", (x, f, 2, "periodization"), {}),
            ("dwt1d_backward", (grads, f, 2, "symmetric", 37), {}),
            ("dwt1d_backward", ([None, grads[1], None], f, 2, "symmetric", 37), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for wavelet, mode, L, level in (
            ("db2", "symmetric", 23, 2),
            ("db4", "periodization", 30, 1),
            ("haar", "symmetric", 9, 3),
        ):
            x = torch.randn(2, L, dtype=torch.float64, requires_grad=True)
            cases.append(
                (lambda x, w=wavelet, l=level, m=mode: torch.cat(_flat(dwt1d(x, w, l, m)), -1), (x,))
            )
        return cases


class TestIdwt1d(OpTestBase):
    op = "idwt1d"
    tolerances = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12)}

    def samples(self):
        def to_coeffs(s):
            x, wavelet, level, mode = s
            coeffs = dwt1d_reference(x, _filters(wavelet, x), level, mode)
            return OpSample((coeffs, wavelet, mode), {}, f"{wavelet} {mode} L{x.shape[-1]} l{level}")

        return signals_1d(max_len=300).map(to_coeffs)

    def call(self, sample):
        return idwt1d(*sample.args)

    def call_reference(self, sample):
        coeffs, wavelet, mode = sample.args
        return idwt1d_reference(coeffs, _filters(wavelet, coeffs[0]), mode)

    def opcheck_samples(self):
        f = wavelet_filters("db2")
        coeffs = [torch.randn(2, n, dtype=torch.float64, requires_grad=True) for n in (11, 11, 20)]
        grad = torch.randn(2, 38, dtype=torch.float64)
        return [
            ("idwt1d", (coeffs, f, "symmetric"), {}),
            ("idwt1d", ([c.detach() for c in coeffs[:2]], f, "periodization"), {}),
            ("idwt1d_backward", (grad, [11, 11, 20], f, "symmetric"), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for wavelet, mode, sizes in (("db2", "symmetric", (7, 7, 12)), ("db4", "periodization", (5, 5, 10))):
            coeffs = tuple(torch.randn(2, n, dtype=torch.float64, requires_grad=True) for n in sizes)
            cases.append((lambda *c, w=wavelet, m=mode: idwt1d(list(c), w, m), coeffs))
        return cases


class TestDwt2d(OpTestBase):
    op = "dwt2d"
    tolerances = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12)}

    def samples(self):
        return signals_2d(max_side=32).map(
            lambda s: OpSample(s, {}, f"{s[1]} {s[3]} {tuple(s[0].shape)} l{s[2]}")
        )

    def call(self, sample):
        cA, details = dwt2d(*sample.args)
        return [cA, *[c for lv in details for c in lv]]

    def call_reference(self, sample):
        x, wavelet, level, mode = sample.args
        return dwt2d_reference(x, _filters(wavelet, x), level, mode)

    def opcheck_samples(self):
        x = torch.randn(2, 16, 14, dtype=torch.float64, requires_grad=True)
        f = wavelet_filters("db2")
        grads = [torch.randn_like(c) for c in torch.ops.dtwin.dwt2d(x.detach(), f, 2, "symmetric")]
        return [
            ("dwt2d", (x, f, 1, "symmetric"), {}),
            ("dwt2d", (x, f, 2, "periodization"), {}),
            ("dwt2d_backward", (grads, f, 2, "symmetric", 16, 14), {}),
            ("dwt2d_backward", ([None, *grads[1:4], None, None, grads[6]], f, 2, "symmetric", 16, 14), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for mode in MODES:
            x = torch.randn(1, 14, 12, dtype=torch.float64, requires_grad=True)
            cases.append(
                (lambda x, m=mode: torch.cat([c.flatten(-2) for c in _flat(dwt2d(x, "db2", 2, m))], -1), (x,))
            )
        return cases


class TestIdwt2d(OpTestBase):
    op = "idwt2d"
    tolerances = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12)}

    def samples(self):
        def to_coeffs(s):
            x, wavelet, level, mode = s
            coeffs = dwt2d_reference(x, _filters(wavelet, x), level, mode)
            return OpSample((coeffs, wavelet, mode), {}, f"{wavelet} {mode} {tuple(x.shape)} l{level}")

        return signals_2d(max_side=32).map(to_coeffs)

    def call(self, sample):
        return idwt2d(*sample.args)

    def call_reference(self, sample):
        coeffs, wavelet, mode = sample.args
        return idwt2d_reference(coeffs, _filters(wavelet, coeffs[0]), mode)

    def opcheck_samples(self):
        f = wavelet_filters("db2")
        coeffs = [torch.randn(2, 8, 6, dtype=torch.float64, requires_grad=True) for _ in range(4)]
        grad = torch.randn(2, 14, 10, dtype=torch.float64)
        return [
            ("idwt2d", (coeffs, f, "symmetric"), {}),
            ("idwt2d", ([c.detach() for c in coeffs], f, "periodization"), {}),
            ("idwt2d_backward", (grad, [8, 6] * 4, f, "symmetric"), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for mode in MODES:
            shapes = ((4, 3),) * 4 + ((6, 4),) * 3 if mode == "symmetric" else ((3, 3),) * 4 + ((6, 6),) * 3
            coeffs = tuple(torch.randn(1, *s, dtype=torch.float64, requires_grad=True) for s in shapes)
            cases.append((lambda *c, m=mode: idwt2d(list(c), "db2", m), coeffs))
        return cases


@st.composite
def conv_samples(draw, dims: int):
    wavelet = draw(
        st.sampled_from(
            ("haar", "db2", "db4", "sym5") if dims == 2 else ("haar", "db4", "db8", "db24", "coif3")
        )
    )
    mode = draw(st.sampled_from(MODES))
    F = _flen(wavelet)
    grid = tuple(
        draw(st.integers(2 * (F - 1), 2 * (F - 1) + (24 if dims == 2 else 200))) for _ in range(dims)
    )
    level = draw(st.integers(1, pywt.dwt_max_level(min(grid), F)))
    B, Cin, Cout = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    m = [wavelet_coefficient_size(s, wavelet, level, mode) for s in grid]
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    x = relayout(torch.randn(B, Cin, *grid, generator=g, dtype=dtype), layout)
    w = relayout(torch.randn(2 if dims == 1 else 4, Cin, Cout, *m, generator=g, dtype=dtype), layout)
    return OpSample((x, w, wavelet, level, mode), {}, f"{wavelet} {mode} {tuple(x.shape)} l{level}")


class TestWaveletConv1d(OpTestBase):
    op = "wavelet_conv1d"
    tolerances = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-11, 1e-11)}

    def samples(self):
        return conv_samples(1)

    def call(self, sample):
        return wavelet_conv1d(*sample.args)

    def call_reference(self, sample):
        x, w, wavelet, level, mode = sample.args
        return wavelet_conv1d_reference(x, w, _filters(wavelet, x), level, mode)

    def opcheck_samples(self):
        g = torch.Generator().manual_seed(0)
        x, w = _small_conv(g, 1)
        x.requires_grad_(), w.requires_grad_()
        f = wavelet_filters("db2")
        _, coarse = torch.ops.dtwin.wavelet_conv1d(x.detach(), w.detach(), f, 2, "symmetric")
        grad = torch.randn(2, 2, 40, dtype=torch.float64)
        back = "wavelet_conv1d_backward"
        w_per = torch.randn(2, 3, 2, 20, dtype=torch.float64, requires_grad=True)
        return [
            ("wavelet_conv1d", (x, w, f, 2, "symmetric"), {}),
            ("wavelet_conv1d", (x, w_per, f, 1, "periodization"), {}),
            (back, (grad, w.detach(), coarse, f, 2, "symmetric", True, True), {}),
            (back, (grad, w.detach(), coarse, f, 2, "symmetric", False, True), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for mode in MODES:
            g = torch.Generator().manual_seed(1)
            x, w = _small_conv(g, 1, size=21, mode=mode)
            cases.append(
                (
                    lambda x, w, m=mode: wavelet_conv1d(x, w, "db2", 2, m),
                    (x.requires_grad_(), w.requires_grad_()),
                )
            )
        return cases


class TestWaveletConv2d(OpTestBase):
    op = "wavelet_conv2d"
    tolerances = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-11, 1e-11)}

    def samples(self):
        return conv_samples(2)

    def call(self, sample):
        return wavelet_conv2d(*sample.args)

    def call_reference(self, sample):
        x, w, wavelet, level, mode = sample.args
        return wavelet_conv2d_reference(x, w, _filters(wavelet, x), level, mode)

    def opcheck_samples(self):
        g = torch.Generator().manual_seed(0)
        x, w = _small_conv(g, 2, size=12)
        x.requires_grad_(), w.requires_grad_()
        f = wavelet_filters("db2")
        _, coarse = torch.ops.dtwin.wavelet_conv2d(x.detach(), w.detach(), f, 2, "symmetric")
        grad = torch.randn(2, 2, 12, 12, dtype=torch.float64)
        back = "wavelet_conv2d_backward"
        return [
            ("wavelet_conv2d", (x, w, f, 2, "symmetric"), {}),
            (back, (grad, w.detach(), coarse, f, 2, "symmetric", True, True), {}),
            (back, (grad, w.detach(), coarse, f, 2, "symmetric", True, False), {}),
        ]

    def gradcheck_samples(self):
        cases = []
        for mode in MODES:
            g = torch.Generator().manual_seed(2)
            x, w = _small_conv(g, 2, B=1, Cin=2, size=12, mode=mode)
            cases.append(
                (
                    lambda x, w, m=mode: wavelet_conv2d(x, w, "db2", 2, m),
                    (x.requires_grad_(), w.requires_grad_()),
                )
            )
        return cases


# --------------------------------------------------------------------------------------------
# the fused layer is the separate ops, and its gradients are autograd's of the reference


@SETTINGS
@given(sample=st.one_of(conv_samples(1), conv_samples(2)))
def test_fused_layer_equals_transform_einsum_inverse(sample):
    x, w, wavelet, level, mode = sample.args
    if x.dim() == 3:
        cA, details = dwt1d(x, wavelet, level, mode)
        mixed = [torch.einsum("bim,iom->bom", c, w[k]) for k, c in enumerate((cA, details[0]))]
        zeros = [mixed[0].new_zeros(mixed[0].shape[:-1] + d.shape[-1:]) for d in details[1:]]
        expected = idwt1d([*mixed, *zeros], wavelet, mode)[..., : x.shape[-1]]
        got = wavelet_conv1d(x, w, wavelet, level, mode)
    else:
        cA, details = dwt2d(x, wavelet, level, mode)
        bands = (cA, *details[0])
        mixed = [torch.einsum("bihw,iohw->bohw", c, w[k]) for k, c in enumerate(bands)]
        rest = [
            tuple(mixed[0].new_zeros(mixed[0].shape[:-2] + c.shape[-2:]) for c in lv) for lv in details[1:]
        ]
        expected = idwt2d((mixed[0], [tuple(mixed[1:]), *rest]), wavelet, mode)[
            ..., : x.shape[-2], : x.shape[-1]
        ]
        got = wavelet_conv2d(x, w, wavelet, level, mode)
    tol = 1e-4 if x.dtype == torch.float32 else 1e-11
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol, msg=lambda m: f"{sample.note}: {m}")


@requires_kernel("wavelet_conv1d")
@settings(max_examples=25, deadline=None, derandomize=True)
@given(sample=st.one_of(conv_samples(1), conv_samples(2)))
def test_layer_gradients_match_autograd_of_the_reference(sample):
    x, w, wavelet, level, mode = sample.args
    fused, ref = (
        (wavelet_conv1d, wavelet_conv1d_reference)
        if x.dim() == 3
        else (wavelet_conv2d, wavelet_conv2d_reference)
    )
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y = fused(x, w, wavelet, level, mode)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), gy)
    rx, rw = torch.autograd.grad(ref(x, w, _filters(wavelet, x), level, mode), (x, w), gy)
    tol = dict(rtol=1e-4, atol=1e-4) if x.dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx, rx, **tol)
    torch.testing.assert_close(gw, rw, **tol)


@requires_kernel("dwt1d")
@settings(max_examples=25, deadline=None, derandomize=True)
@given(case=tagged(max_len=200, max_side=24))
def test_transform_gradients_match_autograd_of_the_reference(case):
    fwd, inv, ref_fwd, ref_inv, (x, wavelet, level, mode) = case
    f = _filters(wavelet, x)
    x = x.detach().clone().requires_grad_()
    flat = _flat(fwd(x, wavelet, level, mode))
    ups = [torch.randn_like(c) for c in flat]
    # coefficient 1 does not reach the loss: its gradient is None in the backward
    ours = torch.autograd.grad([flat[0], *flat[2:]], x, [ups[0], *ups[2:]])[0]
    ref_flat = ref_fwd(x, f, level, mode)
    theirs = torch.autograd.grad([ref_flat[0], *ref_flat[2:]], x, [ups[0], *ups[2:]])[0]
    tol = dict(rtol=1e-5, atol=1e-5) if x.dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(ours, theirs, **tol)
    # and the inverse's gradient with respect to every coefficient
    coeffs = [c.detach().clone().requires_grad_() for c in ref_flat]
    y = inv(coeffs, wavelet, mode)
    gy = torch.randn_like(y)
    ours = torch.autograd.grad(y, coeffs, gy)
    theirs = torch.autograd.grad(ref_inv(coeffs, f, mode), coeffs, gy)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **tol)


# --------------------------------------------------------------------------------------------
# sizes and bad input


@pytest.mark.parametrize("wavelet", ["db4", "db24"])
@pytest.mark.parametrize("mode", MODES)
def test_coefficient_size_is_pywt(wavelet, mode):
    for L in (48, 100, 500, 512):
        for level in range(1, pywt.dwt_max_level(L, _flen(wavelet)) + 1):
            expected = len(pywt.wavedec(np.zeros(L), wavelet, mode=mode, level=level)[0])
            assert wavelet_coefficient_size(L, wavelet, level, mode) == expected


BAD = {
    "unknown wavelet": (lambda: dwt1d(torch.randn(64), "db99"), "db, sym, coif"),
    "not a name": (lambda: dwt1d(torch.randn(64), 4), "unknown wavelet"),
    "biorthogonal": (lambda: dwt1d(torch.randn(64), "bior2.2"), "not orthogonal"),
    "level too high": (lambda: dwt1d(torch.randn(100), "db4", level=5), r"level must be an int in \[1, 3\]"),
    "level zero": (lambda: dwt1d(torch.randn(100), "db4", level=0), "level must be"),
    "signal too short": (lambda: dwt1d(torch.randn(10), "db24"), r"level must be an int in \[1, 0\]"),
    "mode": (lambda: dwt1d(torch.randn(64), "db4", 1, "zero"), "mode must be one of"),
    "integer signal": (lambda: dwt1d(torch.arange(64), "db4"), "float32/float64"),
    "inverse mode": (lambda: idwt1d([torch.randn(8), torch.randn(8)], "db2", "reflect"), "mode must be"),
    "inverse lengths": (
        lambda: idwt1d([torch.randn(10), torch.randn(12), torch.randn(20)], "db2"),
        "not of one decomposition",
    ),
    "inverse leading dims": (lambda: idwt1d([torch.randn(2, 8), torch.randn(3, 8)], "db2"), "leading dims"),
    "inverse not tensors": (lambda: idwt1d([torch.randn(8)], "db2"), "coeffs must be"),
    "inverse 2d shapes": (
        lambda: idwt2d(
            (torch.randn(5, 5), [(torch.randn(5, 5), torch.randn(4, 5), torch.randn(5, 5))]), "db2"
        ),
        "share one shape",
    ),
    "inverse 2d sizes": (
        lambda: idwt2d((torch.randn(9, 9), [(torch.randn(5, 5),) * 3]), "db2"),
        "not of one decomposition",
    ),
    "conv weight shape": (
        lambda: wavelet_conv1d(torch.randn(2, 3, 64), torch.randn(2, 3, 4, 5), "db4", 3),
        r"weight must be a Tensor\[2, 3, 'Cout', 14\]",
    ),
    "conv x rank": (
        lambda: wavelet_conv1d(torch.randn(3, 64), torch.randn(2, 3, 4, 14), "db4", 3),
        r"\[B, Cin, L\]",
    ),
    "conv dtype": (
        lambda: wavelet_conv1d(
            torch.randn(2, 3, 64), torch.randn(2, 3, 4, 14, dtype=torch.float64), "db4", 3
        ),
        "must match x",
    ),
    "conv level": (
        lambda: wavelet_conv2d(torch.randn(1, 1, 16, 16), torch.randn(4, 1, 1, 2, 2), "db4", 3),
        "level",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_the_problem(case):
    fn, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        fn()


@requires_kernel("dwt1d")
def test_compiled_ops_check_their_inputs():
    """Direct callers of torch.ops.dtwin get errors too, not a crash."""
    f = wavelet_filters("db4")
    with pytest.raises(RuntimeError, match="level"):
        torch.ops.dtwin.dwt1d(torch.randn(20), f, 4, "symmetric")
    with pytest.raises(RuntimeError, match="mode"):
        torch.ops.dtwin.dwt1d(torch.randn(64), f, 1, "zero")
    with pytest.raises(RuntimeError, match="filters"):
        torch.ops.dtwin.dwt1d(torch.randn(64), f[:3], 1, "symmetric")
