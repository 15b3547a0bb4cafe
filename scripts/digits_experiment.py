#!/usr/bin/env python3
"""The SMCAE experiment (SPECS.md section 4): does mapping synthetic digits toward the real ones
help a classifier of real digits that has only k real samples per class?

For each k and seed, the data module ``digits_syn2real`` gives 200 synthetic digits per class
(rendered from matplotlib's fonts), k real digits per class, and about 900 held-out real digits.
An SMCAE is trained on the synthetic/real pairs (greedy layer by layer, then end to end), and two
classifiers (logistic regression, a 100-unit MLP) are trained on the k real samples plus

    real         nothing else (the k real samples alone)
    raw          the raw synthetic set
    standardise  the synthetic set with each feature moved to the real samples' mean and spread
    coral        the synthetic set recoloured to the real samples' covariance (CORAL)
    smcae        the SMCAE-transformed synthetic set

and scored on the held-out real digits. Results per (k, seed) are kept in ROOT/results.json as
they finish (an interrupted run resumes); the table goes to ROOT/results.md, the accuracy plot
to ROOT/accuracy.png and the figure of synthetic / transformed / real digits to ROOT/digits.png.

    python3 scripts/digits_experiment.py                        # k = 1, 5, 10 x 5 seeds
    python3 scripts/digits_experiment.py --k 5 --seeds 0 1      # a part of it
    python3 scripts/digits_experiment.py --pairing nearest      # nearest-neighbour pairs instead
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("real", "raw", "standardise", "coral", "smcae")
CLASSIFIERS = ("logreg", "mlp")


def standardise(syn: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Each feature of ``syn`` shifted and scaled to the mean and spread of ``real``."""
    mu_s, sd_s = syn.mean(0), syn.std(0) + 1e-3
    mu_r, sd_r = real.mean(0), real.std(0) + 1e-3
    return np.clip((syn - mu_s) / sd_s * sd_r + mu_r, 0.0, 1.0)


