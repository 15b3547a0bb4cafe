#!/usr/bin/env python3
"""The DRIP experiment (SPECS.md section 2): learned convex regularizers against classical and
learned baselines on five imaging tasks, with held-out images.

Tasks (32 x 32 grayscale patches of scikit-image's natural images by default; split by image, so
no test image is seen in training; noise as a percentage of the mean |A x| of each sample):

  blur1, blur5, blur10   Gaussian blur (sigma 2 pixels) at 1%, 5%, 10% noise
  inpainting             11% of the pixels observed (a fixed random mask), 5% noise
  tomography             parallel-beam Radon transform at 18 angles over 180 degrees, 5% noise

Methods:

  tikhonov   min 1/2||A x - y||^2 + lam/2 ||grad x||^2, lam chosen on the validation split (PSNR)
  tv         min 1/2||A x - y||^2 + lam TV(x), x in [0, 1] (Chambolle-Pock), lam as above
  tv-dp      the same with lam per sample by the discrepancy principle (misfit = tau x noise)
  unet       U-Net post-processor (configs/drip/unet_post.yaml; width 8, depth 2: 29k parameters,
             10x DRIP's: at DRIP's budget a U-Net would have 2 channels)
  unrolled   unrolled proximal-gradient network at DRIP's parameter budget
             (configs/drip/unrolled_pg.yaml; its width is chosen to match)
  drip       DRIP (configs/drip/drip.yaml): x = E z*, z* the minimiser of a learned convex
             problem, trained through z* implicitly, starting from a smoothed TV with the tv
             row's lambda (model.tv_init; --set drip:model.tv_init=null starts at random)
  drip-dp    the same model, its inner solve (from z = 0) stopped by the discrepancy principle
             at a misfit of tau x the noise level (the DRIP authors' rule; no extra training)

Each learned model is trained by ``dtwin fit`` in ROOT/TASK/METHOD (resumable: run the same
command again after an interruption: finished fits are skipped, a stopped fit resumes from its
last checkpoint). Then every method is evaluated on the test split: mean PSNR and SSIM, the
fraction of samples whose misfit ||A x_hat - y|| is within tau = 1.2 x the noise level sigma
sqrt(M) (the discrepancy bound), the parameter count, and the peak memory of one training step
(learned methods; the growth of the process's peak resident memory on a CPU, of
``torch.cuda.max_memory_allocated`` on a GPU). Writes ROOT/results.json, ROOT/results.md and
ROOT/reconstructions.png (truth, data and every method's reconstruction of one test sample per
task, from every task evaluated so far).

    python3 scripts/drip_experiment.py                             # everything
    python3 scripts/drip_experiment.py --tasks blur5 --methods tikhonov drip
    python3 scripts/drip_experiment.py --report                    # evaluate what exists
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from dtwin.experiments import newest, parse_overrides, resumable_fit

ROOT = Path(__file__).resolve().parent.parent
#: task -> (operator, operator_args, noise)
TASKS: dict[str, tuple[str, dict[str, Any], float]] = {
    "blur1": ("blur", {"sigma": 2.0}, 0.01),
    "blur5": ("blur", {"sigma": 2.0}, 0.05),
    "blur10": ("blur", {"sigma": 2.0}, 0.10),
    "inpainting": ("inpainting", {"observed": 0.11, "seed": 0}, 0.05),
    "tomography": ("tomography", {"n_angles": 18}, 0.05),
}
CLASSICAL = ("tikhonov", "tv", "tv-dp")
#: learned method -> (config name, registry name)
LEARNED = {"unet": "unet_post", "unrolled": "unrolled_pg", "drip": "drip"}
METHODS = (*CLASSICAL, *LEARNED, "drip-dp")
LAMBDAS = [10.0**e for e in torch.arange(-5.0, 1.01, 0.5).tolist()]
TAU = 1.2


def config_path(method: str) -> Path:
    return ROOT / "configs" / "drip" / f"{LEARNED[method]}.yaml"


def load_config(method: str) -> dict:
    return yaml.safe_load(config_path(method).read_text())


def task_args(task: str) -> list[str]:
    """The command-line overrides that put a config on ``task`` (data and model alike)."""
    op, op_args, noise = TASKS[task]
    flow = json.dumps(op_args)
    return [
        *("--data.operator", op, "--model.operator", op),
        *("--data.operator_args", flow, "--model.operator_args", flow),
        *("--data.noise", str(noise)),
    ]


def data_module(task: str, overrides: dict[str, str], splits: tuple[str, ...] = ("fit", "test")):
    """The configs' data module on ``task`` (with the ``data.*`` overrides), set up."""
    from dtwin.data.images import ImagePatchesDataModule

    op, op_args, noise = TASKS[task]
    init = dict(load_config("drip")["data"]["init_args"])
    init.update(operator=op, operator_args=op_args, noise=noise)
    init.update({k[5:]: yaml.safe_load(v) for k, v in overrides.items() if k.startswith("data.")})
    dm = ImagePatchesDataModule(**init)
    for stage in splits:
        dm.setup(stage)
    return dm


