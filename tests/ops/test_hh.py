"""dtwin.ops.hh_simulate: compiled kernel vs reference, opcheck, gradcheck, the singular rates,
the sensitivities, failures and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import strategies as st

from dtwin.ops import has_kernel, hh_simulate, hh_simulate_reference
from dtwin.ops.hh import _x_over_expm1_derivative, _XOverExpm1
from dtwin.testing.ops import OpSample, OpTestBase, relayout, requires_kernel

DEFAULT_PARAMS = (120.0, 36.0, 0.3, 40.0, -87.0, -64.387, 1.0)
DEFAULT_Y0 = (-75.0, 0.05, 0.595, 0.317)


@st.composite
def hh_samples(draw) -> OpSample:
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    method = draw(st.sampled_from(["rush_larsen", "rk4", "dopri5"]))
    source = draw(st.sampled_from(["pulses", "previous", "linear"]))
    sens = method != "dopri5" and draw(st.booleans())
    N = draw(st.integers(1, 40 if not sens else 6))
    t_end = draw(st.floats(0.5, 3.0 if sens else 10.0))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    T = draw(st.integers(1, 12))
    t_out = torch.sort(rand(T) * t_end).values
    t_out[-1] = t_end
    if draw(st.booleans()):
        t_out[0] = 0.0
    t_out = torch.unique(t_out)
    params = torch.tensor(DEFAULT_PARAMS, dtype=torch.float64) * (1 + 0.2 * (rand(N, 7) - 0.5))
    y0 = torch.tensor(DEFAULT_Y0, dtype=torch.float64).repeat(N, 1)
    y0[:, 0] += 20 * (rand(N) - 0.5)
    kwargs = dict(method=method, all_states=draw(st.booleans()), sensitivities=sens)
    if method == "dopri5":
        kwargs.update(rtol=10 ** -draw(st.floats(4, 7)), atol=10 ** -draw(st.floats(4, 7)), dt=0.05)
    else:
        kwargs["dt"] = draw(st.floats(0.02, 0.1))
    pulses = current = t_current = None
    if source == "pulses":
        K = draw(st.integers(0, 3 if not sens else 1))
        edges = torch.sort(rand(N, 2 * K) * (t_end + 1) - 0.5, dim=1).values
        pulses = torch.stack((edges[:, 0::2], edges[:, 1::2], 15 * rand(N, K)), -1)
    else:
        T_in = draw(st.integers(2, 30))
        t_current = torch.sort(rand(T_in)).values * (t_end + 1.0) - 0.5
        t_current[0], t_current[-1] = -0.5, t_end + 0.5
        t_current = torch.unique(t_current)
        # quantised values repeat, so equal neighbours (merged segments) occur
        current = torch.round(rand(N, t_current.shape[0]) * 30) / 2 - 2
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))

    def prep(x):
        return None if x is None else relayout(x.to(dtype), layout)

    note = f"{method} {source} N={N} {dtype} {layout} {kwargs}"
    return OpSample(
        (prep(t_out), prep(params), prep(y0), prep(pulses), prep(current), prep(t_current)),
        dict(input=source, **kwargs),
        note,
    )


class TestHHSimulate(OpTestBase):
    op = "hh_simulate"
    # float32: spike timing amplifies rounding differences between two correct implementations
    tolerances = {torch.float32: (2e-3, 0.05), torch.float64: (1e-7, 1e-7)}

    def samples(self):
        return hh_samples()

    def call(self, sample):
        return hh_simulate(*sample.args, **sample.kwargs)

    def call_reference(self, sample):
        return hh_simulate_reference(*sample.args, **sample.kwargs)

    def tolerance(self, sample):
        rtol, atol = super().tolerance(sample)
        if sample.kwargs["method"] == "dopri5":
            # accept/reject decisions may flip at rounding level; both stay within the tolerance
            solver = max(sample.kwargs["rtol"], sample.kwargs["atol"])
            rtol, atol = max(rtol, 100 * solver), max(atol, 100 * solver)
        return rtol, atol

    def opcheck_samples(self):
        t = torch.linspace(0, 3, 7, dtype=torch.float64)
        params = torch.tensor(DEFAULT_PARAMS, dtype=torch.float64).repeat(3, 1)
        y0 = torch.tensor(DEFAULT_Y0, dtype=torch.float64).repeat(3, 1)
        pulses = torch.tensor([[[0.5, 2.0, 8.0]], [[1.0, 2.5, 3.0]], [[0.0, 5.0, 10.0]]], dtype=torch.float64)
        tc = torch.linspace(-1, 4, 11, dtype=torch.float64)
        cur = torch.linspace(0, 10, 33, dtype=torch.float64).reshape(3, 11)
        p_grad = params.clone().requires_grad_()
        op = "hh_simulate"
        common = (1e-6, 1e-6)
        return [
            (
                op,
                (
                    t,
                    p_grad,
                    y0,
                    pulses.clone().requires_grad_(),
                    None,
                    None,
                    "pulses",
                    "rk4",
                    0.05,
                    *common,
                    1000,
                    False,
                    True,
                ),
                {},
            ),
            (
                op,
                (
                    t,
                    params,
                    y0,
                    pulses,
                    None,
                    None,
                    "pulses",
                    "rush_larsen",
                    0.02,
                    *common,
                    1000,
                    True,
                    False,
                ),
                {},
            ),
            (
                op,
                (
                    t.float(),
                    params.float(),
                    y0.float(),
                    None,
                    cur.float(),
                    tc.float(),
                    "linear",
                    "dopri5",
                    0.05,
                    *common,
                    10000,
                    True,
                    False,
                ),
                {},
            ),
            (op, (t, p_grad, y0, None, cur, tc, "previous", "rk4", 0.05, *common, 1000, False, True), {}),
        ]

    def gradcheck_samples(self):
        t = torch.linspace(0.2, 4, 9, dtype=torch.float64)
        g = torch.Generator().manual_seed(3)
        params = torch.tensor(DEFAULT_PARAMS, dtype=torch.float64) * (
            1 + 0.1 * torch.rand(3, 7, generator=g, dtype=torch.float64)
        )
        y0 = torch.tensor(DEFAULT_Y0, dtype=torch.float64).repeat(3, 1)
        # edges off the dt grid: the step count ceil(length / dt) is locally constant there
        pulses = torch.tensor(
            [[[0.53, 2.17, 8.0]], [[1.31, 3.23, 3.0]], [[0.77, 2.93, 10.0]]], dtype=torch.float64
        )
        tc = torch.linspace(-1, 5, 13, dtype=torch.float64)
        cur = torch.rand(3, 13, generator=g, dtype=torch.float64) * 10
        # the tensors the closures capture live on the device under test (the base moves the inputs)
        t, y0, tc, cur = (v.to(self.device) for v in (t, y0, tc, cur))
        cases = []
        for method in ("rush_larsen", "rk4"):
            cases.append(
                (
                    lambda p, pl, m=method: hh_simulate(t, p, y0, pl, method=m, dt=0.05)[0],
                    (params.clone().requires_grad_(), pulses.clone().requires_grad_()),
                )
            )
            cases.append(
                (
                    lambda p, m=method: hh_simulate(
                        t, p, y0, None, cur, tc, input="linear", method=m, dt=0.05, all_states=True
                    )[0],
                    (params.clone().requires_grad_(),),
                )
            )
        return cases


# --------------------------------------------------------------------------------------------
# the removable singularities of alpha_m (u = 25) and alpha_n (u = 10)


def _rates_exact(V: float) -> tuple[float, ...]:
    u = V + 75.0

    def f(x: float) -> float:
        return 1.0 if x == 0 else x / math.expm1(x)

    return (
        f((25 - u) / 10),
        4 * math.exp(-u / 18),
        0.07 * math.exp(-u / 20),
        1 / (math.exp((30 - u) / 10) + 1),
        0.1 * f((10 - u) / 10),
        0.125 * math.exp(-u / 80),
    )


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_singular_voltages_are_finite_and_exact(backend, dtype, monkeypatch):
    """One Rush-Larsen step from V = -50 mV (u = 25) and V = -65 mV (u = 10): the gates move
    with alpha_m = 1 and alpha_n = 0.1 exactly, the limits of 0.1(25-u)/(e^((25-u)/10)-1) and
    0.01(10-u)/(e^((10-u)/10)-1)."""
    if backend == "compiled" and not has_kernel("hh_simulate", "cpu"):
        pytest.skip("dtwin._C has no cpu kernel for hh_simulate")
    monkeypatch.setenv("DTWIN_BACKEND", backend)
    h = 0.01
    Vs = (-50.0, -65.0)
    params = torch.tensor(DEFAULT_PARAMS, dtype=dtype).repeat(2, 1)
    y0 = torch.tensor([[V, 0.05, 0.595, 0.317] for V in Vs], dtype=dtype)
    pulses = torch.zeros(2, 0, 3, dtype=dtype)
    out, _, status = hh_simulate(
        torch.tensor([h], dtype=dtype), params, y0, pulses, method="rush_larsen", dt=h, all_states=True
    )
    assert status.tolist() == [0, 0]
    assert torch.isfinite(out).all()
    for i, V in enumerate(Vs):
        am, bm, ah, bh, an, bn = _rates_exact(V)
        m0, h0, n0 = 0.05, 0.595, 0.317
        expect_m = am / (am + bm) + (m0 - am / (am + bm)) * math.exp(-h * (am + bm))
        expect_n = an / (an + bn) + (n0 - an / (an + bn)) * math.exp(-h * (an + bn))
        expect_h = ah / (ah + bh) + (h0 - ah / (ah + bh)) * math.exp(-h * (ah + bh))
        tol = 1e-6 if dtype == torch.float32 else 1e-13
        assert abs(float(out[i, 1, 0]) - expect_m) < tol
        assert abs(float(out[i, 3, 0]) - expect_n) < tol
        assert abs(float(out[i, 2, 0]) - expect_h) < tol


def test_singular_voltages_sensitivities_are_finite():
    """The Jacobian passes through x / expm1(x) at x = 0 (derivative -1/2): finite, and equal in
    kernel and reference."""
    dtype = torch.float64
    params = torch.tensor(DEFAULT_PARAMS, dtype=dtype).repeat(2, 1)
    y0 = torch.tensor([[-50.0, 0.05, 0.595, 0.317], [-65.0, 0.05, 0.595, 0.317]], dtype=dtype)
    pulses = torch.tensor([[[0.0, 0.05, 5.0]], [[0.0, 0.05, 5.0]]], dtype=dtype)
    t = torch.tensor([0.01, 0.02], dtype=dtype)
    a = hh_simulate(t, params, y0, pulses, method="rk4", dt=0.01, sensitivities=True, all_states=True)
    b = hh_simulate_reference(
        t, params, y0, pulses, method="rk4", dt=0.01, sensitivities=True, all_states=True
    )
    assert torch.isfinite(a[1]).all()
    torch.testing.assert_close(a[1], b[1], rtol=1e-10, atol=1e-12)


def test_x_over_expm1_derivative_near_zero():
    x = torch.tensor(
        [-1.0, -0.5, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.49, 0.5, 2.0, 40.0, -40.0], dtype=torch.float64
    )
    f = _XOverExpm1.apply(x)
    d = _x_over_expm1_derivative(x, f)
    exact = torch.tensor(
        [
            (math.exp(v) - 1 - v * math.exp(v)) / math.expm1(v) ** 2
            if v != 0 and abs(v) > 1e-4
            else -0.5 + v / 6
            for v in x.tolist()
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(d, exact, rtol=1e-9, atol=1e-12)
    assert float(f[4]) == 1.0
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(_XOverExpm1.apply, (xg,))


# --------------------------------------------------------------------------------------------
# sensitivities


@requires_kernel("hh_simulate")
@pytest.mark.parametrize("method", ["rush_larsen", "rk4"])
def test_jacobian_matches_finite_differences_of_the_op(method):
    """The kernel's Jacobian is the derivative of the discrete solution, tin and tf included."""
    dtype = torch.float64
    t = torch.linspace(0.5, 6, 12, dtype=dtype)
    params = torch.tensor(DEFAULT_PARAMS, dtype=dtype).repeat(2, 1)
    y0 = torch.tensor(DEFAULT_Y0, dtype=dtype).repeat(2, 1)
    pulses = torch.tensor([[[1.03, 3.51, 9.0]], [[0.71, 4.17, 6.0]]], dtype=dtype)
    _, jac, _ = hh_simulate(t, params, y0, pulses, method=method, dt=0.05, sensitivities=True)
    assert jac.shape == (2, 12, 10)
    eps = 1e-6
    for q in range(10):
        dp, dpl = torch.zeros_like(params), torch.zeros_like(pulses)
        if q < 7:
            dp[:, q] = eps * max(1.0, abs(DEFAULT_PARAMS[q]))
            step = dp[0, q]
        else:
            dpl[:, 0, q - 7] = eps
            step = eps
        plus = hh_simulate(t, params + dp, y0, pulses + dpl, method=method, dt=0.05)[0]
        minus = hh_simulate(t, params - dp, y0, pulses - dpl, method=method, dt=0.05)[0]
        fd = (plus - minus) / (2 * step)
        torch.testing.assert_close(jac[..., q], fd, rtol=1e-4, atol=1e-5 * float(fd.abs().max()) + 1e-8)


