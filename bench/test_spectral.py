"""Spectral convolution and FNO: dtwin vs the definition and vs neuraloperator 2.0, in one run.

    pytest bench/test_spectral.py --benchmark-enable

neuraloperator's ``n_modes`` counts the whole spectrum: its n_modes=30 keeps the 16 rfft modes
used here (1D), n_modes=(32, 30) the 32 x 16 of the 2D case: equal work.
"""

from __future__ import annotations

import pytest
import torch

from dtwin.ops import spectral_conv1d, spectral_conv1d_reference, spectral_conv2d, spectral_conv2d_reference

CASES = {
    "1d [100,32,512] M=16": ((100, 32, 512), (32, 32, 16), (30,)),
    "2d [16,32,64,64] M=16x16": ((16, 32, 64, 64), (32, 32, 32, 16), (32, 30)),
}
ROLES = ["dtwin", "definition", "neuraloperator"]


def _layer(case: str, role: str):
    x_shape, w_shape, n_modes = CASES[case]
    torch.manual_seed(0)
    weight = (torch.randn(*w_shape, dtype=torch.complex64) * 0.1).requires_grad_()
    two_d = len(x_shape) == 4
    if role == "dtwin":
        return lambda x: (spectral_conv2d if two_d else spectral_conv1d)(x, weight)
    if role == "definition":
        return lambda x: (spectral_conv2d_reference if two_d else spectral_conv1d_reference)(x, weight)
    module = pytest.importorskip(
        "neuralop.layers.spectral_convolution", reason="neuraloperator is not installed"
    )
    return module.SpectralConv(x_shape[1], w_shape[1], n_modes=n_modes, bias=False)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", list(CASES))
def test_spectral_conv_forward(benchmark, case, role):
    layer = _layer(case, role)
    x = torch.randn(*CASES[case][0])
    benchmark.extra_info.update(pair=f"spectral conv {case} forward", role=role)
    with torch.no_grad():
        benchmark.pedantic(lambda: layer(x), rounds=20, iterations=1, warmup_rounds=3)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", list(CASES))
def test_spectral_conv_forward_backward(benchmark, case, role):
    layer = _layer(case, role)
    x = torch.randn(*CASES[case][0], requires_grad=True)
    grad = torch.randn(x.shape[0], CASES[case][1][1], *x.shape[2:])
    benchmark.extra_info.update(pair=f"spectral conv {case} fwd+bwd", role=role)

    def step():
        layer(x).backward(grad)

    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=3)


# the cost model's calibration: 'auto' against both algorithms; ratios >= 1 mean auto chose well
SWEEP = [(L, M) for L in (128, 512, 2048) for M in (8, 16, 32, 64) if M <= L // 2 + 1]


@pytest.mark.parametrize("algorithm", ["auto", "dft", "fft"])
@pytest.mark.parametrize(("L", "M"), SWEEP, ids=[f"L{L}-M{M}" for L, M in SWEEP])
def test_dft_vs_fft(benchmark, L, M, algorithm):
    B = max(1, 25 * 512 // L)
    torch.manual_seed(0)
    x = torch.randn(B, 32, L, requires_grad=True)
    w = (torch.randn(32, 32, M, dtype=torch.complex64) * 0.1).requires_grad_()
    grad = torch.randn(B, 32, L)
    benchmark.extra_info.update(
        pair=f"spectral 1d L={L} M={M} fwd+bwd: auto vs each",
        role="dtwin" if algorithm == "auto" else algorithm,
    )
    benchmark.pedantic(
        lambda: spectral_conv1d(x, w, algorithm=algorithm).backward(grad),
        rounds=10,
        iterations=1,
        warmup_rounds=2,
    )


def _fno(role: str):
    if role == "dtwin":
        from dtwin_operators.fno import FNO

        return FNO(out_offset=-72.0, out_scale=13.0)
    models = pytest.importorskip("neuralop.models", reason="neuraloperator is not installed")
    # the same architecture: linear lift, 3 Fourier layers (spectral + linear skip, ReLU), width 32,
    # 16 rfft modes, projection 32 -> 128 -> 1, padding 10 of 500 points, no channel MLP
    return models.FNO(
        n_modes=(30,),
        in_channels=2,
        out_channels=1,
        hidden_channels=32,
        n_layers=3,
        lifting_channel_ratio=0,
        projection_channel_ratio=4,
        positional_embedding=None,
        non_linearity=torch.nn.functional.relu,
        use_channel_mlp=False,
        fno_skip="linear",
        domain_padding=0.02,
    )


@pytest.mark.parametrize("role", ["dtwin", "neuraloperator"])
def test_fno_training_step(benchmark, role):
    """One AdamW step of the HH paper's FNO on a batch of 100 functions of 500 points."""
    torch.manual_seed(0)
    model = _fno(role)
    x, y = torch.randn(100, 2, 500), torch.randn(100, 1, 500) - 70
    benchmark.extra_info.update(
        pair="FNO training step (HH config, batch 100 x 500)",
        role=role,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    benchmark.pedantic(fno_training_step(model, role, x, y), rounds=15, iterations=1, warmup_rounds=3)


def fno_training_step(model, role: str, x: torch.Tensor, y: torch.Tensor):
    """One AdamW step (summed relative L2) of dtwin's FNO or neuraloperator's, as a callable."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    forward = (lambda: model({"x": x})) if role == "dtwin" else (lambda: model(x))

    def step():
        optimizer.zero_grad(set_to_none=True)
        pred = forward()
        loss = ((pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).sum()
        loss.backward()
        optimizer.step()

    return step