def split_tensors(dm, split: str) -> dict[str, torch.Tensor]:
    return dict(dm.datasets[split].tensors)


def drip_budget(overrides: dict[str, str]) -> int:
    from dtwin_estimators.drip import DRIP

    init = dict(load_config("drip")["model"]["init_args"])
    init.update({k[6:]: yaml.safe_load(v) for k, v in overrides.items() if k.startswith("model.")})
    return DRIP(**init).num_parameters()


def learned_args(method: str, task: str, epochs: int | None, extra: list[str], budget: int) -> list[str]:
    args = ["--config", str(config_path(method)), *task_args(task)]
    if method == "unrolled":
        from dtwin_estimators.recon_nets import UnrolledPG, width_for_budget

        init = dict(load_config(method)["model"]["init_args"])
        init.pop("width", None)
        args += ["--model.width", str(width_for_budget(UnrolledPG, budget, **init))]
    if epochs:
        args += ["--trainer.max_epochs", str(epochs)]
    return [*args, *extra]


def tv_start(task: str, overrides: dict[str, str]) -> list[str]:
    """DRIP's starting point on ``task``: ``--model.tv_init LAM``, LAM the TV weight with the best
    validation PSNR (the tv row's search, for its isotropic TV with a box constraint: a good, not an
    exact, weight for DRIP's smoothed anisotropic start). Not called where a finished fit is
    skipped or ``--set drip:model.tv_init=...`` chooses (``null``: a random start)."""
    from dtwin.nn import select_lambda

    dm = data_module(task, overrides, splits=("fit",))
    val = split_tensors(dm, "val")
    lam, _ = select_lambda("total_variation", dm.operator, val["y"].double(), val["x"].double(), LAMBDAS)
    print(f"  DRIP starts at TV with lam {lam:.3g} (best on the validation split)", flush=True)
    return ["--model.tv_init", repr(float(lam))]


# ------------------------------------------------------------------------------------ evaluation


def peak_training_memory(method: str, checkpoint: str, task: str, overrides: dict[str, str]) -> float | None:
    """Bytes one training step (forward, loss, backward on 16 training samples) of the model in
    ``checkpoint`` adds to the peak memory of the process it runs in, or None where it cannot be
    measured. Call it in a fresh process (``dtwin.benchmarking.call_in_child``)."""
    from dtwin import registry
    from dtwin.benchmarking import peak_memory_growth

    model = registry.load_checkpoint(LEARNED[method], checkpoint, kind="estimators")
    dm = data_module(task, overrides, splits=("fit",))
    batch = {k: v[:16] for k, v in split_tensors(dm, "train").items()}

    def step():
        model.train()
        model.zero_grad(set_to_none=True)
        model.loss(model(batch), batch["x"]).backward()

    step()  # warm up: the operator norm cache, the convolution primitives
    return peak_memory_growth(step)


def batched(fn, data: dict[str, torch.Tensor], size: int = 64) -> torch.Tensor:
    n = data["y"].shape[0]
    return torch.cat([fn({k: v[i : i + size] for k, v in data.items()}) for i in range(0, n, size)])


def metrics(x_hat: torch.Tensor, data: dict[str, torch.Tensor], A) -> dict[str, Any]:
    from dtwin.models.losses import psnr, ssim
    from dtwin_estimators.reconstruction import misfit_ratio

    x = data["x"].double()
    x_hat = x_hat.double()
    ratio = misfit_ratio(A, x_hat, data["y"].double(), data["sigma"].double())
    p = psnr(x_hat, x)
    return {
        "psnr": float(p.mean()),
        "psnr_std": float(p.std()) if p.numel() > 1 else 0.0,
        "ssim": float(ssim(x_hat, x).mean()),
        "fits_data": float((ratio <= TAU + 1e-6).double().mean()),
        "misfit_ratio_median": float(ratio.median()),
    }


