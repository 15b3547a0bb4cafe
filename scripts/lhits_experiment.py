#!/usr/bin/env python3
"""The L-HiTS experiment (SPECS.md section 5) on the Kuramoto-Sivashinsky and FitzHugh-Nagumo twins.

For each system, three models are trained with the documented configs, each run being

    dtwin fit --config configs/lhits/SYSTEM-MODEL.yaml --trainer.default_root_dir ROOT/SYSTEM/VARIANT

  lhits        L-HiTS: autoencoder first, then each flow map on the frozen latent coordinates
  lhits-joint  the same model trained jointly (--model.joint true --model.ae_epochs 0)
  hits         full-state HiTS: the same class with an identity encoder

then evaluated here on the held-out test trajectories (after the step exponents of every model
are selected by one criterion: the validation MSE of rollouts over windows of --select-horizon
samples): the MSE of the multiscale rollout over
the whole horizon from each trajectory's first state, and the wall time of that rollout against
the solver's (ETDRK4 for KS, at the data module's fine step) for the same initial states and
horizon, best of --repeats. The autoencoder is also compared with PCA for latent sizes
--latent-sizes (autoencoder-only runs, ROOT/SYSTEM/ae-dK): the test reconstruction MSE.

Writes ROOT/results.json, ROOT/results.md and, per system, ROOT/SYSTEM-spacetime.png (truth,
predictions and errors of one test trajectory), ROOT/SYSTEM-error-vs-time.png (the test MSE at
each time: chaos amplifies every error, the autoencoder's at t = 0 included) and
ROOT/SYSTEM-ae-vs-pca.png.

Interrupted? Run the same command again: finished fits are skipped, a stopped fit resumes from
its last checkpoint, and the evaluation is recomputed from the checkpoints.

    python3 scripts/lhits_experiment.py                         # KS and FHN, everything
    python3 scripts/lhits_experiment.py --systems ks --variants lhits hits --latent-sizes
    python3 scripts/lhits_experiment.py --report                # only evaluate what exists
    python3 scripts/lhits_experiment.py --systems fhn --variants --latent-sizes 1 2 3 \\
        --merge docs/lhits/results.json             # only autoencoders, over the kept records

--merge starts each system's record from an earlier results.json (for example the one kept in
docs/lhits/, whose runs are not in a fresh checkout): a model or latent size evaluated here
replaces the earlier entry, the others are kept. The solver's time is the earlier one when no
model of that system was evaluated here (the kept speed-ups were measured against it). A system
not evaluated here keeps its record from ROOT/results.json, or else from the merged file, so the
file written is the whole record.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from dtwin.experiments import newest, parse_overrides, read_results, resumable_fit

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("ks", "fhn")
#: variant -> (config of the system's model, extra overrides)
VARIANTS = {
    "lhits": ("lhits", []),
    "lhits-joint": (
        "lhits",
        ["--model.joint", "true", "--model.ae_epochs", "0", "--trainer.max_epochs", "80"],
    ),
    "hits": ("hits", []),
}
#: fractions of the horizon at which the running MSE is reported
HORIZONS = (0.02, 0.1, 0.25, 0.5, 1.0)
#: the authors' KS figures (per their code, latent size 8): wall seconds, rollout MSE
PAPER = {"ks": {"hits": (20.6, 3.2e-3), "lhits": (3.03, 1.42e-3)}}


def config_path(system: str, model: str) -> Path:
    return ROOT / "configs" / "lhits" / f"{system}-{model}.yaml"


def dtwin_fit(args: list[str], directory: Path, quiet: bool) -> None:
    """``dtwin fit ARGS`` into ``directory``, resumed from its last checkpoint, once."""
    resumable_fit(args, directory, quiet=quiet, owner="lhits_experiment", cwd=ROOT)


def load_model(directory: Path):
    from dtwin import registry

    path = newest(directory, "last*.ckpt")
    if path is None or not (directory / "fit.done").is_file():
        return None
    return registry.load_checkpoint("latent_hits", path, kind="autoencoders").eval()


def data_module(system: str, overrides: dict[str, str]):
    """The system's data module with the settings of its L-HiTS config (shared by every model) and
    the ``data.*`` overrides."""
    from dtwin import registry

    spec = yaml.safe_load(config_path(system, "lhits").read_text())["data"]
    init = dict(spec.get("init_args", {}))
    init.update({k[5:]: yaml.safe_load(v) for k, v in overrides.items() if k.startswith("data.")})
    dm = registry.load("datamodules", spec["class_path"])(**init)
    dm.setup()
    return dm


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def pca_errors(train: torch.Tensor, test: torch.Tensor, sizes: list[int]) -> dict[int, float]:
    """Test reconstruction MSE of PCA with k components fitted on training states."""
    mean = train.mean(0)
    _, _, v = torch.linalg.svd((train - mean).double(), full_matrices=False)
    out = {}
    for k in sizes:
        basis = v[:k].T.to(test.dtype)
        centred = test - mean
        out[k] = float((centred @ basis @ basis.T - centred).pow(2).mean())
    return out


def merge_record(earlier: dict | None, fresh: dict) -> dict:
    """One system's record: ``earlier`` (from a results.json) with what ``fresh`` evaluated over it."""
    if not earlier:
        return fresh
    out = {**earlier, **{k: fresh[k] for k in ("n_test", "n_steps", "dt")}}
    out["models"] = {**earlier.get("models", {}), **fresh["models"]}
    if not fresh["models"]:  # nothing timed here: the kept speed-ups refer to the earlier solver time
        out["solver"] = earlier.get("solver", fresh["solver"])
    else:
        out["solver"] = fresh["solver"]
        out.pop("lhits_speedup_vs_hits", None)
        if "lhits_speedup_vs_hits" in fresh:
            out["lhits_speedup_vs_hits"] = fresh["lhits_speedup_vs_hits"]
    rec = earlier.get("reconstruction", {})
    out["reconstruction"] = {  # by latent size, int keys as in ``fresh`` (JSON's are strings)
        kind: dict(sorted({**{int(k): v for k, v in rec.get(kind, {}).items()}, **new}.items()))
        for kind, new in fresh["reconstruction"].items()
    }
    return out


