"""dtwin.sim.hh: the twin's accuracy against a tight reference, its options and input families."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pytest
import torch

from dtwin.errors import SimulationError
from dtwin.sim import hh

T_OUT = torch.linspace(0, 100, 500, dtype=torch.float64)


@pytest.fixture(scope="module")
def paper_reference():
    """16 inputs of the paper's family and V from scipy Radau (rtol = atol = 1e-10), split at the
    pulse edges: the tight reference the twin's default is held to."""
    pulses = hh.single_pulses(16, torch.Generator().manual_seed(2024))
    with ProcessPoolExecutor(2) as pool:
        parts = list(pool.map(partial(hh.reference_solution, t_out=T_OUT), [pulses[0::2], pulses[1::2]]))
    ref = torch.empty(16, 500, dtype=torch.float64)
    ref[0::2], ref[1::2] = parts
    return pulses, ref


def _mean_rel_l2(V, ref):
    return float(((V - ref).norm(dim=1) / ref.norm(dim=1)).mean())


def test_default_reaches_1e4_of_the_tight_reference(paper_reference):
    pulses, ref = paper_reference
    err = _mean_rel_l2(hh.simulate(pulses, T_OUT), ref)
    assert err <= 1e-4, f"default scheme: mean relative L2 {err:.3g} > 1e-4"


def test_default_in_float32_reaches_1e4(paper_reference):
    pulses, ref = paper_reference
    err = _mean_rel_l2(hh.simulate(pulses.float(), T_OUT.float()).double(), ref)
    assert err <= 1e-4, f"default scheme in float32: mean relative L2 {err:.3g} > 1e-4"


def test_default_is_100x_more_accurate_than_rush_larsen(paper_reference):
    """The measured fact of SPECS.md: Rush-Larsen at dt = 0.01 ms is about 2% off."""
    pulses, ref = paper_reference
    rl = _mean_rel_l2(hh.simulate(pulses, T_OUT, method="rush_larsen", dt=0.01), ref)
    default = _mean_rel_l2(hh.simulate(pulses, T_OUT), ref)
    assert 5e-3 < rl < 5e-2
    assert rl / default >= 100


def test_rk4_split_at_edges_is_fourth_order(paper_reference):
    pulses, ref = paper_reference
    e1 = _mean_rel_l2(hh.simulate(pulses, T_OUT, method="rk4", dt=0.04), ref)
    e2 = _mean_rel_l2(hh.simulate(pulses, T_OUT, method="rk4", dt=0.02), ref)
    assert 10 < e1 / e2 < 24  # 2^4 = 16


def test_broadcasting_and_parameter_forms():
    pulses = torch.tensor([[1.0, 20.0, 6.0], [1.0, 10.0, 9.0]], dtype=torch.float64)
    t = torch.linspace(0, 30, 61, dtype=torch.float64)
    a = hh.simulate(pulses, t)
    b = hh.simulate(
        pulses[:, None, :], t, params=hh.HHParameters(), y0=torch.tensor(hh.DEFAULT_Y0, dtype=torch.float64)
    )
    c = hh.simulate(pulses, t, params=hh.HHParameters().tensor().expand(2, 7).clone())
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert a.shape == (2, 61)
    assert hh.simulate(pulses, t, states="all").shape == (2, 4, 61)


def test_per_neuron_parameters_change_the_response():
    pulses = torch.tensor([[1.0, 20.0, 8.0]] * 2, dtype=torch.float64)
    params = hh.HHParameters().tensor().repeat(2, 1)
    params[1, 1] = 20.0  # less potassium
    V = hh.simulate(pulses, torch.linspace(0, 25, 51, dtype=torch.float64), params=params)
    assert (V[0] - V[1]).abs().max() > 1.0


def test_pulses_equal_the_same_current_as_a_waveform():
    """A pulse train and the same current given as a piecewise-constant waveform with samples at
    the edges use identical segments: the results agree to rounding."""
    trains = hh.pulse_trains(3, 3, torch.Generator().manual_seed(5), t_end=60.0)
    t = torch.linspace(0, 60, 121, dtype=torch.float64)
    V_pulses = hh.simulate(trains, t, method="rk4", dt=0.05)
    for i in range(3):
        edges = trains[i, :, :2].flatten()
        t_current = torch.cat((torch.tensor([-1.0], dtype=torch.float64), edges, torch.tensor([61.0])))
        current = torch.zeros(t_current.shape[0], dtype=torch.float64)
        current[1:-1:2] = trains[i, :, 2]
        V_wave = hh.simulate(None, t, current=current[None], t_current=t_current, method="rk4", dt=0.05)
        torch.testing.assert_close(V_wave[0], V_pulses[i], rtol=1e-10, atol=1e-9)