def evaluate_classical(method: str, dm, val: dict, test: dict) -> tuple[dict, torch.Tensor]:
    from dtwin.nn import discrepancy_lambda, select_lambda, tikhonov, total_variation

    A = dm.operator
    y_val, y_test = val["y"].double(), test["y"].double()
    start = time.perf_counter()
    if method == "tv-dp":
        result = discrepancy_lambda("total_variation", A, y_test, test["sigma"].double(), tau=TAU)
        x_hat, info = result.x, {"lam_median": float(result.lam.median())}
    else:
        fn = tikhonov if method == "tikhonov" else total_variation
        name = "tikhonov" if method == "tikhonov" else "total_variation"
        lam, table = select_lambda(name, A, y_val, val["x"].double(), LAMBDAS)
        x_hat = fn(A, y_test, lam)
        info = {"lam": lam, "val_psnr_by_lam": {f"{k:.1e}": v for k, v in table.items()}}
    seconds = time.perf_counter() - start
    return {**metrics(x_hat, test, A), **info, "parameters": 0, "eval_seconds": seconds}, x_hat


def evaluate_learned(
    method: str, directory: Path, dm, test: dict, task: str, overrides: dict[str, str]
) -> tuple[dict, torch.Tensor] | None:
    from dtwin import registry
    from dtwin.benchmarking import call_in_child

    ckpt = newest(directory, "last*.ckpt")
    if ckpt is None or not (directory / "fit.done").is_file():
        return None
    model = registry.load_checkpoint(LEARNED[method], ckpt, kind="estimators")
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        x_hat = batched(model, test)
    seconds = time.perf_counter() - start
    fit = json.loads((directory / "fit.done").read_text())
    out = {
        **metrics(x_hat, test, dm.operator),
        "parameters": model.num_parameters(),
        "eval_seconds": seconds,
        "train_seconds": fit.get("wall_seconds"),
        "epochs": fit.get("epoch"),
    }
    peak = call_in_child(__file__, "peak_training_memory", method, str(ckpt), task, overrides, cwd=ROOT)
    out["train_peak_MiB"] = None if peak is None else peak / 2**20
    if method == "drip":
        out["inner_iterations_mean"] = _inner_iterations(model, test)
    return out, x_hat


def evaluate_drip_dp(directory: Path, dm, test: dict) -> tuple[dict, torch.Tensor] | None:
    """The trained DRIP model with its inner solve stopped by the discrepancy principle."""
    from dtwin import registry

    ckpt = newest(directory, "last*.ckpt")
    if ckpt is None or not (directory / "fit.done").is_file():
        return None
    model = registry.load_checkpoint("drip", ckpt, kind="estimators").eval()
    model.hparams.discrepancy = True
    start = time.perf_counter()
    with torch.no_grad():
        x_hat = batched(model, test)
    out = {
        **metrics(x_hat, test, dm.operator),
        "parameters": model.num_parameters(),
        "eval_seconds": time.perf_counter() - start,
        "inner_iterations_mean": _inner_iterations(model, test),
    }
    return out, x_hat


def _inner_iterations(model, test: dict) -> float:
    with torch.no_grad():
        result = model.solve(test["y"][:64], test["sigma"][:64])
    return float(result.iterations.float().mean())


# ----------------------------------------------------------------------------------- reporting


def data_image(A, y: torch.Tensor) -> torch.Tensor:
    """Something to show for the data of one sample: the image itself (blur), the observed pixels
    (inpainting, others blank) or the sinogram (tomography)."""
    if tuple(y.shape) == tuple(A.in_shape):
        return y[0]
    if y.dim() == 2:  # a sinogram [angles, detectors]
        return y
    return A.adjoint(y[None].double())[0, 0]


