"""Hodgkin-Huxley twin: compiled op vs its pure-torch reference, vs Brian2, and error vs cost.

    pytest bench/test_hh.py --benchmark-enable

N = 2000 neurons, 100 ms of the paper's pulse family, V sampled at 500 points. Brian2's
benchmark needs brian2 importable (Brian2 2.9 needs numpy < 2.4); it is skipped otherwise.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pytest
import torch

from dtwin.data import cached
from dtwin.ops import hh_simulate, hh_simulate_reference
from dtwin.sim import hh

N = 2000
T_END = 100.0
T_OUT = torch.linspace(0, T_END, 500, dtype=torch.float64)
SCHEMES = {
    "rush_larsen dt=0.01": dict(method="rush_larsen", dt=0.01),
    "rk4 dt=0.05": dict(method="rk4", dt=0.05),
    "dopri5 rtol=1e-5 (default)": dict(method="dopri5", dt=0.01, rtol=1e-5, atol=1e-5),
}


def _inputs(dtype: torch.dtype, n: int = N):
    pulses = hh.single_pulses(n, torch.Generator().manual_seed(7))[:, None, :].to(dtype)
    params = hh.HHParameters().tensor(dtype).repeat(n, 1)
    y0 = torch.tensor(hh.DEFAULT_Y0, dtype=dtype).repeat(n, 1)
    return T_OUT.to(dtype), params, y0, pulses


def _neuron_steps(settings: dict) -> int | None:
    return int(N * T_END / settings["dt"]) if settings["method"] != "dopri5" else None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("role", ["dtwin", "reference"])
def test_hh_op_vs_reference(benchmark, role, scheme, dtype):
    """The compiled CPU op against the pure-torch reference of the same scheme (target >= 30x)."""
    settings = SCHEMES[scheme]
    args = _inputs(dtype)
    fn = hh_simulate if role == "dtwin" else hh_simulate_reference
    benchmark.extra_info.update(pair=f"hh {scheme} {str(dtype)[6:]} N={N}", role=role)
    steps = _neuron_steps(settings)
    if steps:
        benchmark.extra_info["neuron_steps"] = steps
    rounds = 5 if role == "dtwin" else 2
    out = benchmark.pedantic(
        lambda: fn(*args, **settings), rounds=rounds, iterations=1, warmup_rounds=1 if role == "dtwin" else 0
    )
    assert int(out[2].ne(0).sum()) == 0


# --------------------------------------------------------------------------------------------
# error vs cost, against scipy Radau (rtol = atol = 1e-10) on 120 inputs of the paper's family

ERROR_SAMPLES = 120
COST_SCHEMES = {
    "rush_larsen dt=0.01": dict(method="rush_larsen", dt=0.01),
    "rush_larsen dt=0.005": dict(method="rush_larsen", dt=0.005),
    "rk4 dt=0.02": dict(method="rk4", dt=0.02),
    "rk4 dt=0.04": dict(method="rk4", dt=0.04),
    "rk4 dt=0.05": dict(method="rk4", dt=0.05),
    "dopri5 rtol=1e-4": dict(method="dopri5", dt=0.01, rtol=1e-4, atol=1e-4),
    "dopri5 rtol=1e-5 (default)": dict(method="dopri5", dt=0.01, rtol=1e-5, atol=1e-5),
    "dopri5 rtol=1e-6": dict(method="dopri5", dt=0.01, rtol=1e-6, atol=1e-6),
    "dopri5 rtol=1e-7": dict(method="dopri5", dt=0.01, rtol=1e-7, atol=1e-7),
}


def _reference_data() -> dict[str, torch.Tensor]:
    def make() -> dict[str, torch.Tensor]:
        pulses = hh.single_pulses(ERROR_SAMPLES, torch.Generator().manual_seed(1234))
        workers = max(1, min(4, os.cpu_count() or 1))
        chunks = [pulses[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(partial(hh.reference_solution, t_out=T_OUT), chunks))
        V = torch.empty(ERROR_SAMPLES, T_OUT.shape[0], dtype=torch.float64)
        for i, part in enumerate(parts):
            V[i::workers] = part
        return {"pulses": pulses, "V": V}

    return cached("hh-radau-reference", {"n": ERROR_SAMPLES, "seed": 1234, "t_out": 500, "rtol": 1e-10}, make)


@pytest.fixture(scope="module")
def reference_data():
    return _reference_data()


@pytest.mark.parametrize("scheme", list(COST_SCHEMES))
def test_hh_error_vs_cost(benchmark, scheme, reference_data):
    settings = COST_SCHEMES[scheme]
    V = hh.simulate(reference_data["pulses"], T_OUT, on_failure="nan", **settings)
    err = (V - reference_data["V"]).norm(dim=1) / reference_data["V"].norm(dim=1)
    benchmark.extra_info.update(
        scheme=scheme,
        rel_l2_error=float(err.mean()),
        max_rel_l2_error=float(err.max()),
        baseline_scheme=scheme == "rush_larsen dt=0.01",
    )
    steps = _neuron_steps(settings)
    if steps:
        benchmark.extra_info["neuron_steps"] = steps
    args = _inputs(torch.float64)
    benchmark.pedantic(lambda: hh_simulate(*args, **settings), rounds=5, iterations=1, warmup_rounds=1)


# --------------------------------------------------------------------------------------------
# Brian2 (exponential_euler, its compiled C++ standalone target) on the same model and inputs

BRIAN2_EQUATIONS = """
dv/dt = (I - gNa*m**3*h*(v - ENa) - gK*n**4*(v - EK) - gL*(v - EL)) / Cm : volt
dm/dt = alpham*(1 - m) - betam*m : 1
dh/dt = alphah*(1 - h) - betah*h : 1
dn/dt = alphan*(1 - n) - betan*n : 1
u = (v + 75*mV) / mV : 1
alpham = 1 / exprel((25 - u) / 10) / ms : Hz
betam = 4 * exp(-u / 18) / ms : Hz
alphah = 0.07 * exp(-u / 20) / ms : Hz
betah = 1 / (exp((30 - u) / 10) + 1) / ms : Hz
alphan = 0.1 / exprel((10 - u) / 10) / ms : Hz
betan = 0.125 * exp(-u / 80) / ms : Hz
I = Iamp * int(t >= tin) * int(t <= tf) : amp/meter**2
tin : second (constant)
tf : second (constant)
Iamp : amp/meter**2 (constant)
"""


def _brian2_run(directory: str, pulses: torch.Tensor, threads: int):
    import brian2 as b2

    b2.set_device("cpp_standalone", directory=directory, build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = threads
    b2.defaultclock.dt = 0.01 * b2.ms
    namespace = dict(
        gNa=120 * b2.msiemens / b2.cm**2,
        gK=36 * b2.msiemens / b2.cm**2,
        gL=0.3 * b2.msiemens / b2.cm**2,
        ENa=40 * b2.mV,
        EK=-87 * b2.mV,
        EL=-64.387 * b2.mV,
        Cm=1 * b2.ufarad / b2.cm**2,
    )
    group = b2.NeuronGroup(pulses.shape[0], BRIAN2_EQUATIONS, method="exponential_euler", namespace=namespace)
    group.v, group.m, group.h, group.n = -75 * b2.mV, 0.05, 0.595, 0.317
    group.tin = pulses[:, 0].numpy() * b2.ms
    group.tf = pulses[:, 1].numpy() * b2.ms
    group.Iamp = pulses[:, 2].numpy() * b2.uamp / b2.cm**2
    monitor = b2.StateMonitor(group, "v", record=True, dt=0.2 * b2.ms)
    b2.run(T_END * b2.ms)
    b2.device.build(directory=directory, compile=True, run=False)
    return b2, monitor


@pytest.fixture(scope="module")
def brian2_build(tmp_path_factory):
    pytest.importorskip("brian2", reason="brian2 is not installed (pip install brian2 with numpy < 2.4)")
    pulses = hh.single_pulses(N, torch.Generator().manual_seed(7))
    directory = str(tmp_path_factory.mktemp("brian2"))
    b2, monitor = _brian2_run(directory, pulses, threads=torch.get_num_threads())
    return b2, directory, monitor


@pytest.mark.parametrize("role", ["dtwin", "brian2 exponential_euler cpp_standalone"])
def test_hh_vs_brian2(benchmark, role, request):
    """Same model, inputs, dt = 0.01 ms and float64; Brian2's time is its compiled binary's run."""
    benchmark.extra_info.update(
        pair=f"hh first-order dt=0.01 f64 N={N} vs Brian2", role=role, neuron_steps=int(N * T_END / 0.01)
    )
    if role == "dtwin":
        args = _inputs(torch.float64)
        benchmark.pedantic(
            lambda: hh_simulate(*args, method="rush_larsen", dt=0.01), rounds=5, iterations=1, warmup_rounds=1
        )
        return
    b2, directory, monitor = request.getfixturevalue("brian2_build")

    def run():
        b2.device.run(directory=directory, with_output=False)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["brian2_internal_run_time_s"] = float(b2.device._last_run_time)
    print(f"\nBrian2's own measure of its simulation loop: {b2.device._last_run_time * 1e3:.1f} ms")
    # the same model: Brian2's first-order trajectory is within a few percent of the twin's
    V_brian = torch.from_numpy(monitor.v_ / 1e-3)
    pulses = hh.single_pulses(N, torch.Generator().manual_seed(7))
    V_twin = hh.simulate(pulses, torch.arange(500, dtype=torch.float64) * 0.2)
    err = float(((V_brian - V_twin).norm(dim=1) / V_twin.norm(dim=1)).mean())
    benchmark.extra_info["brian2_rel_l2_vs_twin_default"] = err
    print(f"Brian2 exponential_euler vs the twin's default: mean relative L2 {err:.3g}")
    assert err < 0.05