def coral(syn: np.ndarray, real: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    """CORAL (Sun, Feng, Saenko 2016): whiten ``syn`` with its covariance + eps I, recolour with
    the real covariance + eps I, and move it to the real mean."""

    def power(c: np.ndarray, p: float) -> np.ndarray:
        w, v = np.linalg.eigh(c + eps * np.eye(len(c)))
        return (v * np.clip(w, eps, None) ** p) @ v.T

    centred = syn - syn.mean(0)
    mapped = centred @ power(np.cov(syn, rowvar=False), -0.5) @ power(np.cov(real, rowvar=False), 0.5)
    return np.clip(mapped + real.mean(0), 0.0, 1.0)


def classifier(name: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if name == "logreg":
        return LogisticRegression(max_iter=3000)
    return MLPClassifier(hidden_layer_sizes=(100,), max_iter=500, random_state=seed)


def train_smcae(dm, seed: int, epochs: int, layer_epochs: int, lr: float):
    import lightning as L

    from dtwin_autoencoders.smcae import SMCAE

    L.seed_everything(seed, verbose=False)
    model = SMCAE(layer_epochs=layer_epochs, lr=lr)
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, dm)
    return model


def run_one(k: int, seed: int, args) -> tuple[dict, dict]:
    """Accuracies {classifier: {method: acc}} for one (k, seed), and the arrays of the figure."""
    import torch

    from dtwin.data.digits import DigitsSyn2RealDataModule

    dm = DigitsSyn2RealDataModule(k=k, seed=seed, pairing=args.pairing)
    dm.setup()
    d = dm.real_sets()
    start = time.time()
    model = train_smcae(dm, seed, args.epochs, args.layer_epochs, args.lr)
    with torch.no_grad():
        transformed = model.transform(dm.synthetic).numpy()
    seconds = time.time() - start
    syn, ys, real, yr = d["synthetic"], d["synthetic_labels"], d["real_train"], d["real_train_labels"]
    extra = {
        "real": None,
        "raw": syn,
        "standardise": standardise(syn, real),
        "coral": coral(syn, real),
        "smcae": transformed,
    }
    scores: dict = {"smcae_seconds": seconds, "pairing": args.pairing}
    # how many synthetic digits lie nearest the real centroid of their own class, before and after
    centroids = np.stack([real[yr == c].mean(0) for c in range(10)])

    def own_class(x: np.ndarray) -> float:
        nearest = ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        return float((nearest == ys).mean())

    scores["own_centroid"] = {"raw": own_class(syn), "smcae": own_class(transformed)}
    for name in CLASSIFIERS:
        scores[name] = {}
        for method, x in extra.items():
            xs = real if x is None else np.concatenate([x, real])
            ys_ = yr if x is None else np.concatenate([ys, yr])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = classifier(name, seed).fit(xs, ys_)
            scores[name][method] = float(fitted.score(d["real_test"], d["real_test_labels"]))
    pick = [int(np.flatnonzero(ys == c)[0]) for c in range(10)]
    real_pick = [int(np.flatnonzero(d["real_test_labels"] == c)[0]) for c in range(10)]
    figure = {"synthetic": syn[pick], "transformed": transformed[pick], "real": d["real_test"][real_pick]}
    return scores, figure


def _stat(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} +- {100 * statistics.stdev(values):.1f}"


def runs_at(results: dict, k: int) -> list[dict]:
    """The runs of one k (results are keyed "k/seed")."""
    return [v for key, v in results.items() if int(key.split("/")[0]) == k]


def ks_of(results: dict) -> list[int]:
    return sorted({int(key.split("/")[0]) for key in results})


def table(results: dict) -> str:
    lines = []
    for name in CLASSIFIERS:
        lines += [
            f"Held-out real accuracy (%), {name}, mean +- std over seeds:",
            "",
            "| k | seeds | " + " | ".join(METHODS) + " |",
            "| --- | --- | " + " | ".join("---" for _ in METHODS) + " |",
        ]
        for k in ks_of(results):
            runs = runs_at(results, k)
            cells = [_stat([r[name][m] for r in runs]) for m in METHODS]
            lines.append(f"| {k} | {len(runs)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, figure: dict | None, root: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = ks_of(results)
    fig, axes = plt.subplots(1, len(CLASSIFIERS), figsize=(10, 4), sharey=True)
    for ax, name in zip(axes, CLASSIFIERS, strict=True):
        for method in METHODS:
            rows = [[r[name][method] for r in runs_at(results, k)] for k in ks]
            mean = [100 * np.mean(r) for r in rows]
            std = [100 * np.std(r) for r in rows]
            ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=method)
        ax.set(title=name, xlabel="real samples per class k", xscale="log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on held-out real digits (%)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(root / "accuracy.png", dpi=120)
    plt.close(fig)
    if figure is not None:  # from the last run made now (an earlier digits.png stays otherwise)
        fig, axes = plt.subplots(3, 10, figsize=(10, 3.4))
        for row, (label, images) in enumerate(figure.items()):
            for c in range(10):
                axes[row, c].imshow(np.asarray(images[c]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
                axes[row, c].set_xticks([]), axes[row, c].set_yticks([])
            axes[row, 0].set_ylabel(label, fontsize=8)
        fig.tight_layout()
        fig.savefig(root / "digits.png", dpi=120)
        plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from dtwin.data.digits import PAIRINGS

    parser = argparse.ArgumentParser(
        prog="digits_experiment",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python3 scripts/digits_experiment.py --k 5 --seeds 0",
    )
    parser.add_argument("--k", nargs="+", type=int, default=[1, 5, 10], help="real samples per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=80, help="SMCAE epochs in all (default 80)")
    parser.add_argument("--layer-epochs", type=int, default=20, help="SMCAE greedy epochs per layer")
    parser.add_argument("--lr", type=float, default=3e-3, help="SMCAE learning rate (AdamW)")
    parser.add_argument(
        "--pairing",
        choices=PAIRINGS,
        default="random",
        help="the SMCAE's training pairs: a random real digit of the class (the authors'), or the "
        "real digit of the class nearest to the synthetic one",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="where results go (default: runs/digits; runs/digits-nearest with --pairing nearest)",
    )
    args = parser.parse_args(argv)
    if args.root is None:
        args.root = ROOT / "runs" / ("digits" if args.pairing == "random" else f"digits-{args.pairing}")
    if min(args.k) < 1:
        parser.error(f"--k: each k must be >= 1, got {args.k}")
    if args.epochs < 1 or args.layer_epochs < 0 or args.lr <= 0:
        parser.error("--epochs must be >= 1, --layer-epochs >= 0 and --lr > 0")
    args.root.mkdir(parents=True, exist_ok=True)
    store = args.root / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    other = sorted({r.get("pairing", "random") for r in results.values()} - {args.pairing})
    if other:
        parser.error(
            f"--pairing {args.pairing}: {store} holds runs made with pairing {', '.join(other)}; "
            "give another --root"
        )
    figure = None
    todo = [(k, s) for k in args.k for s in args.seeds]
    for i, (k, seed) in enumerate(todo, 1):
        key = f"{k}/{seed}"
        if key in results:
            print(f"[{i}/{len(todo)}] k = {k}, seed {seed}: done before", flush=True)
            continue
        print(f"[{i}/{len(todo)}] k = {k}, seed {seed}: training the SMCAE ...", flush=True)
        results[key], figure = run_one(k, seed, args)
        store.write_text(json.dumps(results, indent=1))
        lr = results[key]["logreg"]
        print("    logreg: " + ", ".join(f"{m} {100 * lr[m]:.1f}" for m in METHODS), flush=True)
        own = results[key]["own_centroid"]
        print(
            f"    nearest their class's real centroid: raw {100 * own['raw']:.1f}%, "
            f"SMCAE-transformed {100 * own['smcae']:.1f}%",
            flush=True,
        )
    text = table(results)
    (args.root / "results.md").write_text(text)
    plot(results, figure, args.root)
    print(text)
    print(f"tables: {args.root / 'results.md'}; plots: accuracy.png, digits.png in {args.root}")


if __name__ == "__main__":
    main()
