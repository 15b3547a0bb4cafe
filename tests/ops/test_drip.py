"""dtwin.ops.drip_step: compiled kernel vs reference (bit for bit on the updates), opcheck, the
Nesterov loop on strongly convex quadratics, thread independence, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import strategies as st

from dtwin.ops import drip_step, drip_step_reference, has_kernel
from dtwin.testing.ops import DEVICES, OpSample, OpTestBase, relayout, requires_kernel, to_device


@st.composite
def drip_samples(draw) -> OpSample:
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    B = draw(st.integers(1, 6))
    # the large sizes cross the CPU kernel's 16384-element chunks
    N = draw(st.one_of(st.integers(0, 300), st.integers(16000, 40000)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def log_uniform(lo, hi, n):
        return 10 ** (lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64))

    # steps of very different sizes relative to the iterate, so that tol splits the samples
    z = randn(B, N) * log_uniform(-2, 2, B)[:, None]
    y = z + randn(B, N) * log_uniform(-7, 0, B)[:, None]
    g = randn(B, N) * log_uniform(-3, 1, B)[:, None]
    step = log_uniform(-6, 0, B)
    momentum = torch.rand(B, generator=gen, dtype=torch.float64) * 0.99
    active = torch.rand(B, generator=gen) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    if draw(st.booleans()):  # an iterate at zero with a zero step: the tiny floor
        z[0], y[0], g[0] = 0.0, 0.0, 0.0
    if draw(st.booleans()):  # inactive samples' step and momentum are not read
        step = torch.where(active, step, math.nan)
        momentum = torch.where(active, momentum, math.nan)
    tol = draw(st.sampled_from([0.0, 1e-7, 1e-4, 1e-2, 0.3]))
    big = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    small = draw(st.sampled_from(["contiguous", "strided"]))
    args = (
        *(relayout(x.to(dtype), big) for x in (z, y, g)),
        *(relayout(x.to(dtype), small) for x in (step, momentum)),
        relayout(active, small),
        tol,
    )
    note = f"B={B} N={N} {dtype} {big}/{small} active={active.tolist()} tol={tol}"
    return OpSample(args, {}, note)


def _quadratics(kappas, N, dtype=torch.float64, seed=0):
    """B strongly convex quadratics f(z) = 1/2 z^T Q z - c^T z with spectra in [1, kappa]."""
    gen = torch.Generator().manual_seed(seed)
    B = len(kappas)
    U, _ = torch.linalg.qr(torch.randn(B, N, N, generator=gen, dtype=dtype))
    t = torch.linspace(0, 1, N, dtype=dtype)
    lam = torch.stack([torch.tensor(k, dtype=dtype) ** t for k in kappas])  # 1 ... kappa, geometric
    Q = U @ torch.diag_embed(lam) @ U.transpose(1, 2)
    Q = (Q + Q.transpose(1, 2)) / 2
    c = torch.randn(B, N, generator=gen, dtype=dtype)
    return Q, c, lam


def _nesterov(Q, c, L, mu, tol, max_iter):
    """The DRIP inner loop on quadratics, built from drip_step: (z, the iteration each sample
    stopped at, grad_sq at the end)."""
    B, N = c.shape
    step = 1.0 / L
    kappa_sqrt = (L / mu).sqrt()
    momentum = (kappa_sqrt - 1) / (kappa_sqrt + 1)
    z = torch.zeros(B, N, dtype=c.dtype)
    y = z.clone()
    active = torch.ones(B, dtype=torch.bool)
    stopped = torch.full((B,), -1)
    with torch.no_grad():
        for it in range(max_iter):
            g = (Q * y[:, None, :]).sum(-1) - c  # Q y - c (bmm is slow at these sizes on CPU)
            z, y, new_active, _, grad_sq = drip_step(z, y, g, step, momentum, active, tol)
            stopped = torch.where(active & ~new_active, it, stopped)
            active = new_active
            if it % 16 == 0 and not bool(active.any()):
                break
    return z, stopped, grad_sq


class TestDripStep(OpTestBase):
    op = "drip_step"
    # z_new and y_new are bitwise the reference's; the float64 sums differ in summation order only
    tolerances = {torch.float32: (1e-6, 1e-30), torch.float64: (1e-12, 1e-300)}

    def samples(self):
        return drip_samples()

    def call(self, sample):
        return drip_step(*sample.args, **sample.kwargs)

    def call_reference(self, sample):
        return drip_step_reference(*sample.args, **sample.kwargs)

    def opcheck_samples(self):
        gen = torch.Generator().manual_seed(3)
        cases = []
        for dtype, B, N in ((torch.float64, 3, 17), (torch.float32, 4, 40000), (torch.float32, 2, 0)):
            z, y, g = (torch.randn(B, N, generator=gen).to(dtype) for _ in range(3))
            step = torch.rand(B, generator=gen).to(dtype)
            momentum = torch.rand(B, generator=gen).to(dtype) * 0.9
            active = torch.arange(B) % 2 == 0
            cases.append(("drip_step", (z, y.t().contiguous().t(), g, step, momentum, active, 1e-3), {}))
        return cases


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_updates_are_bitwise_the_reference(device, dtype):
    if not has_kernel("drip_step", device):
        pytest.skip(f"no compiled {device} kernel for drip_step")
    gen = torch.Generator().manual_seed(11)
    B, N = 5, 50000
    z = torch.randn(B, N, generator=gen, dtype=dtype)
    y = z + 1e-3 * torch.randn(B, N, generator=gen, dtype=dtype)
    g = torch.randn(B, N, generator=gen, dtype=dtype)
    step = torch.tensor([1e-3, 0.3, 1e-5, 1.0, 0.01], dtype=dtype)
    momentum = torch.tensor([0.0, 0.5, 0.9, 0.99, 0.3], dtype=dtype)
    active = torch.tensor([True, True, False, True, True])
    args = (z, y, g, step, momentum, active, 1e-3)
    out = to_device(torch.ops.dtwin.drip_step(*to_device(args, device)), "cpu")
    ref = drip_step_reference(*args)
    for i in (0, 1, 2):
        assert torch.equal(out[i], ref[i]), f"output {i} differs from the reference"
    assert all(x.is_contiguous() for x in out)
    torch.testing.assert_close(out[3], ref[3], rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    torch.testing.assert_close(out[4], ref[4], rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


def test_inactive_samples_are_held():
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    y = z + 1
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    step = torch.tensor([0.5, math.nan], dtype=torch.float64)
    momentum = torch.tensor([0.5, math.nan], dtype=torch.float64)
    active = torch.tensor([True, False])
    z_new, y_new, act, dsq, gsq = drip_step(z, y, g, step, momentum, active, 1e-3)
    assert torch.equal(z_new[1], z[1]) and torch.equal(y_new[1], z[1])
    assert dsq[1] == 0 and gsq[1] == 4.0 and not bool(act[1])
    # active sample: z_new = y - 0.5 g = [1.5, 3], d = [0.5, 1], y_new = z_new + 0.5 d
    torch.testing.assert_close(z_new[0], torch.tensor([1.5, 3.0], dtype=torch.float64))
    torch.testing.assert_close(y_new[0], torch.tensor([1.75, 3.5], dtype=torch.float64))
    assert float(dsq[0]) == 1.25 and float(gsq[0]) == 1.0 and bool(act[0])


def test_relative_step_criterion():
    """active_new = delta_sq > tol^2 max(||z_new||^2, tiny), on both sides of the boundary."""
    z = torch.tensor([[3.0, 4.0]] * 3, dtype=torch.float64)  # g = 0, y - z sets the step
    y = z + torch.tensor([[0.03, 0.04], [0.0, 0.0], [0.06, 0.08]], dtype=torch.float64)
    g = torch.zeros_like(z)
    ones = torch.ones(3, dtype=torch.float64)
    _, _, act, _, _ = drip_step(z, y, g, ones, 0 * ones, torch.ones(3, dtype=torch.bool), 0.0098)
    # relative steps: 0.05 / 5.05 = 0.0099 > tol; 0 (stops); 0.1 / 5.1 = 0.0196 > tol
    assert act.tolist() == [True, False, True]
    _, _, act, _, _ = drip_step(z, y, g, ones, 0 * ones, torch.ones(3, dtype=torch.bool), 0.0199)
    assert act.tolist() == [False, False, False]
    # at zero: the step is compared with tol * sqrt(tiny) in absolute terms
    zero = torch.zeros(1, 2, dtype=torch.float64)
    y = zero + torch.tensor([[1e-3, 0.0]], dtype=torch.float64)
    args = (ones[:1], 0 * ones[:1], torch.ones(1, dtype=torch.bool))
    assert bool(drip_step(zero, y, zero, *args, 0.5)[2])  # 1e-6 > 0.25 * 1e-6 (the iterate is y)
    assert not bool(drip_step(zero, zero, zero, *args, 0.5)[2])  # 0 > 0.25 * tiny is false


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_nesterov_loop_converges_and_stops_per_sample(backend, monkeypatch):
    if backend == "compiled" and not has_kernel("drip_step", "cpu"):
        pytest.skip("no compiled CPU kernel for drip_step")
    monkeypatch.setenv("DTWIN_BACKEND", backend)
    kappas = [4.0, 40.0, 400.0, 2000.0]
    Q, c, lam = _quadratics(kappas, N=48)
    L, mu = lam[:, -1], lam[:, 0]
    z, stopped, grad_sq = _nesterov(Q, c, L, mu, tol=1e-12, max_iter=5000)
    solution = torch.linalg.solve(Q, c)
    rel = (z - solution).norm(dim=1) / solution.norm(dim=1)
    assert bool((rel < 1e-8).all()), f"relative errors {rel.tolist()} (stopped at {stopped.tolist()})"
    assert bool((stopped >= 0).all()), f"a sample did not stop: {stopped.tolist()}"
    # better conditioned problems stop earlier, each at its own iteration
    assert stopped.tolist() == sorted(stopped.tolist()) and len(set(stopped.tolist())) == len(kappas)
    assert bool((grad_sq.sqrt() < 1e-8 * L * solution.norm(dim=1)).all())


@requires_kernel("drip_step")
def test_compiled_and_reference_loops_agree(monkeypatch):
    Q, c, lam = _quadratics([10.0, 300.0], N=20, dtype=torch.float32, seed=2)
    runs = []
    for backend in ("compiled", "reference"):
        monkeypatch.setenv("DTWIN_BACKEND", backend)
        runs.append(_nesterov(Q, c, lam[:, -1], lam[:, 0], tol=1e-5, max_iter=2000))
    # the updates are bitwise equal; the stopping test sees the same float64 sums up to rounding
    assert torch.equal(runs[0][1], runs[1][1])
    assert torch.equal(runs[0][0], runs[1][0])


@requires_kernel("drip_step")
def test_result_does_not_depend_on_the_number_of_threads():
    gen = torch.Generator().manual_seed(5)
    B, N = 3, 70000
    z, y, g = (torch.randn(B, N, generator=gen) for _ in range(3))
    args = (z, y, g, torch.full((B,), 0.1), torch.full((B,), 0.5), torch.ones(B, dtype=torch.bool), 1e-3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.dtwin.drip_step(*args)
        torch.set_num_threads(max(2, threads))
        many = torch.ops.dtwin.drip_step(*args)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@requires_kernel("drip_step", "cuda")
def test_no_host_synchronisation_on_cuda():
    B, N = 4, 10000
    z, y, g = (torch.randn(B, N, device="cuda") for _ in range(3))
    step, momentum = torch.full((B,), 0.1, device="cuda"), torch.full((B,), 0.5, device="cuda")
    active = torch.ones(B, dtype=torch.bool, device="cuda")
    drip_step(z, y, g, step, momentum, active, 1e-3)  # warm up (allocations)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            z, y, active, _, _ = drip_step(z, y, g, step, momentum, active, 1e-3)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_refuses_inputs_that_require_grad():
    z = torch.zeros(2, 3, requires_grad=True)
    other = torch.zeros(2, 3)
    args = (other, other, torch.ones(2), torch.zeros(2), torch.ones(2, dtype=torch.bool), 1e-3)
    with pytest.raises(ValueError, match=r"z requires grad.*no_grad"):
        drip_step(z, *args)
    with torch.no_grad():
        drip_step(z, *args)


def _good(B=2, N=3, dtype=torch.float64):
    return dict(
        z=torch.zeros(B, N, dtype=dtype),
        y=torch.zeros(B, N, dtype=dtype),
        g=torch.zeros(B, N, dtype=dtype),
        step=torch.ones(B, dtype=dtype),
        momentum=torch.zeros(B, dtype=dtype),
        active=torch.ones(B, dtype=torch.bool),
        tol=1e-3,
    )


def _bad(**changes):
    args = _good()
    args.update(changes)
    return args


BAD_INPUTS = {
    "z 1-D": (_bad(z=torch.zeros(6, dtype=torch.float64)), r"z must be a Tensor\[B, N\]"),
    "z integer": (_bad(z=torch.zeros(2, 3, dtype=torch.int64)), "z must be float32 or float64"),
    "z float16": (_bad(z=torch.zeros(2, 3, dtype=torch.float16)), "z must be float32 or float64"),
    "y shape": (_bad(y=torch.zeros(2, 4, dtype=torch.float64)), r"y must be a Tensor\[B, N\] of z's shape"),
    "g missing": (_bad(g=None), "g must be"),
    "step shape": (_bad(step=torch.ones(3, dtype=torch.float64)), r"step must be a Tensor\[B\] with B = 2"),
    "step float": (_bad(step=0.5), r"step must be a Tensor\[B\]"),
    "momentum dtype": (_bad(momentum=torch.zeros(2, dtype=torch.float32)), "momentum has dtype"),
    "g dtype": (_bad(g=torch.zeros(2, 3, dtype=torch.float32)), "g has dtype"),
    "active not bool": (_bad(active=torch.ones(2)), "active must be a bool"),
    "active shape": (_bad(active=torch.ones(2, 1, dtype=torch.bool)), r"active must be a Tensor\[B\]"),
    "tol negative": (_bad(tol=-1e-3), "tol must be"),
    "tol nan": (_bad(tol=math.nan), "tol must be"),
    "tol tensor": (_bad(tol=torch.tensor(1e-3)), "tol must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_argument(case):
    args, match = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=match):
        drip_step(**args)


def test_device_mismatch_names_the_argument():
    args = _good()
    args["g"] = torch.zeros(2, 3, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="g is on meta but z is on cpu"):
        drip_step(**args)


@requires_kernel("drip_step")
def test_direct_op_call_checks_shapes():
    args = _good()
    args["step"] = torch.ones(3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"step must be \[B\]"):
        torch.ops.dtwin.drip_step(*args.values())


@requires_kernel("drip_step")
def test_traces_in_one_graph():
    """The Python face (checks, kernel choice) traces under torch.compile without graph breaks."""
    gen = torch.Generator().manual_seed(1)
    z, y, g = (torch.randn(3, 100, generator=gen) for _ in range(3))
    args = (z, y, g, torch.full((3,), 0.1), torch.full((3,), 0.5), torch.tensor([True, False, True]), 1e-3)
    compiled = torch.compile(drip_step, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        for a, b in zip(compiled(*args), drip_step(*args), strict=True):
            assert torch.equal(a, b)