def test_gradients_reach_parameters_through_simulate():
    from dtwin.sim import hh

    t = torch.linspace(0, 5, 20, dtype=torch.float64)
    p = hh.HHParameters().tensor().requires_grad_()
    pulses = torch.tensor([[1.0, 4.0, 8.0], [1.0, 3.0, 5.0]], dtype=torch.float64, requires_grad=True)
    V = hh.simulate(pulses, t, params=p, method="rk4")
    V.sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert pulses.grad is not None and pulses.grad.shape == (2, 3)


# --------------------------------------------------------------------------------------------
# failures and bad input


def _base_args(N=2, dtype=torch.float64):
    return dict(
        t_out=torch.linspace(0, 5, 11, dtype=dtype),
        params=torch.tensor(DEFAULT_PARAMS, dtype=dtype).repeat(N, 1),
        y0=torch.tensor(DEFAULT_Y0, dtype=dtype).repeat(N, 1),
        pulses=torch.tensor([[[1.0, 3.0, 5.0]]] * N, dtype=dtype),
    )


def _bad(**changes):
    args = _base_args()
    kwargs = {}
    for k, v in changes.items():
        (args if k in args or k in ("current", "t_current") else kwargs)[k] = v
    return args, kwargs


BAD_INPUTS = {
    "N mismatch": (_bad(y0=torch.zeros(3, 4, dtype=torch.float64)), "y0"),
    "pulses N mismatch": (_bad(pulses=torch.zeros(3, 1, 3, dtype=torch.float64)), "pulses"),
    "params shape": (_bad(params=torch.zeros(2, 6, dtype=torch.float64)), "params"),
    "t_out decreasing": (_bad(t_out=torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)), "t_out"),
    "t_out repeated": (_bad(t_out=torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)), "t_out"),
    "t_out negative": (_bad(t_out=torch.tensor([-1.0, 1.0], dtype=torch.float64)), "t_out"),
    "dt zero": (_bad(dt=0.0), "dt"),
    "dt negative": (_bad(dt=-0.1), "dt"),
    "non-finite params": (
        _bad(params=torch.tensor([[float("nan"), 36, 0.3, 40, -87, -64.4, 1.0]] * 2, dtype=torch.float64)),
        "params",
    ),
    "non-finite pulses": (
        _bad(pulses=torch.tensor([[[1.0, float("inf"), 5.0]]] * 2, dtype=torch.float64)),
        "pulses",
    ),
    "tin after tf": (_bad(pulses=torch.tensor([[[3.0, 1.0, 5.0]]] * 2, dtype=torch.float64)), "pulses"),
    "overlapping pulses": (
        _bad(pulses=torch.tensor([[[1.0, 3.0, 5.0], [2.0, 4.0, 1.0]]] * 2, dtype=torch.float64)),
        "pulses",
    ),
    "dtype mix": (_bad(y0=torch.tensor([DEFAULT_Y0] * 2, dtype=torch.float32)), "y0"),
    "unknown method": (_bad(method="euler"), "method"),
    "sensitivities adaptive": (_bad(method="dopri5", sensitivities=True), "sensitivities"),
    "outputs past the current": (
        _bad(
            pulses=None,
            input="previous",
            current=torch.ones(2, 3, dtype=torch.float64),
            t_current=torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64),
        ),
        "t_out",
    ),
    "current non-finite": (
        _bad(
            pulses=None,
            input="linear",
            current=torch.tensor([[1.0, float("nan"), 1.0]] * 2, dtype=torch.float64),
            t_current=torch.tensor([0.0, 3.0, 6.0], dtype=torch.float64),
        ),
        "current",
    ),
    "current shape": (
        _bad(
            pulses=None,
            input="linear",
            current=torch.ones(2, 4, dtype=torch.float64),
            t_current=torch.tensor([0.0, 3.0, 6.0], dtype=torch.float64),
        ),
        "current",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_argument(case):
    (args, kwargs), name = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=name):
        hh_simulate(**args, **kwargs)


