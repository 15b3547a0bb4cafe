"""``dtwin.ops.hh_simulate``: N Hodgkin-Huxley neurons in one call.

The compiled kernels (csrc/cpu/hh.cpp, csrc/cuda/hh.cu) and :func:`hh_simulate_reference`
below implement the same schemes; the reference is the specification. Model, units and
schemes: csrc/include/dtwin/hh.h and :mod:`dtwin.sim.hh`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd import forward_ad as fwAD

from dtwin.ops import _library

METHODS = ("rush_larsen", "rk4", "dopri5")
FIXED_STEP_METHODS = ("rush_larsen", "rk4")
INPUTS = ("pulses", "previous", "linear")
PARAM_NAMES = ("gNa", "gK", "gL", "ENa", "EK", "EL", "C")
STATE_NAMES = ("V", "m", "h", "n")
#: Columns of the Jacobian: the parameters, then (single pulse only) tin, tf, amp.
DIRECTION_NAMES = (*PARAM_NAMES, "tin", "tf", "amp")
#: Status codes per neuron.
STATUS = {0: "ok", 1: "non-finite state", 2: "too many steps", 3: "step size underflow"}

__all__ = [
    "DIRECTION_NAMES",
    "METHODS",
    "PARAM_NAMES",
    "STATE_NAMES",
    "STATUS",
    "hh_simulate",
    "hh_simulate_reference",
]


# --------------------------------------------------------------------------------------------
# checks


def _fail(name: str, message: str) -> None:
    raise ValueError(f"hh_simulate: {name} {message}")


def _check_tensor(x: object, name: str, shape: str, ndim: int) -> Tensor:
    if not isinstance(x, Tensor):
        _fail(name, f"must be a Tensor{shape}, got {type(x).__name__}")
    if x.dim() != ndim:
        _fail(name, f"must be a Tensor{shape}, got shape {tuple(x.shape)}")
    return x


def _check_finite(x: Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[:5].tolist()
        _fail(name, f"must be finite; non-finite entries at {bad}")


def _check_increasing(x: Tensor, name: str) -> None:
    if x.numel() > 1 and not bool((x[1:] > x[:-1]).all()):
        i = int((x[1:] <= x[:-1]).nonzero()[0, 0])
        _fail(name, f"must be strictly increasing; {name}[{i + 1}] = {float(x[i + 1])} <= {float(x[i])}")


def _check_inputs(
    t_out: Tensor,
    params: Tensor,
    y0: Tensor,
    pulses: Tensor | None,
    current: Tensor | None,
    t_current: Tensor | None,
    input: str,
    method: str,
    dt: float,
    rtol: float,
    atol: float,
    max_steps: int,
    sensitivities: bool,
) -> None:
    if method not in METHODS:
        _fail("method", f"must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if input not in INPUTS:
        _fail("input", f"must be one of {', '.join(map(repr, INPUTS))}, got {input!r}")
    params = _check_tensor(params, "params", "[N, 7] (gNa, gK, gL, ENa, EK, EL, C)", 2)
    if params.shape[1] != 7:
        _fail("params", f"must be [N, 7] (gNa, gK, gL, ENa, EK, EL, C), got shape {tuple(params.shape)}")
    if params.dtype not in (torch.float32, torch.float64):
        _fail("params", f"must be float32 or float64, got {params.dtype}")
    N = params.shape[0]

    def same(x: Tensor, name: str) -> None:
        if x.dtype != params.dtype:
            _fail(name, f"has dtype {x.dtype} but params has {params.dtype}; pass one floating dtype")
        if x.device != params.device:
            _fail(name, f"is on {x.device} but params is on {params.device}")

    y0 = _check_tensor(y0, "y0", "[N, 4] (V, m, h, n)", 2)
    if y0.shape != (N, 4):
        _fail("y0", f"must be [N, 4] (V, m, h, n) with N = {N} (from params), got {tuple(y0.shape)}")
    t_out = _check_tensor(t_out, "t_out", "[T] of output times in ms", 1)
    if t_out.shape[0] < 1:
        _fail("t_out", "must hold at least one output time")
    for x, name in ((y0, "y0"), (t_out, "t_out")):
        same(x, name)
    for x, name in ((params, "params"), (y0, "y0"), (t_out, "t_out")):
        _check_finite(x, name)
    if float(t_out[0]) < 0:
        _fail("t_out", f"must be >= 0 (the simulation starts at t = 0 ms), got t_out[0] = {float(t_out[0])}")
    _check_increasing(t_out, "t_out")
    if not (math.isfinite(dt) and dt > 0):
        _fail("dt", f"must be a positive finite step in ms, got {dt}")
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        _fail("rtol/atol", f"must be >= 0 and not both 0, got rtol={rtol}, atol={atol}")
    if max_steps < 1:
        _fail("max_steps", f"must be >= 1, got {max_steps}")
    if input == "pulses":
        if pulses is None:
            _fail("pulses", "is required with input='pulses': a Tensor[N, K, 3] of (tin, tf, amp)")
        pulses = _check_tensor(pulses, "pulses", "[N, K, 3] of (tin, tf, amp)", 3)
        if pulses.shape[0] != N or pulses.shape[2] != 3:
            _fail(
                "pulses",
                f"must be [N, K, 3] (tin, tf, amp) with N = {N} (from params), got {tuple(pulses.shape)}",
            )
        same(pulses, "pulses")
        _check_finite(pulses, "pulses")
        edges = pulses[..., :2].reshape(N, -1)
        if edges.shape[1] > 1 and not bool((edges[:, 1:] >= edges[:, :-1]).all()):
            n, k = (edges[:, 1:] < edges[:, :-1]).nonzero()[0].tolist()
            _fail(
                "pulses",
                f"must have tin <= tf, sorted and non-overlapping pulses in each row; row {n} breaks it at "
                f"pulse {(k + 1) // 2} (edges {edges[n].tolist()})",
            )
    else:
        if current is None or t_current is None:
            _fail(
                "current",
                f"and t_current are required with input={input!r}: Tensor[N, T_in] and Tensor[T_in]",
            )
        t_current = _check_tensor(t_current, "t_current", "[T_in] of sample times in ms", 1)
        current = _check_tensor(current, "current", "[N, T_in] in uA/cm^2", 2)
        if t_current.shape[0] < 2:
            _fail("t_current", f"must hold at least 2 sample times, got {t_current.shape[0]}")
        if current.shape != (N, t_current.shape[0]):
            _fail("current", f"must be [N, T_in] = [{N}, {t_current.shape[0]}], got {tuple(current.shape)}")
        for x, name in ((current, "current"), (t_current, "t_current")):
            same(x, name)
            _check_finite(x, name)
        _check_increasing(t_current, "t_current")
        if float(t_current[0]) > 0 or float(t_current[-1]) < float(t_out[-1]):
            _fail(
                "t_out",
                f"must lie inside the span sampled by t_current, "
                f"[{float(t_current[0])}, {float(t_current[-1])}] ms, which must start at or before 0 "
                f"and reach t_out[-1] = {float(t_out[-1])} ms",
            )
    if sensitivities and method not in FIXED_STEP_METHODS:
        _fail("sensitivities", f"are computed by the fixed-step methods {FIXED_STEP_METHODS}, not {method!r}")


def _n_directions(input: str, pulses: Tensor | None) -> int:
    return 10 if input == "pulses" and pulses is not None and pulses.shape[1] == 1 else 7


# --------------------------------------------------------------------------------------------
# the op


def hh_simulate(
    t_out: Tensor,
    params: Tensor,
    y0: Tensor,
    pulses: Tensor | None = None,
    current: Tensor | None = None,
    t_current: Tensor | None = None,
    *,
    input: str = "pulses",
    method: str = "rk4",
    dt: float = 0.05,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 1_000_000,
    all_states: bool = False,
    sensitivities: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Integrate N Hodgkin-Huxley neurons from t = 0 and sample them at ``t_out``.

    Args:
        t_out: Tensor[T], increasing output times (ms), ``t_out[0] >= 0``.
        params: Tensor[N, 7], per neuron (gNa, gK, gL in mS/cm^2; ENa, EK, EL in mV; C in uF/cm^2).
        y0: Tensor[N, 4], the state (V in mV, m, h, n) at t = 0.
        pulses: Tensor[N, K, 3] of (tin, tf, amp) in (ms, ms, uA/cm^2) for ``input='pulses'``:
            I(t) = amp on [tin, tf]; pulses of a row sorted and non-overlapping.
        current: Tensor[N, T_in], sampled current (uA/cm^2) for ``input='previous'`` (piecewise
            constant, right-continuous) or ``input='linear'`` (piecewise linear).
        t_current: Tensor[T_in], increasing sample times (ms) spanning [0, t_out[-1]].
        method: 'rush_larsen' (first order, fixed dt), 'rk4' (fixed dt) or 'dopri5' (adaptive,
            per-neuron step sizes, ``dt`` is the first trial step).
        dt: fixed-step methods: the largest step; each input segment is split into equal steps.
        rtol, atol: dopri5's tolerances (scipy's RK45 error norm).
        max_steps: dopri5's limit of step attempts per neuron.
        all_states: return all four states instead of V only.
        sensitivities: also return the Jacobian of the output with respect to the parameters (and
            tin, tf, amp of a single pulse): exact derivatives of the discrete solution. Fixed-step
            methods only. The compiled kernel also computes them when params or pulses require
            grad, since its backward is built from them; the reference differentiates by autograd.

    Returns:
        ``(out, jacobian, status)``: out Tensor[N, T] (or [N, 4, T]); jacobian out's shape + [P]
        with P = 10 (single pulse: params, tin, tf, amp) or 7 (params), or an empty tensor; status
        Tensor[N] int32 (:data:`STATUS`), where a failed neuron's unreached outputs are NaN.
    """
    _check_inputs(
        t_out, params, y0, pulses, current, t_current, input, method, dt, rtol, atol, max_steps, sensitivities
    )
    wants_grad = torch.is_grad_enabled() and (
        params.requires_grad or (pulses is not None and pulses.requires_grad)
    )
    for x, name in ((y0, "y0"), (t_out, "t_out"), (current, "current"), (t_current, "t_current")):
        if torch.is_grad_enabled() and x is not None and x.requires_grad:
            _fail(name, "requires grad, but gradients flow only to params and pulses; detach it")
    if wants_grad:
        if method not in FIXED_STEP_METHODS:
            _fail("method", f"{method!r} has no gradients; use one of {FIXED_STEP_METHODS} to differentiate")
        if pulses is not None and pulses.requires_grad and pulses.shape[1] != 1:
            _fail(
                "pulses",
                "requires grad, but gradients reach pulses only for a single pulse per neuron (K = 1)",
            )
    args = (t_out, params, y0, pulses, current, t_current)
    kwargs = dict(
        input=input,
        method=method,
        dt=float(dt),
        rtol=float(rtol),
        atol=float(atol),
        max_steps=int(max_steps),
        all_states=all_states,
    )
    if _library.use_compiled("hh_simulate", params.device):
        # the compiled op's backward is built from the sensitivities: compute them when needed
        return torch.ops.dtwin.hh_simulate(*args, **kwargs, sensitivities=sensitivities or wants_grad)
    return hh_simulate_reference(*args, **kwargs, sensitivities=sensitivities)


