"""The Hodgkin-Huxley twin: a batched simulator of the squid-axon neuron and its input families.

Model and data set: Centofanti, Ghiotto, Pavarino, "Learning the Hodgkin-Huxley Model with
Operator Learning Techniques", arXiv 2406.02173 (2024), rest at -75 mV. Units: t in ms, V in mV,
conductances in mS/cm^2, C in uF/cm^2, currents in uA/cm^2.

>>> import torch
>>> from dtwin.sim import hh
>>> pulses = torch.tensor([[1.0, 50.0, 7.0]])           # (tin, tf, amp): 7 uA/cm^2 on [1, 50] ms
>>> V = hh.simulate(pulses, torch.linspace(0, 100, 500))  # Tensor[1, 500] in mV
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import torch
from torch import Tensor

from dtwin.errors import SimulationError
from dtwin.estimation import with_jacobian
from dtwin.ops.hh import DIRECTION_NAMES, METHODS, PARAM_NAMES, STATE_NAMES, STATUS, hh_simulate

__all__ = [
    "CONDUCTANCES",
    "CONDUCTANCE_PRIOR_HIGH",
    "CONDUCTANCE_PRIOR_LOW",
    "DEFAULT_METHOD",
    "DIRECTION_NAMES",
    "OOD_CONDUCTANCES",
    "PARAM_NAMES",
    "STATE_NAMES",
    "HHParameters",
    "HodgkinHuxley",
    "conductance_prior_box",
    "estimation_times",
    "protocol_current",
    "pulse_trains",
    "reference_solution",
    "sample_conductances",
    "simulate",
    "simulate_conductances",
    "single_pulses",
    "smooth_waveforms",
    "voltage_features",
]


@dataclass(frozen=True)
class HHParameters:
    """Parameters of one neuron (SPECS.md section 1)."""

    gNa: float = 120.0  #: sodium conductance, mS/cm^2
    gK: float = 36.0  #: potassium conductance, mS/cm^2
    gL: float = 0.3  #: leak conductance, mS/cm^2
    ENa: float = 40.0  #: sodium reversal potential, mV
    EK: float = -87.0  #: potassium reversal potential, mV
    EL: float = -64.387  #: leak reversal potential, mV
    C: float = 1.0  #: membrane capacitance, uF/cm^2

    def tensor(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """Tensor[7] in the order of :data:`PARAM_NAMES`."""
        return torch.tensor(astuple(self), dtype=dtype, device=device)


#: Initial state (V in mV, m, h, n): rest at -75 mV.
DEFAULT_Y0 = (-75.0, 0.05, 0.595, 0.317)

#: The default scheme: the cheapest setting measured to reach <= 1e-4 mean relative L2 error
#: against a tight reference on the paper's pulse family (bench/test_hh.py prints the table).
DEFAULT_METHOD = {"method": "dopri5", "dt": 0.01, "rtol": 1e-5, "atol": 1e-5}
_FIXED_STEP_DT = {"rush_larsen": 0.01, "rk4": 0.05}


def _as_tensor(x: object, name: str, dtype: torch.dtype, device: torch.device | None) -> Tensor:
    if isinstance(x, Tensor):
        return (
            x.to(dtype=dtype, device=device) if (x.dtype != dtype or (device and x.device != device)) else x
        )
    try:
        return torch.as_tensor(x, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"simulate: {name} must be a Tensor or a nested sequence of numbers, got {type(x).__name__}"
        ) from exc


def simulate(
    pulses: Tensor | None,
    t_out: Tensor,
    *,
    params: Tensor | HHParameters | None = None,
    y0: Tensor | None = None,
    current: Tensor | None = None,
    t_current: Tensor | None = None,
    interpolation: str = "previous",
    method: str = "default",
    dt: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 1_000_000,
    states: str = "V",
    jacobian: bool = False,
    on_failure: str = "raise",
) -> Tensor | tuple[Tensor, Tensor]:
    """Simulate N neurons and return V (mV) at the output times.

    Args:
        pulses: Tensor[N, 3] or Tensor[N, K, 3] of (tin, tf, amp): rectangular current pulses
            I(t) = amp (uA/cm^2) on [tin, tf] (ms), evaluated inside the kernel. Pulses of a row must
            be sorted and non-overlapping. None when ``current`` is given.
        t_out: Tensor[T] of increasing output times in ms, from 0 on.
        params: Tensor[N, 7] or Tensor[7] (gNa, gK, gL, ENa, EK, EL, C), or an :class:`HHParameters`;
            default :class:`HHParameters()`.
        y0: Tensor[N, 4] or Tensor[4], the state (V, m, h, n) at t = 0; default :data:`DEFAULT_Y0`.
        current: Tensor[N, T_in], a sampled current instead of pulses, on the grid ``t_current``.
        t_current: Tensor[T_in], increasing sample times covering [0, t_out[-1]].
        interpolation: how ``current`` is read between samples: 'previous' (piecewise constant)
            or 'linear'.
        method: 'default' (:data:`DEFAULT_METHOD`), 'rush_larsen', 'rk4' or 'dopri5'.
        dt: fixed-step methods: the largest step in ms (defaults 0.01 for rush_larsen, 0.05 for
            rk4); dopri5: the first trial step.
        rtol, atol: dopri5's tolerances (defaults 1e-6).
        max_steps: dopri5's limit of step attempts per neuron.
        states: 'V' returns Tensor[N, T]; 'all' returns Tensor[N, 4, T] (V, m, h, n).
        jacobian: also return d(output)/d(directions), Tensor[..., P]: P = 10 for a single pulse
            per neuron (:data:`DIRECTION_NAMES`: the parameters, tin, tf, amp), else 7.
            Fixed-step methods only; with method='default' the rk4 scheme is used.
        on_failure: 'raise' raises :class:`dtwin.errors.SimulationError` naming the neurons whose
            state became non-finite (or whose adaptive stepping failed); 'nan' returns NaN for
            their unreached outputs instead.

    Gradients reach ``params`` and ``pulses`` through exact forward sensitivities of the
    fixed-step schemes (use method='rk4' to differentiate).

    Returns:
        Tensor[N, T] (or [N, 4, T]); with ``jacobian=True`` a pair (output, jacobian).
    """
    if states not in ("V", "all"):
        raise ValueError(f"simulate: states must be 'V' or 'all', got {states!r}")
    if on_failure not in ("raise", "nan"):
        raise ValueError(f"simulate: on_failure must be 'raise' or 'nan', got {on_failure!r}")
    if method != "default" and method not in METHODS:
        raise ValueError(f"simulate: method must be 'default' or one of {', '.join(METHODS)}, got {method!r}")
    if interpolation not in ("previous", "linear"):
        raise ValueError(f"simulate: interpolation must be 'previous' or 'linear', got {interpolation!r}")
    if (pulses is None) == (current is None):
        raise ValueError(
            "simulate: give exactly one input: pulses Tensor[N, 3] or current Tensor[N, T_in] "
            "(with t_current)"
        )

    reference = pulses if pulses is not None else current
    dtype = (
        reference.dtype if isinstance(reference, Tensor) and reference.is_floating_point() else torch.float64
    )
    if isinstance(params, Tensor) and params.is_floating_point():
        dtype = params.dtype
    device = reference.device if isinstance(reference, Tensor) else None
    if pulses is not None:
        pulses = _as_tensor(pulses, "pulses", dtype, device)
        if pulses.dim() == 2:
            pulses = pulses.unsqueeze(1)
        if pulses.dim() != 3 or pulses.shape[-1] != 3:
            raise ValueError(
                f"simulate: pulses must be [N, 3] or [N, K, 3] of (tin, tf, amp), got {tuple(pulses.shape)}"
            )
        N = pulses.shape[0]
    else:
        current = _as_tensor(current, "current", dtype, device)
        if current.dim() != 2:
            raise ValueError(f"simulate: current must be [N, T_in], got {tuple(current.shape)}")
        if t_current is None:
            raise ValueError("simulate: t_current Tensor[T_in] is required with current")
        t_current = _as_tensor(t_current, "t_current", dtype, device)
        N = current.shape[0]
    t_out = _as_tensor(t_out, "t_out", dtype, device)

    if params is None:
        params = HHParameters()
    if isinstance(params, HHParameters):
        params = params.tensor(dtype, device)
    params = _as_tensor(params, "params", dtype, device)
    if params.dim() == 1:
        params = params.expand(N, -1)  # differentiable: gradients sum over neurons
    elif params.dim() == 2 and params.shape[0] != N:
        raise ValueError(
            f"simulate: params must be [7] or [N, 7] with N = {N} (from the input), got {tuple(params.shape)}"
        )
    y0 = _as_tensor(DEFAULT_Y0 if y0 is None else y0, "y0", dtype, device)
    if y0.dim() == 1:
        y0 = y0.expand(N, -1)
    elif y0.dim() == 2 and y0.shape[0] != N:
        raise ValueError(
            f"simulate: y0 must be [4] or [N, 4] with N = {N} (from the input), got {tuple(y0.shape)}"
        )

    settings = dict(DEFAULT_METHOD) if method == "default" else {"method": method}
    if jacobian and settings["method"] == "dopri5":
        if method == "dopri5":
            raise ValueError(
                "simulate: jacobian=True needs a fixed-step method ('rk4' or 'rush_larsen'), not 'dopri5'"
            )
        settings = {"method": "rk4"}
    wants_grad = torch.is_grad_enabled() and (
        params.requires_grad or (pulses is not None and pulses.requires_grad)
    )
    if wants_grad and settings["method"] == "dopri5" and method == "default":
        settings = {"method": "rk4"}
    settings.setdefault("dt", _FIXED_STEP_DT.get(settings["method"], 0.01))
    settings.setdefault("rtol", 1e-6)
    settings.setdefault("atol", 1e-6)
    for key, value in (("dt", dt), ("rtol", rtol), ("atol", atol)):
        if value is not None:
            settings[key] = value

    out, jac, status = hh_simulate(
        t_out,
        params,
        y0,
        pulses,
        current,
        t_current,
        input="pulses" if pulses is not None else interpolation,
        max_steps=max_steps,
        all_states=states == "all",
        sensitivities=jacobian,
        **settings,
    )
    if on_failure == "raise":
        failed = status.nonzero()[:, 0]
        if failed.numel():
            idx = failed.tolist()
            codes = status[failed].tolist()
            reasons = sorted({STATUS.get(c, str(c)) for c in codes})
            shown = ", ".join(map(str, idx[:20])) + (" ..." if len(idx) > 20 else "")
            raise SimulationError(
                f"simulate: {len(idx)} of {N} neurons failed ({'; '.join(reasons)}) with method "
                f"{settings['method']!r}: indices [{shown}]. A smaller dt (or tighter rtol) or a stable "
                "scheme "
                "usually helps; on_failure='nan' returns NaN for them instead.",
                idx,
                codes,
            )
    return (out, jac) if jacobian else out


class HodgkinHuxley:
    """The HH twin with fixed parameters: a thin object around :func:`simulate`.

    Args:
        params: an :class:`HHParameters` (default: the paper's squid axon at rest -75 mV).
        y0: initial state (V in mV, m, h, n), default :data:`DEFAULT_Y0`.
        method: simulation scheme, see :func:`simulate`.
    """

    def __init__(
        self,
        params: HHParameters | None = None,
        y0: tuple[float, float, float, float] = DEFAULT_Y0,
        method: str = "default",
    ) -> None:
        self.params = params or HHParameters()
        self.y0 = y0
        self.method = method

    def __repr__(self) -> str:
        return f"HodgkinHuxley({self.params}, y0={self.y0}, method={self.method!r})"

    def simulate(self, pulses: Tensor | None, t_out: Tensor, **options) -> Tensor:
        """:func:`simulate` with this twin's parameters, initial state and method."""
        options.setdefault("params", self.params)
        options.setdefault("y0", torch.tensor(self.y0))
        options.setdefault("method", self.method)
        return simulate(pulses, t_out, **options)


# --------------------------------------------------------------------------------------------
# input families


def single_pulses(
    n: int,
    generator: torch.Generator | None = None,
    *,
    tin: float = 1.0,
    tf_range: tuple[float, float] = (1.2, 99.9),
    amp_range: tuple[float, float] = (0.0, 10.0),
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The paper's inputs: Tensor[n, 3] of (tin, tf ~ U(tf_range), amp ~ U(amp_range))."""
    if n < 0:
        raise ValueError(f"single_pulses: n must be >= 0, got {n}")
    if not tf_range[0] <= tf_range[1] or not amp_range[0] <= amp_range[1]:
        raise ValueError(
            f"single_pulses: ranges must be (low, high) with low <= high, got {tf_range}, {amp_range}"
        )
    if tf_range[0] < tin:
        raise ValueError(f"single_pulses: tf_range must start at or after tin = {tin}, got {tf_range}")
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    tf = tf_range[0] + (tf_range[1] - tf_range[0]) * u[:, 0]
    amp = amp_range[0] + (amp_range[1] - amp_range[0]) * u[:, 1]
    return torch.stack((torch.full_like(tf, tin), tf, amp), 1).to(dtype)


def pulse_trains(
    n: int,
    n_pulses: int,
    generator: torch.Generator | None = None,
    *,
    t_end: float = 100.0,
    width_range: tuple[float, float] = (1.0, 10.0),
    amp_range: tuple[float, float] = (0.0, 10.0),
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Random trains: Tensor[n, n_pulses, 3], each row sorted and non-overlapping in [0, t_end].

    The horizon is cut into n_pulses equal slots; each slot holds one pulse of random width
    (within the slot) at a random offset, with a random amplitude.
    """
    if n_pulses < 1:
        raise ValueError(f"pulse_trains: n_pulses must be >= 1, got {n_pulses}")
    slot = t_end / n_pulses
    if width_range[1] > slot:
        raise ValueError(
            f"pulse_trains: widths up to {width_range[1]} ms do not fit {n_pulses} slots of {slot:.3g} ms"
        )
    u = torch.rand(n, n_pulses, 3, generator=generator, dtype=torch.float64)
    width = width_range[0] + (width_range[1] - width_range[0]) * u[..., 0]
    start = torch.arange(n_pulses, dtype=torch.float64) * slot + (slot - width) * u[..., 1]
    amp = amp_range[0] + (amp_range[1] - amp_range[0]) * u[..., 2]
    return torch.stack((start, start + width, amp), -1).to(dtype)


def smooth_waveforms(
    n: int,
    t_grid: Tensor,
    generator: torch.Generator | None = None,
    *,
    n_modes: int = 8,
    period: float | None = None,
    mean: float = 5.0,
    std: float = 3.0,
) -> Tensor:
    """Smooth random currents: Tensor[n, len(t_grid)], random Fourier series (uA/cm^2).

    I(t) = mean + std * sum_k a_k cos(2 pi k t / period) + b_k sin(...) / sqrt(n_modes), with
    a_k, b_k ~ N(0, 1/k): smooth, with most power at low frequencies. Read it with
    interpolation='linear'.
    """
    if n_modes < 1:
        raise ValueError(f"smooth_waveforms: n_modes must be >= 1, got {n_modes}")
    t = t_grid.to(torch.float64)
    period = float(t[-1] - t[0]) if period is None else period
    k = torch.arange(1, n_modes + 1, dtype=torch.float64)
    coef = torch.randn(n, 2, n_modes, generator=generator, dtype=torch.float64) / k.sqrt()
    phase = 2 * math.pi * k[:, None] * t[None, :] / period
    series = coef[:, 0] @ torch.cos(phase) + coef[:, 1] @ torch.sin(phase)
    return (mean + std * series / math.sqrt(n_modes)).to(t_grid.dtype)


# --------------------------------------------------------------------------------------------
# the tight reference


def _scipy_rhs(params: tuple[float, ...]):
    import numpy as np

    gNa, gK, gL, ENa, EK, EL, C = params

    def x_over_expm1(x):
        return 1.0 if x == 0 else x / np.expm1(x)

    def f(t, y, I):
        V, m, h, n = y
        u = V + 75.0
        am = x_over_expm1((25.0 - u) / 10.0)
        bm = 4.0 * np.exp(-u / 18.0)
        ah = 0.07 * np.exp(-u / 20.0)
        bh = 1.0 / (np.exp((30.0 - u) / 10.0) + 1.0)
        an = 0.1 * x_over_expm1((10.0 - u) / 10.0)
        bn = 0.125 * np.exp(-u / 80.0)
        dV = (I - gNa * m**3 * h * (V - ENa) - gK * n**4 * (V - EK) - gL * (V - EL)) / C
        return [dV, am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n]

    return f


def reference_solution(
    pulses: Tensor,
    t_out: Tensor,
    *,
    params: HHParameters | None = None,
    y0: tuple[float, ...] = DEFAULT_Y0,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    solver: str = "Radau",
) -> Tensor:
    """V at t_out from scipy's ``solve_ivp`` (Radau, rtol = atol = 1e-10 by default), the
    integration restarted at every pulse edge. Slow (about a second per neuron): the yardstick
    of the fast schemes, not a simulator. Returns Tensor[N, T] in float64.
    """
    import numpy as np
    from scipy.integrate import solve_ivp

    pulses = pulses.detach().cpu().double()
    if pulses.dim() == 2:
        pulses = pulses[:, None, :]
    t = t_out.detach().cpu().double().numpy()
    f = _scipy_rhs(astuple(params or HHParameters()))
    out = np.empty((pulses.shape[0], t.size))
    for i, row in enumerate(pulses.numpy()):
        edges = sorted({e for e in row[:, :2].ravel() if 0 < e < t[-1]})
        bounds = [0.0, *edges, float(t[-1])]
        y = np.array(y0, dtype=np.float64)
        for a, b in itertools.pairwise(bounds):
            mid = 0.5 * (a + b)
            I = float(sum(amp for tin, tf, amp in row if tin <= mid <= tf))
            sel = (t >= a) & (t <= b)
            sol = solve_ivp(f, (a, b), y, method=solver, rtol=rtol, atol=atol, args=(I,), dense_output=True)
            if not sol.success:
                raise SimulationError(
                    f"reference_solution: scipy failed on neuron {i}: {sol.message}", [i], [1]
                )
            out[i, sel] = sol.sol(t[sel])[0]
            y = sol.y[:, -1]
    return torch.from_numpy(out)


# --------------------------------------------------------------------------------------------
# conductance estimation: the Hodgkin-Huxley twin of the two-stage estimator (SPECS.md section 3)
#
# theta = (gNa, gK, gL) in mS/cm^2, the other parameters at their defaults, is estimated from V
# sampled every ESTIMATION_DT = 0.2 ms on [0, 100) ms (N = 500 samples) with additive Gaussian
# measurement noise (std NOISE_STD = 2 mV): the response to one known current, the staircase
# PROTOCOL, 0 on [0, 10) ms (the approach to rest from DEFAULT_Y0), 3 uA/cm^2 on [10, 35)
# (subthreshold: the leak), 8 on [35, 65) and 16 on [65, 100) (two firing rates: the spike
# shape and frequency carry gNa and gK). Prior box: the defaults +-20%; the out-of-distribution
# truths OOD1 (a more excitable cell: gNa +30%, gK -22%, gL +40%) and OOD2 (a less excitable
# one: gNa -30%, gK +25%, gL -33%) lie outside it.

CONDUCTANCES = ("gNa", "gK", "gL")
DEFAULT_CONDUCTANCES = (120.0, 36.0, 0.3)
CONDUCTANCE_PRIOR_LOW = (96.0, 28.8, 0.24)
CONDUCTANCE_PRIOR_HIGH = (144.0, 43.2, 0.36)
OOD_CONDUCTANCES = {"OOD1": (156.0, 28.0, 0.42), "OOD2": (84.0, 45.0, 0.2)}
ESTIMATION_DT = 0.2
ESTIMATION_N = 500
NOISE_STD = 2.0
#: (start in ms, amplitude in uA/cm^2) of each step of the known current; the last runs to the end
PROTOCOL = ((0.0, 0.0), (10.0, 3.0), (35.0, 8.0), (65.0, 16.0))
#: the scheme of the estimation twin: the fixed-step scheme whose exact sensitivities the op gives
ESTIMATION_SCHEME = {"method": "rk4", "dt": 0.05}
VOLTAGE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SPIKE_THRESHOLD, SPIKE_WIDTH = -20.0, 4.0
N_VOLTAGE_FEATURES = len(PROTOCOL) * (len(VOLTAGE_QUANTILES) + 2)


def _estimation_fail(message: str) -> None:
    raise ValueError(f"hh: {message}")


def estimation_times(n: int = ESTIMATION_N, dtype: torch.dtype = torch.float64) -> Tensor:
    """Tensor[n] of the sample times (ms) of a record: 0, 0.2, ..."""
    if n < 2:
        _estimation_fail(f"a record needs n >= 2 samples, got {n}")
    return torch.arange(n, dtype=dtype) * ESTIMATION_DT


def _segment_starts(n: int) -> list[int]:
    return [round(start / ESTIMATION_DT) for start, _ in PROTOCOL] + [n]


def protocol_current(n: int = ESTIMATION_N, dtype: torch.dtype = torch.float64) -> Tensor:
    """Tensor[n], the known current (uA/cm^2) of :data:`PROTOCOL` at the sample times."""
    if n != ESTIMATION_N:
        _estimation_fail(f"the protocol is defined for records of {ESTIMATION_N} samples, got n={n}")
    current = torch.zeros(n, dtype=dtype)
    starts = _segment_starts(n)
    for (_, amp), a, b in zip(PROTOCOL, starts[:-1], starts[1:], strict=True):
        current[a:b] = amp
    return current


def conductance_prior_box(
    low: Sequence[float] | None = None, high: Sequence[float] | None = None, *, owner: str = "hh"
) -> tuple[Tensor, Tensor]:
    """The prior box of (gNa, gK, gL) as float64 tensors [3] (default: the defaults +-20%),
    checked: 3 finite positive values each, low <= high; errors start with ``owner``."""
    lo = torch.tensor(CONDUCTANCE_PRIOR_LOW if low is None else list(low), dtype=torch.float64)
    hi = torch.tensor(CONDUCTANCE_PRIOR_HIGH if high is None else list(high), dtype=torch.float64)
    if lo.shape != (3,) or hi.shape != (3,):
        raise ValueError(
            f"{owner}: prior_low and prior_high need 3 values (gNa, gK, gL), got {lo.tolist()}, {hi.tolist()}"
        )
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError(f"{owner}: the prior box must be finite, got low={lo.tolist()}, high={hi.tolist()}")
    if bool((lo > hi).any()):
        raise ValueError(f"{owner}: prior box with low > high: low={lo.tolist()}, high={hi.tolist()}")
    if bool((lo <= 0).any()):
        raise ValueError(f"{owner}: the prior box must hold positive conductances, got low={lo.tolist()}")
    return lo, hi


def sample_conductances(
    n: int,
    generator: torch.Generator | None = None,
    low: Sequence[float] = CONDUCTANCE_PRIOR_LOW,
    high: Sequence[float] = CONDUCTANCE_PRIOR_HIGH,
) -> Tensor:
    """Tensor[n, 3] of (gNa, gK, gL) uniform in the box [low, high]."""
    lo, hi = conductance_prior_box(low, high)
    return lo + (hi - lo) * torch.rand(n, 3, generator=generator, dtype=torch.float64)


def _simulate_conductances(theta: Tensor, current: Tensor, jacobian: bool, on_failure: str):
    B, n = current.shape
    t = estimation_times(n, theta.dtype)
    rest = HHParameters().tensor(theta.dtype)[3:].expand(B, -1)
    return simulate(
        None,
        t,
        params=torch.cat((theta, rest), 1),
        current=current,
        t_current=t,
        interpolation="previous",
        jacobian=jacobian,
        on_failure=on_failure,
        **ESTIMATION_SCHEME,
    )


def _conductances_with_jacobian(theta: Tensor, current: Tensor, on_failure: str) -> tuple[Tensor, Tensor]:
    V, J = _simulate_conductances(theta, current, True, on_failure)
    return V, J[..., :3].contiguous()


def simulate_conductances(
    theta: Tensor,
    current: Tensor | None = None,
    *,
    noise: bool = True,
    generator: torch.Generator | None = None,
    noise_std: float = NOISE_STD,
    draws: Tensor | None = None,
    differentiable: bool = False,
    jacobian: bool = False,
    on_failure: str = "raise",
) -> Tensor | tuple[Tensor, Tensor]:
    """Voltage records Tensor[B, N] (mV) of B neurons with conductances ``theta`` [B, 3] (or [3];
    gNa, gK, gL in mS/cm^2) driven by ``current`` [N] (shared) or [B, N] (uA/cm^2 at
    :func:`estimation_times`, held between samples; default :func:`protocol_current`), plus
    Gaussian measurement noise of std ``noise_std`` (``noise=False``: the noise-free V;
    ``draws`` [B, N]: standard normal draws to use instead of drawing, common random numbers).

    Simulated by :data:`ESTIMATION_SCHEME` (rk4, dt 0.05 ms). ``jacobian=True`` also returns
    dV/dtheta [B, N, 3] of the noise-free V: the op's exact sensitivities of the discrete
    solution. ``differentiable=True``: V carries those derivatives to ``theta`` in reverse and
    forward mode (``torch.func.jacfwd`` and ``dtwin.estimation.gauss_newton`` see them).
    ``on_failure='nan'``: neurons whose state became non-finite give NaN from there on instead
    of a :class:`dtwin.errors.SimulationError`.
    """
    if not isinstance(theta, Tensor):
        _estimation_fail(f"theta must be a Tensor[B, 3] (gNa, gK, gL), got {type(theta).__name__}")
    theta = theta.unsqueeze(0) if theta.dim() == 1 else theta
    if theta.dim() != 2 or theta.shape[1] != 3:
        _estimation_fail(f"theta must be [B, 3] (gNa, gK, gL), got {list(theta.shape)}")
    B = theta.shape[0]
    dtype = theta.dtype if theta.is_floating_point() else torch.float64
    theta = theta.to(dtype)
    current = protocol_current(dtype=dtype) if current is None else current
    if not isinstance(current, Tensor):
        _estimation_fail(f"current must be a Tensor[N] or [B, N], got {type(current).__name__}")
    current = current.detach().to(dtype)
    current = current.unsqueeze(0).expand(B, -1) if current.dim() == 1 else current
    if current.dim() != 2 or current.shape[0] != B or current.shape[1] < 2:
        _estimation_fail(f"current must be [N] or [B={B}, N] with N >= 2, got {list(current.shape)}")
    current = current.contiguous()
    if not bool(torch.isfinite(theta.detach()).all()) or not bool(torch.isfinite(current).all()):
        _estimation_fail("theta and current must be finite")
    if bool((theta.detach() <= 0).any()):
        _estimation_fail(
            f"the twin cannot simulate non-positive conductances; got min(theta) = {theta.min().item():.3g}"
        )
    if on_failure not in ("raise", "nan"):
        _estimation_fail(f"on_failure must be 'raise' or 'nan', got {on_failure!r}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        _estimation_fail(f"noise_std must be finite and >= 0, got {noise_std}")
    J = None
    if differentiable:
        # V(theta) with the op's exact sensitivities as its derivative, in reverse and forward mode
        # (the compiled op's own autograd is reverse mode only: jacfwd through it sees zero tangents)
        V, J = with_jacobian(theta, _conductances_with_jacobian, current, on_failure)
    elif jacobian:
        V, J = _simulate_conductances(theta, current, True, on_failure)
        J = J[..., :3]
    else:
        V = _simulate_conductances(theta, current, False, on_failure)
    if noise:
        if draws is None:
            draws = torch.randn(B, current.shape[1], generator=generator, dtype=torch.float64)
        elif tuple(draws.shape) != tuple(V.shape):
            _estimation_fail(f"draws must be [{B}, {current.shape[1]}], got {list(draws.shape)}")
        V = V + noise_std * draws.to(dtype)
    return (V, J) if jacobian else V


def voltage_features(V: Tensor) -> Tensor:
    """The 'spiking' compression of voltage records [B, N] (or [N]): for each step of
    :data:`PROTOCOL`, the quantiles :data:`VOLTAGE_QUANTILES` of V, its mean and a soft spike
    count, Tensor[B, 32]. The count sums the upward steps of sigmoid((V + 20 mV) / 4 mV), about
    one per spike. Every feature is differentiable in V almost everywhere (quantiles are order
    statistics), so the derivatives of mean simulated features chain with the simulator's
    sensitivities; a hard spike count or an interspike interval would be piecewise constant."""
    V = V.unsqueeze(0) if V.dim() == 1 else V
    if V.dim() != 2 or V.shape[1] != ESTIMATION_N:
        _estimation_fail(f"voltage records must be [B, {ESTIMATION_N}], got {list(V.shape)}")
    if not bool(torch.isfinite(V).all()):
        _estimation_fail("voltage records contain non-finite values")
    levels = torch.tensor(VOLTAGE_QUANTILES, dtype=V.dtype, device=V.device)
    starts = _segment_starts(V.shape[1])
    columns = []
    for a, b in itertools.pairwise(starts):
        segment = V[:, a:b]
        soft = torch.sigmoid((segment - SPIKE_THRESHOLD) / SPIKE_WIDTH)
        columns += [
            torch.quantile(segment, levels, dim=1).T,
            segment.mean(1, keepdim=True),
            torch.relu(soft[:, 1:] - soft[:, :-1]).sum(1, keepdim=True),
        ]
    return torch.cat(columns, 1)
