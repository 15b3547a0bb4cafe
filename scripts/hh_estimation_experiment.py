#!/usr/bin/env python3
"""Two-stage estimator with out-of-distribution fine-tuning on the Hodgkin-Huxley twin
(SPECS.md section 3, the issue's second example): (gNa, gK, gL) from the noisy voltage response
(2 mV) to the known staircase current of ``dtwin.sim.hh.protocol_current``, a prior box of the
defaults +-20%, truths outside it. Monte Carlo runs per case; parameter MSE and seconds per
estimate of the pre-trained two-stage estimator (TS), its Gauss-Newton warm start, TS fine-tuned,
the same with the paper's feature-space warm start, and the prediction-error method (PEM:
Gauss-Newton on the simulator, exact sensitivities) from a good and from a poor initial value.

    python3 scripts/hh_estimation_experiment.py --runs 20      # both OOD cases (resumable)
    python3 scripts/hh_estimation_experiment.py --report       # tables and figure from saved runs

Parameter MSE = mean over runs of sum_i ((theta_hat_i - theta0_i) / default_i)^2, the error in
units of the default conductances (120, 36, 0.3 mS/cm^2) summed over the three, so that gL
counts as much as gNa; the summary also gives each parameter's RMSE in mS/cm^2. Good PEM start:
the truth with each conductance perturbed by a uniform +-10%; poor start: the centre of the prior
box (the defaults). The feature-space variant runs the paper's 3 Gauss-Newton iterations from the
same starts as the trace warm start (16 around the pre-trained estimate). Everything lands in
--out: the trained estimator (two_stage.ckpt, reused), results.json (one entry per run, written
as it goes: an interrupted run resumes), summary.json, table.md and estimates.png (estimates
against the truth).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dtwin.experiments import Estimates, monte_carlo, plot_estimates, pretrain, summarise_estimates
from dtwin.sim import hh

METHODS = (
    "TS pre-trained",
    "TS warm start (trace Gauss-Newton)",
    "TS fine-tuned",
    "TS warm start (features, the paper's)",
    "TS fine-tuned (features warm start)",
    "PEM (good start)",
    "PEM (poor start)",
)
SHORT = dict(
    zip(METHODS, ("TS pre", "TS GN", "TS fine", "GN feat", "fine feat", "PEM good", "PEM poor"), strict=True)
)
DEFAULTS = torch.tensor(hh.DEFAULT_CONDUCTANCES, dtype=torch.float64)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="Monte Carlo runs per case")
    cases = list(hh.OOD_CONDUCTANCES)
    p.add_argument("--cases", nargs="+", default=cases, choices=cases, help="OOD cases")
    p.add_argument("--epochs", type=int, default=40, help="pre-training epochs")
    p.add_argument("--n-train", type=int, default=20000, help="simulated training records")
    p.add_argument("--no-pem", action="store_true", help="skip the prediction-error baselines")
    p.add_argument("--no-features", action="store_true", help="skip the feature-space warm start variant")
    p.add_argument("--out", default="runs/hh-estimation", help="output folder")
    p.add_argument("--report", action="store_true", help="only print tables and draw the figure")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for name in ("runs", "epochs", "n_train"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def pretrained(out: Path, epochs: int, n_train: int, quiet: bool):
    """The two-stage estimator trained on the prior box (resumes from its last checkpoint)."""
    from dtwin.data.tanks import HHConductanceDataModule
    from dtwin_estimators.two_stage import TwoStage

    torch.manual_seed(0)
    model, metrics = pretrain(
        out,
        TwoStage(twin="hh"),
        HHConductanceDataModule(n_train=n_train, n_val=0, n_test=2000),
        epochs,
        checkpoint="two_stage.ckpt",
        quiet=quiet,
        accelerator="cpu",
    )
    if metrics is not None:
        print(
            "pre-trained on the prior box: test parameter MSE (mean over the conductances, in units of "
            f"the defaults) {metrics['test/param_mse']:.5f}"
        )
    return model


def pem_simulator(u: torch.Tensor):
    """theta [3] -> the noise-free V [N] driven by ``u``, differentiable through the HH op's exact
    sensitivities (what the prediction-error method's Gauss-Newton differentiates). A trial the
    twin cannot take (a conductance under- or overflowing in exp(log theta), a state the scheme
    cannot follow) gives NaN, which the solver rejects as a step, instead of an error."""

    def sim(theta: torch.Tensor) -> torch.Tensor:
        if not bool((torch.isfinite(theta) & (theta > 0)).all()):
            return torch.full_like(u, float("nan"))
        return hh.simulate_conductances(theta, u, noise=False, differentiable=True, on_failure="nan")[0]

    return sim


def one_run(model, case: str, run: int, pem: bool, features: bool) -> dict:
    theta0 = torch.tensor(hh.OOD_CONDUCTANCES[case], dtype=torch.float64)
    g = torch.Generator().manual_seed(1000 * (list(hh.OOD_CONDUCTANCES).index(case) + 1) + run)
    u = hh.protocol_current()
    y = hh.simulate_conductances(theta0, generator=g)[0]
    record = Estimates(case, run, theta0)
    report = record.two_stage(model, u, y, run, "TS warm start (trace Gauss-Newton)")
    if "gn_misfit" in report:
        record.entry["gn_misfit"] = report["gn_misfit"]
    if features:
        t = time.perf_counter()
        _, report = model.fine_tune(u, y, seed=run, warm_start="features", gn_iterations=3)
        seconds = time.perf_counter() - t
        record.record("TS fine-tuned (features warm start)", report["theta_fine_tuned"], seconds)
        if "theta_gauss_newton" in report:
            record.record("TS warm start (features, the paper's)", report["theta_gauss_newton"], seconds)
    if pem:
        good = theta0 * (1 + 0.2 * (torch.rand(3, generator=g, dtype=torch.float64) - 0.5))
        poor = (torch.tensor(hh.CONDUCTANCE_PRIOR_LOW) + torch.tensor(hh.CONDUCTANCE_PRIOR_HIGH)).double() / 2
        record.prediction_error(pem_simulator(u), y, {"PEM (good start)": good, "PEM (poor start)": poor})
    return record.entry


def summarise(results: list[dict]) -> dict:
    return summarise_estimates(
        results, hh.OOD_CONDUCTANCES, METHODS, hh.CONDUCTANCES, scale=DEFAULTS.tolist()
    )


def markdown(table: dict) -> str:
    """The table: one row per method, per case the MSE (median) and the RMSE of each conductance."""
    cases = list(table)
    head = ["method"]
    for case in cases:
        head += [f"{case} MSE (median)", f"{case} RMSE gNa / gK / gL"]
    head.append("s / estimate")
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for method in METHODS:
        if not any(method in table[c]["methods"] for c in cases):
            continue
        cells, secs = [method], []
        for case in cases:
            row = table[case]["methods"].get(method)
            if row is None:
                cells += ["", ""]
                continue
            rmse = row["rmse"]
            cells += [
                f"{row['mse']:.4g} ({row['median_sq_error']:.3g})",
                f"{rmse['gNa']:.3g} / {rmse['gK']:.3g} / {rmse['gL']:.3g}",
            ]
            secs.append(row["seconds"])
        cells.append("-".join(dict.fromkeys(f"{s:.2g}" for s in (min(secs), max(secs)))))
        lines.append("| " + " | ".join(cells) + " |")
    gate = "; ".join(f"{c}: {table[c]['gate_flagged']}/{table[c]['runs']}" for c in cases)
    truths = "; ".join(f"{c} = {list(hh.OOD_CONDUCTANCES[c])}" for c in cases)
    return (
        "\n".join(lines)
        + f"\n\nTruths (gNa, gK, gL): {truths}; prior box {list(hh.CONDUCTANCE_PRIOR_LOW)} to "
        f"{list(hh.CONDUCTANCE_PRIOR_HIGH)}. OOD gate flagged {gate}.\n"
    )


def print_tables(table: dict) -> None:
    for case, t in table.items():
        print(
            f"\n{case} theta0 = {list(hh.OOD_CONDUCTANCES[case])}: {t['runs']} runs; "
            f"OOD gate flagged {t['gate_flagged']}/{t['runs']}"
        )
        print(
            f"{'method':38s} {'param MSE':>10s} {'median':>9s} {'RMSE gNa':>9s} {'gK':>7s} {'gL':>7s} "
            f"{'s/estimate':>11s}"
        )
        for method, row in t["methods"].items():
            r = row["rmse"]
            print(
                f"{method:38s} {row['mse']:10.4g} {row['median_sq_error']:9.3g} {r['gNa']:9.3g} "
                f"{r['gK']:7.3g} {r['gL']:7.3g} {row['seconds']:11.2f}"
            )


def plot(results: list[dict], path: Path) -> None:
    plot_estimates(
        results,
        path,
        truths=hh.OOD_CONDUCTANCES,
        parameters=[f"{name} (mS/cm$^2$)" for name in hh.CONDUCTANCES],
        low=hh.CONDUCTANCE_PRIOR_LOW,
        high=hh.CONDUCTANCE_PRIOR_HIGH,
        methods={m: SHORT[m] for m in METHODS},
        title="Hodgkin-Huxley conductances: estimates over Monte Carlo runs (black: truth; grey: prior box)",
        view_margin=0.6,  # a PEM from a poor start may leave the picture
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    if not args.report:
        torch.set_num_threads(1)  # one estimate at a time: the simulator batches are small
        model = pretrained(out, args.epochs, args.n_train, args.quiet)

        def run(case: str, i: int) -> dict:
            return one_run(model, case, i, pem=not args.no_pem, features=not args.no_features)

        results = monte_carlo(results_path, args.cases, args.runs, run, quiet=args.quiet)
    if not results:
        print(f"no results in {results_path}; run without --report first", file=sys.stderr)
        return 1
    table = summarise(results)
    print_tables(table)
    (out / "summary.json").write_text(json.dumps(table, indent=2))
    (out / "table.md").write_text(markdown(table))
    plot(results, out / "estimates.png")
    print(f"\n{markdown(table)}")
    print(f"results: {results_path}; table: {out / 'table.md'}; figure: {out / 'estimates.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
