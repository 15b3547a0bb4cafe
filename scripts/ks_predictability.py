#!/usr/bin/env python3
"""How well can any model of the Kuramoto-Sivashinsky twin do over a long rollout? The exact solver's
own rollout MSE when its initial state carries a small error.

Every latent model (L-HiTS included) starts a rollout from the decoded encoding of the true first
state, so it starts with the autoencoder's reconstruction error; on a chaotic system that error grows
about e-fold every 1/lambda time units whatever the model. This script measures that floor: the
ETDRK4 solver (the data's own, float64) from attractor states u0 and from u0 + d, with d a smooth
random zero-mean field scaled to a given MSE, and reports the MSE between the two trajectories
averaged over the first 2%, 10%, 25%, 50% and 100% of the horizon (the rollout metric of
scripts/lhits_experiment.py and of the L-HiTS authors' code: the mean over grid points, then
trajectories, then time steps).

    python3 scripts/ks_predictability.py                           # 10 states, 5120 steps (51.2 time units)
    python3 scripts/ks_predictability.py --initial-mse 1.3e-3 1e-6 --plot runs/ks-predictability.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dtwin.sim import ks

FRACTIONS = (0.02, 0.1, 0.25, 0.5, 1.0)


def floor(states: int, steps: int, initial_mse: list[float], seed: int) -> dict:
    """{initial MSE: MSE at each saved time (list, steps + 1 values)} and the truth's variance."""
    generator = torch.Generator().manual_seed(seed)
    u0 = ks.attractor_initial(states, generator=generator)
    truth = ks.simulate(u0, steps)
    curves = {}
    for target in initial_mse:
        d = ks.random_initial(states, generator=generator)
        d = d * torch.sqrt(target / d.pow(2).mean(1, keepdim=True))
        perturbed = ks.simulate(u0 + d, steps)
        curves[target] = (perturbed - truth).pow(2).mean(-1).mean(0).tolist()
    return {"curves": curves, "variance": truth.var().item()}


def table(result: dict, steps: int) -> str:
    head = [f"to t = {f * steps * ks.DT:g}" for f in FRACTIONS]
    lines = ["| initial MSE | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for target, curve in result["curves"].items():
        errors = torch.tensor(curve)
        cells = [f"{errors[1 : int(f * steps) + 1].mean().item():.3g}" for f in FRACTIONS]
        lines.append(f"| {target:.1e} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n(variance of the states: {result['variance']:.3g})\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for target, curve in result["curves"].items():
        t = [i * ks.DT for i in range(len(curve))]
        ax.semilogy(t, curve, label=f"initial MSE {target:.2g}")
    ax.axhline(1.42e-3, color="k", linestyle=":", label="L-HiTS authors' rollout MSE")
    ax.set_xlabel("t")
    ax.set_ylabel("MSE against the unperturbed solve")
    ax.set_title(f"KS, L = {ks.LENGTH:g}: the exact solver from a perturbed state")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ks_predictability",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python3 scripts/ks_predictability.py --initial-mse 1.3e-3 1e-6",
    )
    parser.add_argument("--states", type=int, default=10, help="attractor states (trajectories)")
    parser.add_argument("--steps", type=int, default=5120, help=f"samples of dt = {ks.DT} per trajectory")
    parser.add_argument(
        "--initial-mse",
        type=float,
        nargs="+",
        default=[1.3e-3, 1e-4, 1e-6],
        help="MSE of the initial error (1.3e-3: the L-HiTS autoencoder's reconstruction in README)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", type=Path, help="write the MSE-vs-time figure here")
    parser.add_argument("--json", type=Path, help="write the curves here")
    args = parser.parse_args(argv)
    if args.states < 1:
        parser.error(f"--states must be >= 1, got {args.states}")
    if args.steps < 50:
        parser.error(f"--steps must be >= 50 (the shortest reported horizon is 2% of it), got {args.steps}")
    if not all(m > 0 for m in args.initial_mse):
        parser.error(f"--initial-mse: each value must be > 0, got {args.initial_mse}")
    result = floor(args.states, args.steps, args.initial_mse, args.seed)
    print(table(result, args.steps))
    if args.plot:
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in result["curves"].items()}))


if __name__ == "__main__":
    main()