def figure(path: Path, panels: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(panels)
    columns = ["truth", "data", *[m for m in METHODS if any(m in panels[t] for t in tasks)]]
    fig, axes = plt.subplots(len(tasks), len(columns), figsize=(1.6 * len(columns), 1.75 * len(tasks)))
    axes = [axes] if len(tasks) == 1 else axes
    for row, task in zip(axes, tasks, strict=True):
        for ax, col in zip(row, columns, strict=True):
            ax.set_xticks([])
            ax.set_yticks([])
            entry = panels[task].get(col)
            if entry is None:
                ax.set_axis_off()
                continue
            image, label = entry
            ax.imshow(image.cpu().float().numpy(), cmap="gray", vmin=0 if col != "data" else None)
            ax.set_title(label, fontsize=7)
        row[0].set_ylabel(task, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: dict) -> str:
    lines = [
        "| task | method | PSNR (dB) | SSIM | fits data | parameters | train peak MiB | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, by_method in results.items():
        for method in METHODS:
            r = by_method.get(method)
            if r is None:
                continue
            peak = r.get("train_peak_MiB")
            train = r.get("train_seconds")
            lines.append(
                f"| {task} | {method} | {r['psnr']:.2f} | {r['ssim']:.3f} | {100 * r['fits_data']:.0f}% | "
                f"{r['parameters']} | {'-' if peak is None else f'{peak:.0f}'} | "
                f"{'-' if train is None else f'{train:.0f}'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=None, help="override every learned model's max_epochs")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "config overrides (YAML values) for every learned run and the data, e.g. data.n_train=64, "
            "or for one method's runs only, e.g. drip:model.max_iter=50"
        ),
    )
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "drip", help="where runs and results go")
    parser.add_argument("--report", action="store_true", help="only evaluate the runs that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bars inside the runs")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    scoped: dict[str, list[str]] = {m: [] for m in LEARNED}
    common = []
    for item in args.set:
        method, sep, rest = item.partition(":")
        if sep and method in LEARNED:
            scoped[method].append(rest)
        elif sep and "=" not in method:
            parser.error(f"--set: {item!r} names no learned method (one of {list(LEARNED)}) before ':'")
        else:
            common.append(item)
    overrides, extra = parse_overrides(common, parser.error)
    own = {m: parse_overrides(scoped[m], parser.error) for m in LEARNED}
    args.root.mkdir(parents=True, exist_ok=True)
    budget = drip_budget({**overrides, **own["drip"][0]})
    tv_given = "model.tv_init" in {**overrides, **own["drip"][0]}  # else tv_start picks it per task

    if not args.report:
        for task in args.tasks:
            for method in args.methods:
                if method in LEARNED or (method == "drip-dp" and "drip" not in args.methods):
                    fitted = "drip" if method == "drip-dp" else method
                    print(f"[{task} / {fitted}]", flush=True)
                    start = []
                    if (
                        fitted == "drip"
                        and not tv_given
                        and not (args.root / task / "drip" / "fit.done").is_file()
                    ):
                        start = tv_start(task, overrides)
                    resumable_fit(
                        learned_args(fitted, task, args.epochs, [*start, *extra, *own[fitted][1]], budget),
                        args.root / task / fitted,
                        quiet=args.quiet,
                        owner="drip_experiment",
                        cwd=ROOT,
                    )

    path = args.root / "results.json"
    (args.root / "panels").mkdir(exist_ok=True)
    panels: dict[str, dict[str, Any]] = {}
    for task in args.tasks:
        print(f"[{task}] evaluating", flush=True)
        dm = data_module(task, overrides)
        val, test = split_tensors(dm, "val"), split_tensors(dm, "test")
        A = dm.operator
        show = int(torch.argsort(test["x"].flatten(1).std(1))[len(test["x"]) // 2])  # a typical patch
        panels[task] = {
            "truth": (test["x"][show, 0], "truth"),
            "data": (data_image(A, test["y"][show]), f"data ({100 * TASKS[task][2]:.0f}% noise)"),
        }
        by_method: dict[str, Any] = {}
        for method in args.methods:
            if method in CLASSICAL:
                out = evaluate_classical(method, dm, val, test)
            elif method == "drip-dp":
                out = evaluate_drip_dp(args.root / task / "drip", dm, test)
                if out is None:
                    continue
            else:
                out = evaluate_learned(method, args.root / task / method, dm, test, task, overrides)
                if out is None:
                    print(f"  {method}: no finished fit under {args.root / task / method}; skipped")
                    continue
            record, x_hat = out
            by_method[method] = record
            p = float(10 * math.log10(1 / max(1e-20, float((x_hat[show] - test["x"][show]).square().mean()))))
            panels[task][method] = (x_hat[show, 0], f"{method} {p:.1f} dB")
            print(
                f"  {method}: PSNR {record['psnr']:.2f} dB, SSIM {record['ssim']:.3f}, "
                f"fits data {100 * record['fits_data']:.0f}%",
                flush=True,
            )
        # merged into the file as it is now (another run may have written other tasks meanwhile)
        results = json.loads(path.read_text()) if path.is_file() else {}
        results.setdefault(task, {}).update(by_method)
        path.write_text(json.dumps(results, indent=2))
        torch.save(panels[task], args.root / "panels" / f"{task}.pt")
    results = json.loads(path.read_text()) if path.is_file() else {}
    results = {t: results[t] for t in TASKS if t in results}
    (args.root / "results.md").write_text(table(results))
    shown = {
        t: torch.load(args.root / "panels" / f"{t}.pt")
        for t in TASKS
        if (args.root / "panels" / f"{t}.pt").is_file()
    }
    figure(args.root / "reconstructions.png", shown)
    print(table(results))


if __name__ == "__main__":
    main()
