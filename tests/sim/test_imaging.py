"""The imaging twins (DRIP forward operators): exact adjoints, the blur against a direct
convolution, the inpainting mask, the Radon matrix against the geometry (mass, a disc, column
sums, orientation), noise levels, dtype/device/autograd, and bad input."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtwin.sim import imaging
from dtwin.sim.imaging import GaussianBlur, Inpainting, Tomography, add_noise, make_operator

OPERATOR_KINDS = {
    "blur": lambda shape, seed: GaussianBlur(shape, sigma=0.5 + seed % 4),
    "inpainting": lambda shape, seed: Inpainting(shape, observed=0.3, seed=seed),
    "tomography": lambda shape, seed: Tomography(shape, n_angles=5 + seed % 7),
    "tomography-limited": lambda shape, seed: Tomography(
        shape, n_angles=4, angle_range=(-20.0, 100.0), n_detectors=max(shape) // 2 + 1, pixel_size=0.3
    ),
}


def _disc(H: int, W: int, r: float, x0: float = 0.0, y0: float = 0.0, sub: int = 8) -> torch.Tensor:
    """Tensor[H, W] float64: the fraction of each pixel inside the disc of radius r centred at
    (x0, y0) (pixel units, x right, y up, origin at the image centre), by sub x sub supersampling."""
    offsets = (torch.arange(sub, dtype=torch.float64) + 0.5) / sub - 0.5
    x = (torch.arange(W, dtype=torch.float64) - (W - 1) / 2)[:, None] + offsets
    y = ((H - 1) / 2 - torch.arange(H, dtype=torch.float64))[:, None] - offsets
    inside = (x.reshape(1, 1, W, sub) - x0) ** 2 + (y.reshape(H, sub, 1, 1) - y0) ** 2 <= r * r
    return inside.double().mean((1, 3))


# ---------------------------------------------------------------------------------- adjoints


@settings(max_examples=40)
@given(
    kind=st.sampled_from(sorted(OPERATOR_KINDS)),
    H=st.integers(2, 19),
    W=st.integers(2, 19),
    seed=st.integers(0, 2**16),
)
def test_the_adjoint_is_exact_in_float64(kind, H, W, seed):
    """<A x, y> = <x, A^T y> to 1e-10 relative to |A x| |y| (non-square shapes, every operator)."""
    op = OPERATOR_KINDS[kind]((H, W), seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 1, H, W, generator=g, dtype=torch.float64)
    y = torch.randn(3, *op.out_shape, generator=g, dtype=torch.float64)
    Ax, ATy = op(x), op.adjoint(y)
    assert Ax.shape == (3, *op.out_shape) and ATy.shape == (3, 1, H, W)
    lhs, rhs = (Ax * y).sum(), (x * ATy).sum()
    assert abs(lhs - rhs) <= 1e-10 * Ax.norm() * y.norm()
    torch.testing.assert_close(op.normal(x), op.adjoint(Ax), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_the_input_and_autograd_gives_the_normal_operator(kind, dtype):
    op = OPERATOR_KINDS[kind]((7, 10), 1)
    x = torch.rand(2, 1, 7, 10, dtype=dtype, requires_grad=True)
    y = op(x)
    assert y.dtype == dtype and op.adjoint(y.detach()).dtype == dtype
    (0.5 * y.square().sum()).backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(x.grad, op.normal(x.detach()), rtol=tol, atol=tol)
    # the gradient of the adjoint is the forward map
    r = torch.rand(2, *op.out_shape, dtype=dtype, requires_grad=True)
    (op.adjoint(r) * x.detach()).sum().backward()
    torch.testing.assert_close(r.grad, op(x.detach()), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_gradcheck(kind):
    op = OPERATOR_KINDS[kind]((4, 5), 2)
    x = torch.rand(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, *op.out_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradcheck(op.adjoint, (y,))
    assert torch.autograd.gradgradcheck(lambda v: op(v).square(), (x,))


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_operators_survive_deepcopy_and_pickling(kind):
    """Lightning deep-copies and pickles modules (the sparse CSR matrix cannot be deep-copied
    itself: the tomography keeps its parts as dense buffers)."""
    op = OPERATOR_KINDS[kind]((6, 9), 4)
    x = torch.rand(2, 1, 6, 9)
    y = op(x)
    twin = copy.deepcopy(op)
    torch.testing.assert_close(twin(x), y)
    buffer = io.BytesIO()
    torch.save(op, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_cuda_matches_cpu(kind):
    op = OPERATOR_KINDS[kind]((12, 9), 3)
    x = torch.rand(2, 1, 12, 9, dtype=torch.float32)
    expected = op(x)
    op_cuda = op.to("cuda")
    y = op_cuda(x.cuda())
    assert y.device.type == "cuda" and y.dtype == torch.float32
    torch.testing.assert_close(y.cpu(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op_cuda.adjoint(y).cpu(), op.to("cpu").adjoint(expected), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------- blur


def test_blur_keeps_a_constant_image():
    op = GaussianBlur((12, 17), sigma=2.0)
    x = torch.full((2, 1, 12, 17), 3.25, dtype=torch.float64)
    torch.testing.assert_close(op(x), x, rtol=1e-13, atol=1e-13)
    assert abs(op.kernel.sum().item() - 1.0) < 1e-14


def test_blur_matches_a_direct_circular_convolution():
    H, W, sigma = 9, 12, 1.3

    # the Gaussian wrapped onto the periodic grid, built independently of the module
    def wrapped(n):
        d = torch.arange(n, dtype=torch.float64)[:, None] + n * torch.arange(-6, 7, dtype=torch.float64)
        g = torch.exp(-(d**2) / (2 * sigma**2)).sum(1)
        return g / g.sum()

    kernel = wrapped(H)[:, None] * wrapped(W)[None, :]
    torch.testing.assert_close(GaussianBlur((H, W), sigma).kernel, kernel, rtol=1e-14, atol=1e-15)
    x = torch.randn(2, 1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    direct = torch.zeros_like(x)
    for i in range(H):
        for j in range(W):
            direct += kernel[i, j] * torch.roll(x, shifts=(i, j), dims=(2, 3))
    torch.testing.assert_close(GaussianBlur((H, W), sigma)(x), direct, rtol=1e-12, atol=1e-12)


def test_blur_is_symmetric_and_its_normal_operator_is_the_squared_transfer():
    op = GaussianBlur((8, 11), sigma=2.0)
    x = torch.randn(1, 1, 8, 11, dtype=torch.float64)
    torch.testing.assert_close(op.adjoint(x), op(x), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(op.normal(x), op(op(x)), rtol=1e-12, atol=1e-12)


# -------------------------------------------------------------------------------- inpainting


def test_inpainting_observes_eleven_percent_of_the_pixels():
    op = Inpainting((96, 96))
    assert op.n_observed == round(0.11 * 96 * 96) and op.out_shape == (op.n_observed,)
    assert abs(op.fraction - 0.11) < 1e-3
    assert torch.equal(Inpainting((96, 96), seed=0).mask, op.mask)
    assert not torch.equal(Inpainting((96, 96), seed=1).mask, op.mask)
    # spread over the image, not clustered: each quarter holds about a quarter of them
    quarters = op.mask.reshape(2, 48, 2, 48).sum((1, 3)).flatten().double()
    assert (quarters / op.n_observed - 0.25).abs().max() < 0.05


def test_inpainting_reads_the_observed_pixels_and_the_adjoint_scatters_them_back():
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 1] = mask[2, 5] = mask[3, 0] = True
    op = Inpainting(mask=mask)
    x = torch.arange(24, dtype=torch.float64).reshape(1, 1, 4, 6)
    torch.testing.assert_close(op(x), torch.tensor([[1.0, 17.0, 18.0]], dtype=torch.float64))
    back = op.adjoint(torch.tensor([[7.0, 8.0, 9.0]], dtype=torch.float64))
    expected = torch.zeros(1, 1, 4, 6, dtype=torch.float64)
    expected[0, 0, 0, 1], expected[0, 0, 2, 5], expected[0, 0, 3, 0] = 7.0, 8.0, 9.0
    torch.testing.assert_close(back, expected)
    torch.testing.assert_close(op.normal(x), x * mask)
    y = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(op(op.adjoint(y)), y)  # A A^T = I
    assert Inpainting((4, 6), mask=mask.int()).n_observed == 3


def test_inpainting_mask_survives_a_state_dict_round_trip():
    a, b = Inpainting((20, 30), seed=1), Inpainting((20, 30), seed=2)
    assert "mask" in a.state_dict() and not torch.equal(a.mask, b.mask)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer))
    assert torch.equal(a.mask, b.mask) and b.out_shape == a.out_shape
    x = torch.rand(2, 1, 20, 30)
    torch.testing.assert_close(b(x), a(x))


# -------------------------------------------------------------------------------- tomography


def test_tomography_matrix_shape_and_angles():
    op = Tomography((40, 64))
    D = math.ceil(math.sqrt(2) * 64)
    assert op.n_detectors == D == 91 and op.out_shape == (18, D)
    assert op.matrix.shape == (18 * D, 40 * 64) and op.matrix_t.shape == (40 * 64, 18 * D)
    assert op.matrix.layout == torch.sparse_csr and op.matrix.dtype == torch.float64
    torch.testing.assert_close(op.angles, torch.arange(18, dtype=torch.float64) * 10.0)
    # a pixel touches at most 3 bins per angle
    assert op.matrix.values().numel() <= 3 * 18 * 40 * 64
    assert (op.matrix.values() > 0).all()
    limited = Tomography((8, 8), n_angles=4, angle_range=(30.0, 150.0))
    torch.testing.assert_close(limited.angles, torch.tensor([30.0, 60.0, 90.0, 120.0], dtype=torch.float64))
    assert limited.state_dict() == {}  # all derived from the arguments


@pytest.mark.parametrize("pixel_size", [1.0, 0.25])
def test_tomography_conserves_mass_at_every_angle(pixel_size):
    """sum_k (A x)[a, k] = pixel_size * sum(x) exactly (rounding: 1e-12) while the detector
    covers the image, which the default number of bins does at every angle."""
    op = Tomography((23, 31), n_angles=13, angle_range=(-7.0, 173.0), pixel_size=pixel_size)
    x = torch.rand(3, 1, 23, 31, dtype=torch.float64)
    mass = op(x).sum(-1)
    expected = pixel_size * x.sum((1, 2, 3))[:, None].expand_as(mass)
    torch.testing.assert_close(mass, expected, rtol=1e-12, atol=0.0)


def test_tomography_projects_columns_at_0_degrees_and_rows_at_90():
    """With as many bins as columns/rows (same parity: bins and pixels line up) the projection
    at 0 degrees is the column sums, at 90 degrees the row sums from bottom to top."""
    op = Tomography((6, 8), n_angles=2, angle_range=(0.0, 180.0), n_detectors=8)
    x = torch.rand(2, 1, 6, 8, dtype=torch.float64)
    y = op(x)
    torch.testing.assert_close(y[:, 0], x.sum(2)[:, 0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(y[:, 1, 1:7], x.sum(3)[:, 0].flip(-1), rtol=1e-13, atol=1e-13)
    assert y[:, 1, [0, 7]].abs().max() < 1e-13


def test_the_projection_of_a_centred_disc_is_the_same_at_every_angle():
    """A disc of radius 15 (antialiased) in a 48 x 64 image: every projection is within 2.5% of
    the peak from the mean projection, and within 4% (1% away from the rim, |s| < r - 2) from the
    analytic strip average of the chord 2 sqrt(r^2 - s^2) (the remaining error is the pixel model
    at the rim)."""
    H, W, r = 48, 64, 15.0
    op = Tomography((H, W))
    p = op(_disc(H, W, r)[None, None])[0]
    peak = p.max()
    assert (p - p.mean(0)).abs().max() < 0.025 * peak

    def area(u):  # integral of 2 sqrt(r^2 - s^2) from 0 to u
        u = u.clamp(-r, r)
        return u * torch.sqrt(r * r - u * u) + r * r * torch.asin(u / r)

    s = op.detectors
    analytic = area(s + 0.5) - area(s - 0.5)
    assert (p - analytic).abs().max() < 0.04 * peak
    assert (p - analytic)[:, s.abs() < r - 2].abs().max() < 0.01 * peak


def test_an_off_centre_disc_projects_to_x_cos_plus_y_sin():
    """Orientation: a disc at (x0, y0) (x right, y up) is seen at s = x0 cos(theta) + y0 sin(theta)."""
    H, W, x0, y0 = 40, 50, 10.0, -6.0
    op = Tomography((H, W), n_angles=12, angle_range=(0.0, 360.0))
    p = op(_disc(H, W, 4.0, x0, y0)[None, None])[0]
    centre = (p * op.detectors).sum(1) / p.sum(1)
    theta = torch.deg2rad(op.angles)
    torch.testing.assert_close(centre, x0 * torch.cos(theta) + y0 * torch.sin(theta), rtol=0, atol=0.01)


# ------------------------------------------------------------------------------------- noise


def test_noise_level_is_relative_to_the_mean_absolute_data():
    g = torch.Generator().manual_seed(0)
    y = (
        torch.rand(3, 200, 50, dtype=torch.float64, generator=g)
        * torch.tensor([1.0, 5.0, 20.0])[:, None, None]
    )
    noisy, sigma = add_noise(y, 0.1, generator=g)
    torch.testing.assert_close(sigma, 0.1 * y.abs().mean((1, 2)))
    std = (noisy - y).reshape(3, -1).std(1)
    assert ((std / sigma) - 1).abs().max() < 0.02
    # the discrepancy-principle norm: |noise| ~ sigma sqrt(M)
    norm = (noisy - y).reshape(3, -1).norm(dim=1)
    assert ((norm / (sigma * math.sqrt(200 * 50))) - 1).abs().max() < 0.02
    # reproducible with a generator, per-sample levels, zero noise
    a = add_noise(y, 0.05, generator=torch.Generator().manual_seed(1))[0]
    b = add_noise(y, 0.05, generator=torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, b)
    _, sigma = add_noise(y, torch.tensor([0.0, 0.1, 0.15]))
    torch.testing.assert_close(
        sigma, torch.tensor([0.0, 0.1, 0.15], dtype=torch.float64) * y.abs().mean((1, 2))
    )
    assert torch.equal(add_noise(y, 0.0)[0], y)


def test_noise_passes_the_gradient_through():
    y = torch.rand(2, 10, requires_grad=True)
    noisy, _ = add_noise(y, 0.1)
    noisy.sum().backward()
    torch.testing.assert_close(y.grad, torch.ones_like(y))


# ----------------------------------------------------------------------------- factory, errors


def test_make_operator():
    assert isinstance(make_operator("blur", (8, 9), sigma=1.0), GaussianBlur)
    assert isinstance(make_operator("inpainting", (8, 9), observed=0.5), Inpainting)
    op = make_operator("tomography", (8, 9), n_angles=3)
    assert isinstance(op, Tomography) and op.out_shape == (3, 13)
    assert set(imaging.OPERATORS) == {"blur", "inpainting", "tomography"}
    with pytest.raises(ValueError, match=r"unknown name 'deblur'.*\['blur', 'inpainting', 'tomography'\]"):
        make_operator("deblur", (8, 8))


def test_the_finiteness_check_can_be_switched_off():
    op = GaussianBlur((4, 4))
    x = torch.full((1, 1, 4, 4), float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        op(x)
    op.check_finite = False
    assert torch.isnan(op(x)).all()


blur, inpaint, tomo = GaussianBlur((6, 7)), Inpainting((6, 7), observed=0.5), Tomography((6, 7), n_angles=3)
nan_image = torch.zeros(1, 1, 6, 7).index_fill(3, torch.tensor([2]), float("nan"))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: blur(torch.ones(1, 6, 7)), r"x must be Tensor\[B, 1, 6, 7\].*got \[1, 6, 7\]"),
        (
            lambda: tomo(torch.ones(2, 1, 7, 6)),
            r"Tomography: x must be Tensor\[B, 1, 6, 7\].*got \[2, 1, 7, 6\]",
        ),
        (lambda: inpaint(torch.ones(2, 3, 6, 7)), r"x must be Tensor\[B, 1, 6, 7\]"),
        (lambda: blur(torch.ones(1, 1, 6, 7, dtype=torch.int64)), "x must be float32 or float64"),
        (lambda: blur([[1.0]]), r"x must be Tensor\[B, 1, 6, 7\].*got list"),
        (lambda: blur(nan_image), "x contains non-finite"),
        (lambda: tomo(nan_image), "x contains non-finite"),
        (lambda: inpaint.normal(nan_image), "x contains non-finite"),
        (lambda: tomo.adjoint(torch.ones(1, 3, 5)), r"y must be Tensor\[B, 3, 10\]"),
        (lambda: inpaint.adjoint(torch.ones(1, 20)), r"y must be Tensor\[B, 21\]"),
        (lambda: tomo.adjoint(torch.full((1, 3, 10), float("inf"))), "y contains non-finite"),
        (lambda: add_noise(torch.ones(2, 5), -0.1), "level must be finite and >= 0"),
        (lambda: add_noise(torch.ones(2, 5), torch.tensor([0.1, -0.1])), "level must be finite and >= 0"),
        (lambda: add_noise(torch.ones(2, 5), torch.ones(3)), r"level must be a number or Tensor\[B=2\]"),
        (lambda: add_noise(torch.tensor([[1.0, float("nan")]]), 0.1), "y contains non-finite"),
        (lambda: add_noise(torch.ones(5), 0.1), r"y must be a float32/float64 Tensor\[B, ...\]"),
        (lambda: GaussianBlur((6, 7), sigma=0.0), "sigma must be a finite number > 0"),
        (lambda: GaussianBlur((6, 0)), r"shape must be \(H, W\), two positive integers"),
        (lambda: Tomography(64), r"shape must be \(H, W\)"),
        (lambda: Inpainting((6, 7), observed=0.0), r"observed must be the observed fraction .* in \(0, 1\]"),
        (lambda: Inpainting((6, 7), mask=torch.ones(7, 6, dtype=torch.bool)), "does not match the mask"),
        (lambda: Inpainting(mask=torch.zeros(3, 3, dtype=torch.bool)), "observes no pixel"),
        (lambda: Inpainting(mask=torch.full((3, 3), 2.0)), "only 0/1"),
        (lambda: Inpainting(), r"give shape=\(H, W\)"),
        (lambda: Tomography((6, 7), n_angles=0), "n_angles must be an integer >= 1"),
        (lambda: Tomography((6, 7), angle_range=(90.0, 0.0)), "angle_range must be .* start < end"),
        (lambda: Tomography((6, 7), n_detectors=0), "n_detectors must be an integer >= 1"),
        (lambda: Tomography((6, 7), pixel_size=-1.0), "pixel_size must be a finite number > 0"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