def _fake(
    t_out,
    params,
    y0,
    pulses,
    current,
    t_current,
    input,
    method,
    dt,
    rtol,
    atol,
    max_steps,
    all_states,
    sensitivities,
):
    N, T = params.shape[0], t_out.shape[0]
    out = params.new_empty((N, 4, T) if all_states else (N, T))
    if sensitivities:
        jac = params.new_empty((*out.shape, _n_directions(input, pulses)))
    else:
        jac = params.new_empty((0,))
    return out, jac, params.new_empty((N,), dtype=torch.int32)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.all_states = inputs[12]
    ctx.mark_non_differentiable(output[1], output[2])


def _backward(ctx, grad_out, _grad_jac, _grad_status):
    (jac,) = ctx.saved_tensors
    if jac.numel() == 0:
        raise RuntimeError(
            "hh_simulate: gradients need the sensitivities; call it with sensitivities=True "
            "(dtwin.ops.hh_simulate does so when params or pulses require grad)"
        )
    if torch.is_grad_enabled():
        raise RuntimeError("hh_simulate: second derivatives are not available (create_graph=True)")
    g = torch.einsum("nst,nstp->np" if ctx.all_states else "nt,ntp->np", grad_out, jac)
    grad_params = g[:, :7] if ctx.needs_input_grad[1] else None
    grad_pulses = g[:, None, 7:] if ctx.needs_input_grad[3] and g.shape[1] == 10 else None
    return (None, grad_params, None, grad_pulses) + (None,) * 10


