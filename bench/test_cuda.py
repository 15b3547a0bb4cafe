"""GPU benchmarks: dtwin's CUDA kernels against their references and peers, in one run.

    pytest bench/test_cuda.py --benchmark-enable        (scripts/gpu_check bench runs it)

Skipped where torch sees no GPU or dtwin was built without CUDA. Every timed call ends with
``torch.cuda.synchronize()``. Sizes fill an H100-class GPU; the CPU suites beside this file keep
the sizes of this project's 2-core CI machine.
"""

from __future__ import annotations

import pytest
import torch
from test_spectral import _fno, fno_training_step
from test_wavelet import DtwinLayer, PtwtLayer, PytorchWaveletsLayer
from torch import nn

from dtwin.ops import has_kernel, hh_simulate, hh_simulate_reference, spectral_conv1d, spectral_conv2d
from dtwin.sim import hh

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and has_kernel("hh_simulate", "cuda")),
    reason="needs a GPU and dtwin built with CUDA (DTWIN_CUDA=1)",
)
DEV = "cuda"


def _timed(benchmark, fn, rounds: int, warmup: int = 2):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=warmup)


# --------------------------------------------------------------------------------------------
# Hodgkin-Huxley: neuron-steps per second with in-kernel pulses

HH_N = 1 << 20
HH_T_END = 100.0
HH_SCHEMES = {
    "rush_larsen dt=0.01": dict(method="rush_larsen", dt=0.01),
    "rk4 dt=0.05": dict(method="rk4", dt=0.05),
    "dopri5 rtol=1e-5 (default)": dict(method="dopri5", dt=0.01, rtol=1e-5, atol=1e-5),
}


