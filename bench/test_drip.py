"""DRIP's fused iteration: dtwin.ops.drip_step against its plain-torch reference, in one run.

    pytest bench/test_drip.py --benchmark-enable

One call is one iteration of the inner convex solve's vector algebra for B = 16 images of
64 x 64 x 64 voxels (float32): the updates, three squared norms per sample (float64 sums) and the
stopping test. ``torch float32 sums`` is the same algebra written the short way in torch (squared
norms accumulated in float32): what an unfused loop would cost without the reference's float64
accuracy. On CUDA every timed call ends with ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import pytest
import torch

from dtwin.ops import drip_step, drip_step_reference, has_kernel

B, N = 16, 64 * 64 * 64
TOL = 1e-4


def _inputs(device: str):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(B, N, generator=gen)
    y = z + 1e-3 * torch.randn(B, N, generator=gen)
    g = torch.randn(B, N, generator=gen)
    step = torch.full((B,), 1e-3)
    momentum = torch.full((B,), 0.9)
    active = torch.arange(B) % 4 != 0  # a quarter of the samples already stopped
    return [x.to(device) for x in (z, y, g, step, momentum, active)]


def _torch_float32_sums(z, y, g, step, momentum, active, tol):
    on = active[:, None]
    z_new = torch.where(on, torch.addcmul(y, step[:, None], g, value=-1), z)
    d = z_new - z
    y_new = torch.where(on, torch.addcmul(z_new, momentum[:, None], d), z)
    delta_sq = torch.linalg.vector_norm(d, dim=1) ** 2
    active_new = active & (delta_sq > tol**2 * torch.linalg.vector_norm(z_new, dim=1) ** 2)
    return z_new, y_new, active_new, delta_sq, torch.linalg.vector_norm(g, dim=1) ** 2


ROLES = {"dtwin": drip_step, "reference": drip_step_reference, "torch float32 sums": _torch_float32_sums}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and has_kernel("drip_step", "cuda") else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("role", list(ROLES))
def test_drip_step(benchmark, role, device):
    args = _inputs(device)
    fn = ROLES[role]
    benchmark.extra_info.update(pair=f"drip step B={B} N={N} f32 {device}", role=role)

    def run():
        out = fn(*args, TOL)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    with torch.no_grad():
        out = benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=3)
    assert out[0].shape == (B, N)