def evaluate(
    system: str,
    root: Path,
    variants: list[str],
    sizes: list[int],
    repeats: int,
    overrides: dict[str, str],
    select_horizon: int,
    earlier: dict | None = None,
) -> dict:
    dm = data_module(system, overrides)
    x, val = dm.datasets["test"].tensors["x"], dm.datasets["val"].tensors["x"]
    x0, n_steps = x[:, 0], x.shape[1] - 1
    result: dict = {"n_test": len(x), "n_steps": n_steps, "dt": dm.dt, "models": {}}

    solver_time = best_time(lambda: dm.simulate(x0, n_steps), repeats)
    result["solver"] = {"wall_seconds": solver_time}
    predictions = {}
    for variant in variants:
        model = load_model(root / system / variant)
        if model is None:
            continue
        with torch.inference_mode():
            horizon = min(select_horizon, val.shape[1] - 1)
            model.select_steps(val, horizon=horizon)  # every model by the same criterion
            pred = model.rollout(x0, n_steps)
            seconds = best_time(lambda m=model: m.rollout(x0, n_steps), repeats)
        predictions[variant] = pred
        sq = (pred - x).pow(2)
        result["models"][variant] = {
            "mse": float(sq.mean()),
            "mse_first_half": float(sq[:, : n_steps // 2 + 1].mean()),
            # the MSE over the first fraction of the horizon: chaos amplifies every error with time
            "mse_by_horizon": {f: float(sq[:, : int(f * n_steps) + 1].mean()) for f in HORIZONS},
            "mse_at_t0": float(sq[:, 0].mean()),
            "wall_seconds": seconds,
            "speedup_vs_solver": solver_time / seconds,
            "exponents": model.selected_exponents(),
            "latent_size": model.hparams.latent_size,
            "parameters": model.num_parameters(),
        }
    models = result["models"]
    if "lhits" in models and "hits" in models:
        result["lhits_speedup_vs_hits"] = models["hits"]["wall_seconds"] / models["lhits"]["wall_seconds"]

    train = dm.datasets["train"].tensors["x"]
    states = train[:, :: max(1, train.shape[1] // 200)].reshape(-1, train.shape[2])
    test_states = x.reshape(-1, x.shape[2])
    pca = pca_errors(states, test_states, sizes)
    ae = {}
    for k in sizes:
        model = load_model(root / system / f"ae-d{k}")
        if model is not None:
            with torch.inference_mode():
                ae[k] = float((model.decode(model.encode(test_states)) - test_states).pow(2).mean())
    result["reconstruction"] = {"pca": pca, "autoencoder": ae}
    result = merge_record(earlier, result)
    rec = result["reconstruction"]
    figures(system, root, dm, x, predictions, rec["pca"], rec["autoencoder"])
    return result


def figures(system: str, root: Path, dm, x, predictions: dict, pca: dict, ae: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = torch.arange(x.shape[1]) * dm.dt
    panels = [("truth", x[0])]
    for variant, pred in predictions.items():
        panels += [(variant, pred[0]), (f"{variant} error", pred[0] - x[0])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), sharey=True, squeeze=False)
    vmax = float(x[0].abs().max())
    for ax, (title, field) in zip(axes[0], panels, strict=True):
        image = ax.imshow(
            field.T.numpy(),
            aspect="auto",
            origin="lower",
            cmap="RdBu_r",
            vmin=-vmax,
            vmax=vmax,
            extent=(0, float(t[-1]), 0, field.shape[1]),
            interpolation="nearest",
        )
        ax.set_title(title)
        ax.set_xlabel("t")
    axes[0][0].set_ylabel("state index (grid" + (", u then v)" if system == "fhn" else ")"))
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(f"{system.upper()}: a held-out trajectory, {x.shape[1] - 1} steps of dt = {dm.dt}", y=1.04)
    fig.savefig(root / f"{system}-spacetime.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    if predictions:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for variant, pred in predictions.items():
            ax.semilogy(t.numpy(), (pred - x).pow(2).mean((0, 2)).numpy(), label=variant)
        ax.axhline(float(x.var()), color="gray", ls="--", lw=1, label="variance of the data")
        ax.set_xlabel("t")
        ax.set_ylabel("MSE at time t (test mean)")
        ax.set_title(f"{system.upper()}: rollout error against time")
        ax.legend(fontsize=8)
        fig.savefig(root / f"{system}-error-vs-time.png", dpi=110, bbox_inches="tight")
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.semilogy(list(pca), list(pca.values()), "o-", label="PCA")
    if ae:
        ax.semilogy(list(ae), list(ae.values()), "s-", label="autoencoder")
    ax.set_xlabel("latent size")
    ax.set_ylabel("test reconstruction MSE")
    ax.set_title(system.upper())
    ax.legend()
    fig.savefig(root / f"{system}-ae-vs-pca.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def tables(results: dict) -> str:
    lines = []
    for system, r in results.items():
        lines += [
            f"### {system.upper()} ({r['n_test']} test trajectories, {r['n_steps']} steps of dt = {r['dt']})",
            "",
            "| model | rollout MSE | "
            + " | ".join(f"MSE to t = {f * r['n_steps'] * r['dt']:.3g}" for f in HORIZONS[:-1])
            + " | MSE at t = 0 | wall time (s) | vs solver | steps used (k) | paper |",
            "| --- |" + " --- |" * (len(HORIZONS) + 5),
            "| solver | 0 | " + "0 | " * len(HORIZONS) + f"{r['solver']['wall_seconds']:.3f} | 1x | | |",
        ]
        for variant, m in r["models"].items():
            paper = PAPER.get(system, {}).get(variant)
            cited = f"MSE {paper[1]:.3g}, {paper[0]} s" if paper else ""
            ks = f"{m['exponents'][0]}..{m['exponents'][-1]}"
            by = " | ".join(f"{v:.3g}" for v in list(m["mse_by_horizon"].values())[:-1])
            lines.append(
                f"| {variant} | {m['mse']:.3g} | {by} | {m['mse_at_t0']:.2g} | {m['wall_seconds']:.3f} | "
                f"{m['speedup_vs_solver']:.1f}x | {ks} | {cited} |"
            )
        if "lhits_speedup_vs_hits" in r:
            lines += [
                "",
                f"L-HiTS is {r['lhits_speedup_vs_hits']:.1f}x faster than full-state HiTS (paper: 6.8x).",
            ]
        rec = r["reconstruction"]
        sizes = list(rec["pca"])
        lines += [
            "",
            "| latent size | " + " | ".join(str(k) for k in sizes) + " |",
            "| --- |" + " --- |" * len(sizes),
            "| PCA | " + " | ".join(f"{rec['pca'][k]:.3g}" for k in sizes) + " |",
            "| autoencoder | "
            + " | ".join(f"{rec['autoencoder'][k]:.3g}" if k in rec["autoencoder"] else "" for k in sizes)
            + " |",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="L-HiTS vs full-state HiTS vs the solver on KS and FHN (SPECS.md section 5); resumable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument(
        "--variants",
        nargs="*",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="models to train and evaluate (none: only the autoencoder-vs-PCA comparison)",
    )
    parser.add_argument(
        "--latent-sizes",
        nargs="*",
        type=int,
        default=list(range(1, 11)),
        help="latent sizes of the autoencoder-vs-PCA comparison (none: skip it)",
    )
    parser.add_argument("--ae-epochs", type=int, default=60, help="epochs of each autoencoder-only run")
    parser.add_argument("--epochs", type=int, default=None, help="override every model's max_epochs")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every run, e.g. data.n_train=50 model.windows=4 (YAML values)",
    )
    parser.add_argument(
        "--select-horizon",
        type=int,
        default=1024,
        help="samples per validation rollout when the step exponents of every model are (re)selected",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (the best is kept)")
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "lhits", help="where runs are kept")
    parser.add_argument("--report", action="store_true", help="only evaluate the runs that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bars inside the runs")
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="RESULTS_JSON",
        help="start from an earlier results.json (e.g. docs/lhits/results.json); what is evaluated here wins",
    )
    args = parser.parse_args(argv)
    earlier = {}
    if args.merge is not None:
        earlier = read_results(
            args.merge, SYSTEMS, parser.error, valid=lambda r: isinstance(r, dict) and "reconstruction" in r
        )
    if any(k < 1 for k in args.latent_sizes):
        parser.error(f"--latent-sizes must be >= 1, got {args.latent_sizes}")
    overrides, extra_args = parse_overrides(args.set, parser.error)
    args.root.mkdir(parents=True, exist_ok=True)

    if not args.report:
        for system in args.systems:
            for variant in args.variants:
                model, extra = VARIANTS[variant]
                epochs = ["--trainer.max_epochs", str(args.epochs)] if args.epochs else []
                print(f"[{system} / {variant}]", flush=True)
                dtwin_fit(
                    ["--config", str(config_path(system, model)), *extra, *epochs, *extra_args],
                    args.root / system / variant,
                    args.quiet,
                )
            for k in args.latent_sizes:
                print(f"[{system} / autoencoder, latent size {k}]", flush=True)
                only_ae = [
                    "--config",
                    str(config_path(system, "lhits")),
                    "--model.latent_size",
                    str(k),
                    "--model.ae_epochs",
                    str(args.ae_epochs),
                    "--trainer.max_epochs",
                    str(args.ae_epochs),
                    "--trainer.limit_val_batches",
                    "0",
                    *extra_args,
                ]
                dtwin_fit(only_ae, args.root / system / f"ae-d{k}", args.quiet)

    results = {}
    for system in args.systems:
        print(f"[{system}] evaluating", flush=True)
        results[system] = evaluate(
            system,
            args.root,
            args.variants,
            args.latent_sizes,
            args.repeats,
            overrides,
            args.select_horizon,
            earlier.get(system),
        )
    path = args.root / "results.json"
    # every system: this run's, then what ROOT already held, then the --merge file's
    merged = {**earlier, **(json.loads(path.read_text()) if path.is_file() else {}), **results}
    path.write_text(json.dumps(merged, indent=2))
    (args.root / "results.md").write_text(tables(merged))
    print(tables(merged))


if __name__ == "__main__":
    main()
