"""DRIP's lower level: a training step through dtwin.nn.solve (implicit backward) against
dtwin.nn.solve_unrolled (autograd through every iteration), in one run.

    pytest bench/test_drip_solve.py --benchmark-enable
    DTWIN_BENCH_PEAK=1 pytest bench/test_drip_solve.py --benchmark-enable   # + CPU peak memory

One training step: solve the lower level for B = 16 blurred 64 x 64 images (GaussianBlur sigma 2,
10% noise) with 64 latent channels (Synthesis 5 x 5, ConvexRegularizer with 32 filters 3 x 3,
float32) for exactly ``iters`` iterations (tol = 0), then the loss ||E z - u||^2 and its backward
into E and R. The implicit backward runs the solver's defaults (CG to a relative residual of
1e-4, at most ``iters`` iterations). The unrolled step at 200 iterations keeps about 10 GB.

Memory, reported as the unrolled / dtwin ratio after the run:
- ``saved``: bytes of the distinct storages that autograd saves for the backward (a
  ``saved_tensors_hooks`` pack hook during the forward of the timed step): the graph a training
  step keeps. It leaves out the transient work memory of the implicit backward (CG).
- ``peak``: on CUDA ``torch.cuda.max_memory_allocated`` over the timed step, less what was
  allocated before. On Linux CPUs with ``DTWIN_BENCH_PEAK=1``: each case runs once more, untimed,
  in a fresh child process (glibc told to give freed tensors back: ``MALLOC_MMAP_THRESHOLD_``),
  which reports the growth of its peak resident memory (VmHWM, reset through /proc/self/clear_refs)
  over the step: everything, the CG work memory included.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dtwin.nn import ConvexRegularizer, Synthesis, solve, solve_unrolled
from dtwin.ops import has_kernel
from dtwin.sim.imaging import GaussianBlur, add_noise

B, SIDE, LATENT, FILTERS = 16, 64, 64, 32
ITERS = [10, 50, 200]
ROLES = {"dtwin": solve, "unrolled": solve_unrolled}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and has_kernel("drip_step", "cuda") else [])
_STATUS = Path("/proc/self/status")
_MEMORY: dict[tuple[str, int, str], tuple[float, float | None, int]] = {}


def _problem(device: str):
    torch.manual_seed(0)
    A = GaussianBlur((SIDE, SIDE), sigma=2.0).to(device)
    E = Synthesis(LATENT, kernel_size=5).to(device)
    R = ConvexRegularizer(LATENT, FILTERS, kernel_size=3).to(device)
    gen = torch.Generator().manual_seed(1)
    # smooth random images: a coarse grid upsampled
    u = torch.rand(B, 1, SIDE // 8, SIDE // 8, generator=gen)
    u = torch.nn.functional.interpolate(u, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    b, _ = add_noise(A(u), 0.1, generator=gen)
    u, b = u.to(device), b.to(device)
    solve(A, E, R, b, max_iter=2)  # warm up: the operator norm cache, the convolution primitives
    return A, E, R, b, u


_PROBLEMS: dict[str, tuple] = {}


def _get_problem(device: str):
    if device not in _PROBLEMS:
        _PROBLEMS[device] = _problem(device)
    return _PROBLEMS[device]


def _rss_kib(field: str) -> int | None:
    """VmRSS or VmHWM of this process in KiB (Linux), else None."""
    try:
        match = re.search(rf"{field}:\s+(\d+) kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _training_step(fn, A, E, R, b, u, iters: int, device: str) -> dict:
    """One step: solve, loss, backward; saved-tensor bytes (and the CUDA peak) measured."""
    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    for q in (*E.parameters(), *R.parameters()):
        q.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn(A, E, R, b, tol=0.0, max_iter=iters)
        loss = (E(result.z) - u).square().mean()
    loss.backward()
    peak = None
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    return {
        "saved_bytes": sum(storages.values()),
        "peak_bytes": peak,
        "iterations": int(result.iterations.max()),
    }


def peak_rss_growth(role: str, iters: int) -> float | None:
    """Bytes by which one CPU training step raises this process's peak resident memory (run it in
    a fresh process), or None where /proc/self/clear_refs cannot reset the peak."""
    A, E, R, b, u = _get_problem("cpu")
    base = _rss_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
    except OSError:
        return None
    z = ROLES[role](A, E, R, b, tol=0.0, max_iter=iters).z
    (E(z) - u).square().mean().backward()
    hwm = _rss_kib("VmHWM")
    return None if base is None or hwm is None else 1024.0 * (hwm - base)


def _child_peak(role: str, iters: int) -> float | None:
    root = Path(__file__).resolve().parents[1]
    code = f"import bench.test_drip_solve as m; print(m.peak_rss_growth({role!r}, {iters}))"
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the peak-memory child failed:\n{out.stderr[-3000:]}")
    value = out.stdout.strip().splitlines()[-1]
    return None if value == "None" else float(value)


@pytest.fixture(scope="module", autouse=True)
def _memory_report(request):
    yield
    if not _MEMORY:
        return
    lines = ["", "DRIP training step memory: unrolled / dtwin (implicit) measured in this run"]
    lines.append(f"{'case':34s} {'saved dtwin':>12s} {'saved unrolled':>15s} {'ratio':>7s}   peak ratio")
    for device in DEVICES:
        for n in ITERS:
            mine, ref = _MEMORY.get((device, n, "dtwin")), _MEMORY.get((device, n, "unrolled"))
            if mine is None or ref is None:
                continue
            peak = ""
            if mine[1] and ref[1]:
                peak = f"{ref[1] / mine[1]:7.1f}x ({mine[1] / 2**20:.0f} vs {ref[1] / 2**20:.0f} MiB)"
            lines.append(
                f"{f'{device} iters={n}':34s} {mine[0] / 2**20:9.1f}MiB {ref[0] / 2**20:12.1f}MiB "
                f"{ref[0] / mine[0]:6.1f}x   {peak}"
            )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n".join(lines))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("iters", ITERS)
def test_drip_training_step(benchmark, role, iters, device):
    A, E, R, b, u = _get_problem(device)
    fn = ROLES[role]
    stats: dict = {}

    def run():
        stats.update(_training_step(fn, A, E, R, b, u, iters, device))

    benchmark.pedantic(run, rounds=3 if iters <= 10 else 1, iterations=1, warmup_rounds=0)
    assert stats["iterations"] == iters
    if device == "cpu" and os.environ.get("DTWIN_BENCH_PEAK") == "1":
        stats["peak_bytes"] = _child_peak(role, iters)
    _MEMORY[(device, iters, role)] = (stats["saved_bytes"], stats["peak_bytes"], iters)
    benchmark.extra_info.update(
        pair=f"drip train step B={B} {SIDE}x{SIDE} C={LATENT} iters={iters} {device}",
        role=role,
        saved_MiB=stats["saved_bytes"] / 2**20,
        peak_MiB=None if stats["peak_bytes"] is None else stats["peak_bytes"] / 2**20,
    )