_library.register("hh_simulate", fake=_fake, backward=_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# the reference: plain torch, all neurons in lockstep with masks. It is the specification of
# the kernels' arithmetic (same schemes, segments, controller and dense output).


class _XOverExpm1(torch.autograd.Function):
    """x / (exp(x) - 1) with its limit 1 at x = 0, differentiable there (forward and reverse)."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        zero = x == 0
        safe = torch.where(zero, torch.ones_like(x), x)
        return torch.where(zero, torch.ones_like(x), safe / torch.expm1(safe))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output)
        ctx.save_for_forward(inputs[0], output)

    @staticmethod
    def backward(ctx, grad):
        x, f = ctx.saved_tensors
        return grad * _x_over_expm1_derivative(x, f)

    @staticmethod
    def jvp(ctx, x_t):
        x, f = ctx.saved_tensors
        return x_t * _x_over_expm1_derivative(x, f)


def _x_over_expm1_derivative(x: Tensor, f: Tensor) -> Tensor:
    x2 = x * x
    series = -0.5 + x * (
        1.0 / 6.0
        + x2
        * (
            -1.0 / 180.0
            + x2
            * (
                1.0 / 5040.0
                + x2 * (-1.0 / 151200.0 + x2 * (1.0 / 4790016.0 + x2 * (-691.0 / 108972864000.0)))
            )
        )
    )
    small = x.abs() < 0.5
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, series, f * (1 - f - safe) / safe)


def _rates(V: Tensor) -> tuple[Tensor, ...]:
    u = V + 75.0
    am = _XOverExpm1.apply((25.0 - u) * 0.1)
    bm = 4.0 * torch.exp(u * (-1.0 / 18.0))
    ah = 0.07 * torch.exp(u * -0.05)
    bh = 1.0 / (torch.exp((30.0 - u) * 0.1) + 1.0)
    an = 0.1 * _XOverExpm1.apply((10.0 - u) * 0.1)
    bn = 0.125 * torch.exp(u * -0.0125)
    return am, bm, ah, bh, an, bn


def _membrane_derivative(p: Tensor, y: Tensor, I: Tensor) -> Tensor:
    V, m, h, n = y.unbind(1)
    gNa, gK, gL, ENa, EK, EL, C = p.unbind(1)
    n2 = n * n
    i_ion = gNa * (m * m * m * h) * (V - ENa) + gK * (n2 * n2) * (V - EK) + gL * (V - EL)
    return (I - i_ion) / C


def _rhs(p: Tensor, y: Tensor, I: Tensor) -> Tensor:
    am, bm, ah, bh, an, bn = _rates(y[:, 0])
    _, m, h, n = y.unbind(1)
    return torch.stack(
        (_membrane_derivative(p, y, I), am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n),
        1,
    )


def _rush_larsen_step(p: Tensor, y: Tensor, I: Tensor, h: Tensor) -> Tensor:
    am, bm, ah, bh, an, bn = _rates(y[:, 0])

    def gate(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        rate = a + b
        x_inf = a / rate
        return x_inf + (x - x_inf) * torch.exp(-(h * rate))

    _, m, hg, n = y.unbind(1)
    V1 = y[:, 0] + h * _membrane_derivative(p, y, I)
    return torch.stack((V1, gate(m, am, bm), gate(hg, ah, bh), gate(n, an, bn)), 1)


# Dormand-Prince 5(4): nodes, tableau, 5th-order weights, error weights, dense-output matrix.
_DP_C = (1 / 5, 3 / 10, 4 / 5, 8 / 9)
_DP_A = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
_DP_E = (-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40)
_DP_P = (
    (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
    (0.0, 0.0, 0.0, 0.0),
    (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
    (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
    (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
    (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
    (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
)


class _Segments:
    """Per-neuron input segments (see next_segment in csrc/include/dtwin/hh_driver.h)."""

    def __init__(
        self,
        input: str,
        pulses: Tensor | None,
        current: Tensor | None,
        t_current: Tensor | None,
        t_end: float,
        N: int,
        like: Tensor,
    ) -> None:
        self.input, self.t_end, self.like = input, t_end, like
        if input == "pulses":
            assert pulses is not None
            self.K = pulses.shape[1]
            self.edges = pulses[..., :2].reshape(N, 2 * self.K)
            self.amps = pulses[..., 2]
            return
        assert current is not None and t_current is not None
        self.c, self.tc = current, t_current.contiguous()
        T_in = t_current.shape[0]
        self.last = T_in - 1
        j = torch.arange(T_in, device=like.device)
        if input == "previous":
            change = torch.zeros_like(current, dtype=torch.bool)
            change[:, 1:] = current[:, 1:] != current[:, :-1]
        else:
            self.slopes = (current[:, 1:] - current[:, :-1]) / (t_current[1:] - t_current[:-1])
            change = torch.zeros_like(current, dtype=torch.bool)
            change[:, 1:-1] = self.slopes[:, 1:] != self.slopes[:, :-1]
        stop = change | (t_current >= t_end) | (j == self.last)
        big = torch.full_like(stop, T_in, dtype=torch.long)
        index = torch.where(stop, j.expand_as(stop), big)
        # next_stop[:, j]: the first stopping sample at or after j
        self.next_stop = torch.flip(torch.cummin(torch.flip(index, (1,)), 1).values, (1,))

    def open(self, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(b, I0, slope) of the segments that start at times a."""
        zero = torch.zeros_like(a)
        t_end = torch.full_like(a, self.t_end)
        a_val = a.detach()
        if self.input == "pulses":
            if self.K == 0:
                return t_end, zero, zero
            edges = self.edges
            cursor = (edges.detach() <= a_val[:, None]).sum(1)
            has_next = cursor < 2 * self.K
            e = edges.gather(1, cursor.clamp(max=2 * self.K - 1)[:, None])[:, 0]
            b = torch.where(has_next & (e.detach() < self.t_end), e, t_end)
            inside = has_next & (cursor % 2 == 1)
            amp = self.amps.gather(
                1, torch.div(cursor, 2, rounding_mode="floor").clamp(max=self.K - 1)[:, None]
            )[:, 0]
            return b, torch.where(inside, amp, zero), zero
        tc, c = self.tc, self.c
        k = (torch.searchsorted(tc.detach(), a_val, right=True) - 1).clamp(0, self.last - 1)
        k2 = self.next_stop.gather(1, (k + 1)[:, None])[:, 0]
        ck = c.gather(1, k[:, None])[:, 0]
        if self.input == "previous":
            I0, slope = ck, zero
        else:
            slope = self.slopes.gather(1, k[:, None])[:, 0]
            I0 = ck + slope * (a - tc[k])
        b = torch.minimum(tc[k2], t_end)
        past = ~(b.detach() > a_val)
        b = torch.where(past, t_end, b)
        I0 = torch.where(past, c[:, self.last], I0)
        slope = torch.where(past, zero, slope)
        return b, I0, slope


def _integrate_reference(
    t_out, params, y0, pulses, current, t_current, input, method, dt, rtol, atol, max_steps, all_states
):
    N, T = params.shape[0], t_out.shape[0]
    dtype, device = params.dtype, params.device
    t_end = float(t_out[-1])
    eps = torch.finfo(dtype).eps
    status = torch.zeros(N, dtype=torch.int32, device=device)
    rows, cols, vals = [], [], []  # output records, assembled out of place (autograd-friendly)

    def record(idx: Tensor, j: Tensor, y: Tensor) -> None:
        rows.append(idx)
        cols.append(j)
        vals.append(y)

    t_out_d = t_out.detach()
    n_initial = int((t_out_d <= 0).sum())
    everyone = torch.arange(N, device=device)
    for j in range(n_initial):
        record(everyone, torch.full((N,), j, device=device), y0)
    ptr = torch.full((N,), n_initial, dtype=torch.long, device=device)
    active = torch.full((N,), n_initial < T, dtype=torch.bool, device=device)
    y = y0
    t = torch.zeros(N, dtype=dtype, device=device)
    segments = _Segments(input, pulses, current, t_current, t_end, N, t)
    a = t
    b, I0, slope = segments.open(a)

    def current_at(time: Tensor) -> Tensor:
        return I0 + slope * (time - a)

    def next_output_time() -> Tensor:
        return t_out_d[ptr.clamp(max=T - 1)]

    def write_outputs(t_new: Tensor, can_write: Tensor, dense) -> None:
        nonlocal ptr
        pending = can_write & (ptr < T) & (next_output_time() <= t_new.detach())
        while bool(pending.any()):
            idx = pending.nonzero()[:, 0]
            j = ptr[idx]
            record(idx, j, dense(idx, t_out[j]))
            ptr = ptr + pending.long()
            pending = can_write & (ptr < T) & (next_output_time() <= t_new.detach())

    if method in FIXED_STEP_METHODS:
        n_sub = torch.ceil((b - a).detach() / dt).clamp(min=1)
        k_sub = torch.zeros_like(n_sub)
        h = (b - a) / n_sub
        f = _rhs(params, y, current_at(t)) if method == "rk4" else None
        while bool(active.any()):
            h_eff = torch.where(active, h, torch.zeros_like(h))
            if method == "rush_larsen":
                y1 = _rush_larsen_step(params, y, current_at(t), h_eff)
                f1 = None
            else:
                half = h_eff * 0.5
                k2 = _rhs(params, y + half[:, None] * f, current_at(t + half))
                k3 = _rhs(params, y + half[:, None] * k2, current_at(t + half))
                k4 = _rhs(params, y + h_eff[:, None] * k3, current_at(t + h_eff))
                w, w2 = (h_eff * (1 / 6))[:, None], (h_eff * (1 / 3))[:, None]
                y1 = y + w * f + w2 * k2 + w2 * k3 + w * k4
            k1 = k_sub + 1
            last = k1 >= n_sub
            t1 = torch.where(active, torch.where(last, b, a + k1 * h), t)
            if method == "rk4":
                f1 = _rhs(params, y1, current_at(t1))
            failed = active & ~torch.isfinite(y1.detach()).all(1)
            status = torch.where(failed, torch.ones_like(status), status)
            active = active & ~failed
            y_prev, f_prev, t_prev = y, f, t

            def dense(idx, time, y_prev=y_prev, f_prev=f_prev, y1=y1, f1=f1, t_prev=t_prev, h=h):
                hh_ = h[idx][:, None]
                th = ((time - t_prev[idx]) / h[idx])[:, None]
                if method == "rush_larsen":
                    return y_prev[idx] + th * (y1[idx] - y_prev[idx])
                th2, th3 = th * th, th * th * th
                return (
                    (2 * th3 - 3 * th2 + 1) * y_prev[idx]
                    + (3 * th2 - 2 * th3) * y1[idx]
                    + hh_ * ((th3 - 2 * th2 + th) * f_prev[idx] + (th3 - th2) * f1[idx])
                )

            write_outputs(t1, active, dense)
            y = torch.where(active[:, None], y1, y)
            t = t1
            if f1 is not None:
                f = torch.where(active[:, None], f1, f)
            k_sub = torch.where(active, k1, k_sub)
            seg_end = active & last
            done = seg_end & (b.detach() >= t_end)
            active = active & ~done
            cont = seg_end & ~done
            if bool(cont.any()):
                nb, nI0, nslope = segments.open(t)
                a = torch.where(cont, t, a)
                b, I0, slope = (
                    torch.where(cont, new, old) for new, old in ((nb, b), (nI0, I0), (nslope, slope))
                )
                n_sub = torch.where(cont, torch.ceil((b - a).detach() / dt).clamp(min=1), n_sub)
                k_sub = torch.where(cont, torch.zeros_like(k_sub), k_sub)
                h = torch.where(cont, (b - a) / n_sub, h)
                if method == "rk4":
                    f = torch.where(cont[:, None], _rhs(params, y, current_at(t)), f)
    else:
        f = _rhs(params, y, current_at(t))
        h_prop = torch.full_like(t, dt)
        t_c = torch.zeros_like(t)
        rejected = torch.zeros_like(active)
        steps = torch.zeros(N, dtype=torch.long, device=device)
        while bool(active.any()):
            room = b - t
            clipped = active & (h_prop >= room)
            h = torch.where(active, torch.minimum(h_prop, room), torch.zeros_like(t))
            ks = [f]
            for c_i, a_row in zip((*_DP_C, 1.0), _DP_A, strict=True):
                y_stage = y
                for coef, k in zip(a_row, ks, strict=False):
                    y_stage = y_stage + (h * coef)[:, None] * k
                ks.append(_rhs(params, y_stage, current_at(t + h * c_i)))
            y1 = y
            for coef, k in zip(_DP_B, ks, strict=True):
                if coef != 0.0:
                    y1 = y1 + (h * coef)[:, None] * k
            t_next = t + h
            ks.append(_rhs(params, y1, current_at(t_next)))
            err_vec = h[:, None] * sum(coef * k for coef, k in zip(_DP_E, ks, strict=True) if coef != 0.0)
            scale = atol + rtol * torch.maximum(y.abs(), y1.abs())
            err = torch.sqrt(((err_vec / scale) ** 2).sum(1) * 0.25)
            trial_finite = torch.isfinite(y1).all(1) & torch.isfinite(err)
            accept = active & trial_finite & (err <= 1)
            scaled = 0.9 * err.clamp(min=1e-30) ** -0.2
            ten, one, fifth = torch.full_like(err, 10.0), torch.ones_like(err), torch.full_like(err, 0.2)
            grow = torch.where(err == 0, ten, torch.minimum(ten, scaled))
            grow = torch.where(rejected, torch.minimum(grow, one), grow)
            shrink = torch.where(trial_finite, torch.maximum(fifth, torch.minimum(scaled, one)), fifth)
            h_new = torch.where(accept, h * grow, h * shrink)
            h_new = torch.where(accept & clipped, torch.maximum(h_new, h_prop), h_new)
            h_prop = torch.where(active, h_new, h_prop)
            yk = h - t_c
            s = t + yk
            comp = (s - t) - yk
            t_acc = torch.where(clipped, b, s)
            c_acc = torch.where(clipped, torch.zeros_like(comp), comp)
            y_prev, t_prev = y, t
            y = torch.where(accept[:, None], y1, y)
            f = torch.where(accept[:, None], ks[-1], f)
            t = torch.where(accept, t_acc, t)
            t_c = torch.where(accept, c_acc, t_c)
            rejected = torch.where(active, ~accept, rejected)
            steps = steps + active.long()

            def dense(idx, time, y_prev=y_prev, t_prev=t_prev, h=h, ks=ks):
                th = ((time - t_prev[idx]) / h[idx])[:, None]
                q = 0
                for k, row in zip(ks, _DP_P, strict=True):
                    if any(row):
                        q = q + k[idx] * (th * (row[0] + th * (row[1] + th * (row[2] + th * row[3]))))
                return y_prev[idx] + h[idx][:, None] * q

            write_outputs(t, accept, dense)
            seg_end = accept & clipped
            done = seg_end & (b >= t_end)
            active = active & ~done
            cont = seg_end & ~done
            if bool(cont.any()):
                nb, nI0, nslope = segments.open(t)
                a = torch.where(cont, t, a)
                b, I0, slope = (
                    torch.where(cont, new, old) for new, old in ((nb, b), (nI0, I0), (nslope, slope))
                )
                f = torch.where(cont[:, None], _rhs(params, y, current_at(t)), f)
            too_many = active & (steps >= max_steps)
            h_min = 4 * eps * torch.clamp(t.abs(), min=1.0)
            underflow = active & ~too_many & ~accept & (h_prop < h_min)
            status = torch.where(too_many, torch.full_like(status, 2), status)
            status = torch.where(underflow & trial_finite, torch.full_like(status, 3), status)
            status = torch.where(underflow & ~trial_finite, torch.full_like(status, 1), status)
            active = active & ~too_many & ~underflow

    base = torch.full((N, T, 4), float("nan"), dtype=dtype, device=device)
    if rows:
        out = torch.index_put(base, (torch.cat(rows), torch.cat(cols)), torch.cat(vals))
    else:
        out = base
    out = out.permute(0, 2, 1) if all_states else out[..., 0]
    return out, status


def hh_simulate_reference(
    t_out: Tensor,
    params: Tensor,
    y0: Tensor,
    pulses: Tensor | None = None,
    current: Tensor | None = None,
    t_current: Tensor | None = None,
    *,
    input: str = "pulses",
    method: str = "rk4",
    dt: float = 0.05,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 1_000_000,
    all_states: bool = False,
    sensitivities: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-torch :func:`hh_simulate`: same arguments, same results up to rounding.

    Gradients flow through it by ordinary autograd; its Jacobian (``sensitivities=True``) comes
    from forward-mode AD, one pass per direction.
    """
    args = (
        t_out,
        params,
        y0,
        pulses,
        current,
        t_current,
        input,
        method,
        dt,
        rtol,
        atol,
        max_steps,
        all_states,
    )
    out, status = _integrate_reference(*args)
    if not sensitivities:
        return out, params.new_empty((0,)), status
    P = _n_directions(input, pulses)
    columns = []
    for q in range(P):
        with fwAD.dual_level():
            p_t = torch.zeros_like(params)
            pulses_in = pulses
            if q < 7:
                p_t[:, q] = 1
            else:
                pulses_t = torch.zeros_like(pulses)
                pulses_t[:, 0, q - 7] = 1
                pulses_in = fwAD.make_dual(pulses.detach(), pulses_t)
            dual_out, _ = _integrate_reference(
                t_out.detach(),
                fwAD.make_dual(params.detach(), p_t),
                y0.detach(),
                pulses_in if q >= 7 else (None if pulses is None else pulses.detach()),
                None if current is None else current.detach(),
                None if t_current is None else t_current.detach(),
                input,
                method,
                dt,
                rtol,
                atol,
                max_steps,
                all_states,
            )
            tangent = fwAD.unpack_dual(dual_out).tangent
            columns.append(torch.zeros_like(out) if tangent is None else tangent)
    jac = torch.stack(columns, -1)
    jac = torch.where(torch.isnan(out.detach())[..., None], torch.full_like(jac, float("nan")), jac)
    return out, jac, status