def _hh_inputs(dtype: torch.dtype):
    pulses = hh.single_pulses(HH_N, torch.Generator().manual_seed(7))[:, None, :]
    params = hh.HHParameters().tensor(torch.float64).repeat(HH_N, 1)
    y0 = torch.tensor(hh.DEFAULT_Y0, dtype=torch.float64).repeat(HH_N, 1)
    t_out = torch.linspace(0, HH_T_END, 11, dtype=torch.float64)
    return [v.to(DEV, dtype) for v in (t_out, params, y0, pulses)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scheme", list(HH_SCHEMES))
@pytest.mark.parametrize("role", ["dtwin", "reference"])
def test_hh_cuda(benchmark, role, scheme, dtype):
    settings = HH_SCHEMES[scheme]
    if role == "reference" and settings["method"] == "dopri5":
        pytest.skip("the reference's adaptive loop takes minutes at this size")
    args = _hh_inputs(dtype)
    fn = hh_simulate if role == "dtwin" else hh_simulate_reference
    benchmark.extra_info.update(pair=f"cuda hh {scheme} {str(dtype)[6:]} N=2^20 100ms", role=role)
    out = _timed(
        benchmark,
        lambda: fn(*args, **settings),
        rounds=5 if role == "dtwin" else 1,
        warmup=1 if role == "dtwin" else 0,
    )
    assert int(out[2].ne(0).sum()) == 0, "some neurons failed"
    if settings["method"] != "dopri5":
        steps = HH_N * HH_T_END / settings["dt"]
        rate = steps / benchmark.stats.stats.median
        benchmark.extra_info["neuron_steps_per_s"] = rate
        print(f"\n{role} {scheme} {dtype}: {rate:.3g} neuron-steps/s")


# --------------------------------------------------------------------------------------------
# spectral convolution vs neuraloperator's SpectralConv (n_modes counts the whole spectrum)

SPECTRAL = {
    "1d [100,32,500] M=16 (HH FNO)": ((100, 32, 500), (32, 32, 16), (30,)),
    "2d [16,32,64,64] M=16x16": ((16, 32, 64, 64), (32, 32, 32, 16), (32, 30)),
    "1d [256,64,2048] M=32": ((256, 64, 2048), (64, 64, 32), (62,)),
    "2d [32,64,128,128] M=32x32": ((32, 64, 128, 128), (64, 64, 64, 32), (64, 62)),
}
#: role -> (dtype, algorithm); 'auto' picks the transform by the device's cost model
SPECTRAL_ROLES = {
    "dtwin": (torch.float32, "auto"),
    "dtwin dft": (torch.float32, "dft"),
    "dtwin fft": (torch.float32, "fft"),
    "dtwin bf16": (torch.bfloat16, "auto"),
    "neuraloperator": (torch.float32, None),
}


@pytest.mark.parametrize("role", list(SPECTRAL_ROLES))
@pytest.mark.parametrize("case", list(SPECTRAL))
def test_spectral_cuda_forward_backward(benchmark, case, role):
    x_shape, w_shape, n_modes = SPECTRAL[case]
    torch.manual_seed(0)
    two_d = len(x_shape) == 4
    dtype, algorithm = SPECTRAL_ROLES[role]
    x = torch.randn(*x_shape, device=DEV, dtype=dtype, requires_grad=True)
    grad = torch.randn(x_shape[0], w_shape[1], *x_shape[2:], device=DEV, dtype=dtype)
    if role.startswith("dtwin"):
        weight = (torch.randn(*w_shape, dtype=torch.complex64, device=DEV) * 0.1).requires_grad_()
        op = spectral_conv2d if two_d else spectral_conv1d
        layer = lambda x: op(x, weight, algorithm=algorithm)  # noqa: E731
    else:
        module = pytest.importorskip("neuralop.layers.spectral_convolution", reason="no neuraloperator")
        layer = module.SpectralConv(x_shape[1], w_shape[1], n_modes=n_modes, bias=False).to(DEV)
    benchmark.extra_info.update(pair=f"cuda spectral conv {case} fwd+bwd", role=role)
    _timed(benchmark, lambda: layer(x).backward(grad), rounds=30, warmup=3)


@pytest.mark.parametrize("batch", [100, 1600])
@pytest.mark.parametrize("role", ["dtwin", "neuraloperator"])
def test_fno_training_step_cuda(benchmark, role, batch):
    """One AdamW step of the HH paper's FNO on `batch` functions of 500 points."""
    torch.manual_seed(0)
    model = _fno(role).to(DEV)
    x, y = torch.randn(batch, 2, 500, device=DEV), torch.randn(batch, 1, 500, device=DEV) - 70
    benchmark.extra_info.update(pair=f"cuda FNO training step (HH config, batch {batch} x 500)", role=role)
    step = fno_training_step(model, role, x, y)
    _timed(benchmark, step, rounds=30, warmup=3)


# --------------------------------------------------------------------------------------------
# the WNO layer vs the same layer on pytorch_wavelets and on ptwt

WAVELET_SHAPE = (256, 64, 2048)
WAVELET_ROLES = {
    "dtwin": ("dtwin", "symmetric"),
    "pytorch_wavelets symmetric": ("pytorch_wavelets", "symmetric"),
    "ptwt zero": ("ptwt", "zero"),
}


def _wavelet_layer(library: str, mode: str, wavelet: str, C: int, L: int) -> nn.Module:
    torch.manual_seed(0)
    if library == "dtwin":
        return DtwinLayer(C, L, wavelet, 3, mode, reference=False)
    if library == "pytorch_wavelets":
        return PytorchWaveletsLayer(C, L, wavelet, 3, mode)
    return PtwtLayer(C, L, wavelet, 3, mode)


@pytest.mark.parametrize("wavelet", ["db4", "db24"])
@pytest.mark.parametrize("role", list(WAVELET_ROLES))
def test_wno_layer_cuda_forward_backward(benchmark, role, wavelet):
    library, mode = WAVELET_ROLES[role]
    B, C, L = WAVELET_SHAPE
    layer = _wavelet_layer(library, mode, wavelet, C, L).to(DEV)
    x = torch.randn(B, C, L, device=DEV, requires_grad=True)
    grad = torch.randn(B, C, L, device=DEV)
    benchmark.extra_info.update(pair=f"cuda WNO layer {wavelet} L3 [256,64,2048] fwd+bwd", role=role)
    _timed(benchmark, lambda: layer(x).backward(grad), rounds=30, warmup=3)


@pytest.mark.parametrize("role", ["dtwin", "pytorch_wavelets"])
def test_wno_training_step_cuda(benchmark, role):
    """One AdamW step of the HH paper's WNO (width 64, 5 layers, db24 level 3), batch 100 x 500."""
    from dtwin_operators.wno import WNO

    torch.manual_seed(0)
    model = WNO(out_offset=-72.0, out_scale=13.0)
    if role == "pytorch_wavelets":
        model.net.kernels = nn.ModuleList(
            PytorchWaveletsLayer(64, 500, "db24", 3, "symmetric") for _ in model.net.kernels
        )
    model = model.to(DEV)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = torch.randn(100, 2, 500, device=DEV), torch.randn(100, 1, 500, device=DEV) - 70
    benchmark.extra_info.update(pair="cuda WNO training step (HH config, batch 100 x 500)", role=role)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model.loss(model({"x": x}), y).backward()
        optimizer.step()

    _timed(benchmark, step, rounds=20, warmup=3)
