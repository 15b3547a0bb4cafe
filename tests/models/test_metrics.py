"""dtwin.models.losses.psnr and ssim: per-sample image metrics, checked against scikit-image."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtwin.models.losses import psnr, ssim

skimage_metrics = pytest.importorskip("skimage.metrics")

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(B: int, C: int, H: int, W: int, seed: int = 0, noise: float = 0.1):
    """Images in [0, 1] and a noisy copy of them, clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, H, W, generator=g, dtype=DT)
    y = (x + noise * torch.randn(B, C, H, W, generator=g, dtype=DT)).clamp(0, 1)
    return x, y


def _sk_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """scikit-image's SSIM of one sample Tensor[C, H, W] (channel_axis=0 only with C > 1)."""
    a_np, b_np = a.numpy(), b.numpy()
    kwargs = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    if a.shape[0] == 1:
        return float(skimage_metrics.structural_similarity(a_np[0], b_np[0], **kwargs))
    return float(skimage_metrics.structural_similarity(a_np, b_np, channel_axis=0, **kwargs))


@pytest.mark.parametrize(("C", "H", "W"), [(1, 16, 16), (3, 12, 20), (2, 11, 11), (1, 25, 13)])
def test_psnr_and_ssim_match_scikit_image_per_sample(C, H, W):
    x, y = _pair(3, C, H, W, seed=C + H + W)
    p, s = psnr(y, x), ssim(y, x)
    assert p.shape == (3,) and s.shape == (3,)
    assert p.dtype == DT and s.dtype == DT
    for b in range(3):
        ref_p = skimage_metrics.peak_signal_noise_ratio(x[b].numpy(), y[b].numpy(), data_range=1.0)
        assert float(p[b]) == pytest.approx(ref_p, abs=1e-10, rel=1e-12)
        assert float(s[b]) == pytest.approx(_sk_ssim(y[b], x[b]), abs=1e-10)


def test_each_sample_is_scored_alone():
    """A batch gives what separate calls give, sample by sample."""
    x, y = _pair(4, 2, 14, 14, seed=3)
    whole_p, whole_s = psnr(y, x), ssim(y, x)
    for b in range(4):
        assert torch.allclose(psnr(y[b : b + 1], x[b : b + 1]), whole_p[b : b + 1], rtol=0, atol=1e-12)
        assert torch.allclose(ssim(y[b : b + 1], x[b : b + 1]), whole_s[b : b + 1], rtol=0, atol=1e-12)


def test_psnr_of_a_known_error_and_data_range():
    x = torch.zeros(2, 1, 4, 4, dtype=DT)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01: 20 dB at peak 1
    y[1] += 0.01  # MSE 1e-4: 40 dB
    assert torch.allclose(psnr(y, x), torch.tensor([20.0, 40.0], dtype=DT))
    # peak 255: + 20 log10(255) dB
    assert torch.allclose(
        psnr(y, x, data_range=255.0), torch.tensor([20.0, 40.0], dtype=DT) + 20 * math.log10(255)
    )


def test_identical_images():
    x, _ = _pair(3, 2, 16, 16, seed=5)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=DT), rtol=0, atol=1e-12)
    p = psnr(x, x)
    # the MSE is clamped (no inf): a finite, very large value
    assert bool(torch.isfinite(p).all()) and bool((p >= 100).all())


def test_ssim_of_a_scaled_image_is_below_one_and_float32_works():
    x, _ = _pair(2, 1, 16, 16, seed=6)
    assert bool((ssim(0.5 * x, x) < 0.99).all())
    s32 = ssim(x.float() * 0.5, x.float())
    assert s32.dtype == torch.float32
    assert torch.allclose(s32.double(), ssim(0.5 * x, x), atol=1e-5)


def test_shape_mismatch_is_refused():
    x = torch.rand(2, 1, 16, 16)
    for fn, name in ((psnr, "psnr"), (ssim, "ssim")):
        with pytest.raises(ValueError, match=rf"{name}: pred has shape \(2, 1, 16, 16\) but target"):
            fn(x, torch.rand(2, 1, 16, 15))
        with pytest.raises(ValueError, match=f"{name}: pred has shape"):
            fn(x, torch.rand(3, 1, 16, 16))


@pytest.mark.parametrize("shape", [(16, 16), (1, 16, 16), (2, 1, 1, 16, 16)])
def test_wrong_rank_is_refused(shape):
    x = torch.rand(*shape)
    for fn, name in ((psnr, "psnr"), (ssim, "ssim")):
        with pytest.raises(ValueError, match=rf"{name}: images must be Tensor\[B, C, H, W\]"):
            fn(x, x.clone())


@pytest.mark.parametrize("hw", [(10, 16), (16, 10), (4, 4)])
def test_ssim_refuses_images_smaller_than_the_window(hw):
    x = torch.rand(1, 1, *hw)
    with pytest.raises(ValueError, match="ssim: images must be at least 11 x 11"):
        ssim(x, x.clone())
    assert psnr(x, x.clone()).shape == (1,)  # PSNR has no window


def test_ssim_window_is_a_parameter():
    x = torch.rand(1, 1, 4, 16)
    with pytest.raises(ValueError, match="at least 5 x 5"):
        ssim(x, x.clone(), window=5)
    y = torch.rand(1, 1, 5, 16, dtype=DT)
    assert torch.allclose(ssim(y, y, window=5), torch.ones(1, dtype=DT))


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(1, 3),
    C=st.integers(1, 2),
    H=st.integers(11, 15),
    W=st.integers(11, 15),
    noise=st.floats(0.0, 1.0),
)
def test_metrics_are_symmetric_and_bounded(seed, B, C, H, W, noise):
    x, y = _pair(B, C, H, W, seed=seed, noise=noise)
    s_xy, s_yx = ssim(x, y), ssim(y, x)
    assert torch.allclose(s_xy, s_yx, rtol=0, atol=1e-12)
    assert bool((s_xy <= 1 + 1e-12).all()) and bool((s_xy >= -1 - 1e-12).all())
    p_xy, p_yx = psnr(x, y), psnr(y, x)
    assert torch.equal(p_xy, p_yx)
    # images in [0, 1]: the MSE is at most 1, so the PSNR is at least 0 dB
    assert bool((p_xy >= -1e-12).all())