def test_smooth_waveform_converges():
    t_grid = torch.linspace(0, 50, 201, dtype=torch.float64)
    current = hh.smooth_waveforms(4, t_grid, torch.Generator().manual_seed(1))
    t = torch.linspace(0, 50, 101, dtype=torch.float64)
    tight = hh.simulate(
        None,
        t,
        current=current,
        t_current=t_grid,
        interpolation="linear",
        method="dopri5",
        rtol=1e-10,
        atol=1e-10,
    )
    errors = []
    for dt in (0.04, 0.02):
        V = hh.simulate(
            None, t, current=current, t_current=t_grid, interpolation="linear", method="rk4", dt=dt
        )
        errors.append(float(((V - tight).norm(dim=1) / tight.norm(dim=1)).max()))
    assert errors[1] < 1e-5
    assert 10 < errors[0] / errors[1] < 24  # fourth order: a linear input between samples keeps it


def test_jacobian_option():
    pulses = torch.tensor([[1.0, 20.0, 8.0]], dtype=torch.float64)
    t = torch.linspace(0, 10, 21, dtype=torch.float64)
    _, J = hh.simulate(pulses, t, jacobian=True)
    assert J.shape == (1, 21, 10)
    assert hh.DIRECTION_NAMES[9] == "amp"
    # before the pulse starts nothing depends on tf or amp
    assert torch.all(J[0, t < 1.0][:, [8, 9]] == 0)
    with pytest.raises(ValueError, match="fixed-step"):
        hh.simulate(pulses, t, jacobian=True, method="dopri5")


def test_failure_raises_with_indices():
    pulses = torch.tensor([[1.0, 30.0, 10.0], [1.0, 30.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0, 30, 31, dtype=torch.float64)
    with pytest.raises(SimulationError, match=r"1 of 2 neurons failed.*indices \[0\]") as info:
        hh.simulate(pulses, t, method="rush_larsen", dt=0.5)
    assert info.value.indices == [0]
    V = hh.simulate(pulses, t, method="rush_larsen", dt=0.5, on_failure="nan")
    assert torch.isnan(V[0]).any() and torch.isfinite(V[1]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(pulses=None), "exactly one input"),
        (dict(current=torch.zeros(1, 3)), "exactly one input"),
        (dict(states="gates"), "states"),
        (dict(method="euler"), "method"),
        (dict(on_failure="ignore"), "on_failure"),
        (dict(params=torch.zeros(3, 7)), "params"),
        (dict(y0=torch.zeros(2, 4)), "y0"),
        (dict(pulses=torch.zeros(1, 4)), "pulses"),
        (dict(interpolation="cubic"), "interpolation"),
    ],
)
def test_simulate_bad_input(kwargs, match):
    args = dict(pulses=torch.tensor([[1.0, 5.0, 3.0]]), t_out=torch.linspace(0, 5, 6))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hh.simulate(args.pop("pulses"), args.pop("t_out"), **args)


def test_input_families():
    g = torch.Generator().manual_seed(0)
    p = hh.single_pulses(100, g)
    assert p.shape == (100, 3) and torch.all(p[:, 0] == 1.0)
    assert torch.all((p[:, 1] >= 1.2) & (p[:, 1] <= 99.9) & (p[:, 2] >= 0) & (p[:, 2] <= 10))
    trains = hh.pulse_trains(50, 4, g)
    edges = trains[..., :2].reshape(50, -1)
    assert torch.all(edges[:, 1:] >= edges[:, :-1]) and torch.all(edges >= 0) and torch.all(edges <= 100)
    wave = hh.smooth_waveforms(5, torch.linspace(0, 100, 401), g)
    assert wave.shape == (5, 401) and torch.isfinite(wave).all()
    with pytest.raises(ValueError, match="n_pulses"):
        hh.pulse_trains(2, 0)
    with pytest.raises(ValueError, match="slots"):
        hh.pulse_trains(2, 20, width_range=(1.0, 10.0))


def test_hodgkin_huxley_object():
    twin = hh.HodgkinHuxley(hh.HHParameters(gK=30.0))
    assert "gK=30.0" in repr(twin)
    V = twin.simulate(torch.tensor([[1.0, 10.0, 8.0]]), torch.linspace(0, 12, 25))
    assert V.shape == (1, 25) and V.dtype == torch.float32