def test_gradient_to_y0_is_refused():
    args = _base_args()
    args["y0"] = args["y0"].clone().requires_grad_()
    with pytest.raises(ValueError, match="y0"):
        hh_simulate(**args)


@requires_kernel("hh_simulate")
def test_direct_op_call_checks_its_arguments():
    a = _base_args()
    with pytest.raises(RuntimeError, match="dt must be positive"):
        torch.ops.dtwin.hh_simulate(
            a["t_out"],
            a["params"],
            a["y0"],
            a["pulses"],
            None,
            None,
            "pulses",
            "rk4",
            0.0,
            1e-6,
            1e-6,
            10,
            False,
            False,
        )
    with pytest.raises(RuntimeError, match="y0 must be"):
        torch.ops.dtwin.hh_simulate(
            a["t_out"],
            a["params"],
            a["y0"][:1],
            a["pulses"],
            None,
            None,
            "pulses",
            "rk4",
            0.1,
            1e-6,
            1e-6,
            10,
            False,
            False,
        )


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_non_finite_state_is_reported_per_neuron(backend, monkeypatch):
    """Rush-Larsen at dt = 0.5 ms blows up for strongly driven neurons: their status says so,
    their unreached outputs are NaN, the quiet neuron is untouched."""
    if backend == "compiled" and not has_kernel("hh_simulate", "cpu"):
        pytest.skip("dtwin._C has no cpu kernel for hh_simulate")
    monkeypatch.setenv("DTWIN_BACKEND", backend)
    dtype = torch.float64
    t = torch.linspace(0, 20, 41, dtype=dtype)
    params = torch.tensor(DEFAULT_PARAMS, dtype=dtype).repeat(3, 1)
    y0 = torch.tensor(DEFAULT_Y0, dtype=dtype).repeat(3, 1)
    pulses = torch.tensor([[[1.0, 20.0, 10.0]], [[1.0, 20.0, 0.0]], [[1.0, 20.0, 9.0]]], dtype=dtype)
    out, _, status = hh_simulate(t, params, y0, pulses, method="rush_larsen", dt=0.5)
    assert status.tolist() == [1, 0, 1]
    assert torch.isnan(out[0]).any() and torch.isnan(out[2]).any()
    assert torch.isfinite(out[1]).all()


def test_adaptive_failure_is_reported():
    args = _base_args()
    out, _, status = hh_simulate(**args, method="dopri5", rtol=1e-10, atol=1e-10, max_steps=5)
    assert status.tolist() == [2, 2]
    assert torch.isnan(out[:, -1]).all()
