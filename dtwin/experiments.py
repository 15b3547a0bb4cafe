"""What the experiment scripts (scripts/*_experiment.py) share: resumable ``dtwin fit`` runs, one
directory per run, and ``--set KEY=VALUE`` config overrides.

A run directory holds Lightning's versions (checkpoints, metrics) and, once its fit finished, a
``fit.done`` marker (JSON: the wall seconds and the fit's metrics.json record). Calling
:func:`resumable_fit` again skips a finished run and resumes a stopped one from its newest
``last.ckpt`` (``dtwin fit`` checkpoints at every epoch's end), so an interrupted experiment
loses at most the epoch in flight.

The estimation experiments (Monte Carlo runs of an estimator on out-of-distribution truths)
share :func:`pretrain` (an estimator trained once, resumable, kept as a checkpoint),
:func:`monte_carlo` (runs appended to a JSON file as each finishes, finished ones skipped) and
:class:`Estimates` (each method's estimate and seconds of one run, the two-stage estimator's
stages and the prediction-error baselines), :func:`summarise_estimates` (the per-case table) and
:func:`plot_estimates` (estimates against the truth and the prior box).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Estimates",
    "monte_carlo",
    "newest",
    "parse_overrides",
    "plot_estimates",
    "pretrain",
    "read_results",
    "resumable_fit",
    "run_dtwin",
    "summarise_estimates",
]

_SECTIONS = ("data.", "model.", "trainer.")


def newest(directory: Path, pattern: str) -> Path | None:
    """The most recently modified file matching ``pattern`` anywhere under ``directory``, or None."""
    found = sorted(Path(directory).glob(f"**/{pattern}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def run_dtwin(command: str, args: list[str], *, quiet: bool = False, owner: str = "dtwin", cwd=None) -> None:
    """``python -m dtwin COMMAND ARGS`` in a child process (its output streams through); raises
    SystemExit naming ``owner`` when it fails."""
    full = [sys.executable, "-m", "dtwin", command, *args]
    if quiet:
        full += ["--trainer.enable_progress_bar", "false"]
    print(f"  $ dtwin {command} " + " ".join(full[4:]), flush=True)
    result = subprocess.run(full, cwd=cwd, env=dict(os.environ))
    if result.returncode != 0:
        raise SystemExit(f"{owner}: `dtwin {command}` failed (exit {result.returncode}); see above")


def resumable_fit(
    args: list[str], directory: Path, *, quiet: bool = False, owner: str = "dtwin", cwd=None
) -> dict[str, Any]:
    """``dtwin fit ARGS`` into ``directory`` once: skipped when its ``fit.done`` exists, resumed
    from the newest last.ckpt when one exists. Returns the ``fit.done`` record."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    done = directory / "fit.done"
    if done.is_file():
        return json.loads(done.read_text() or "{}")
    resume = ["--ckpt_path", "last"] if newest(directory, "last*.ckpt") else []
    start = time.perf_counter()
    full = [*args, "--trainer.default_root_dir", str(directory), *resume]
    run_dtwin("fit", full, quiet=quiet, owner=owner, cwd=cwd)
    metrics = newest(directory, "metrics.json")
    fit = json.loads(metrics.read_text()).get("fit", {}) if metrics else {}
    record = {"wall_seconds": time.perf_counter() - start, **fit}
    done.write_text(json.dumps(record, indent=2))
    return record


def parse_overrides(items: Iterable[str], error: Callable[[str], Any]) -> tuple[dict[str, str], list[str]]:
    """``KEY=VALUE`` items (KEY under data., model. or trainer.; VALUE as YAML) -> (the dict, the
    matching ``--KEY VALUE`` command-line arguments). Calls ``error(message)`` (e.g. an argparse
    parser's ``error``) on a malformed item."""
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith(_SECTIONS):
            error(f"--set takes KEY=VALUE with KEY under data., model. or trainer., got {item!r}")
        overrides[key] = value
    return overrides, [a for key, value in overrides.items() for a in (f"--{key}", value)]


def read_results(
    path: Path,
    names: Sequence[str],
    error: Callable[[str], Any],
    *,
    valid: Callable[[Any], bool] = lambda record: True,
) -> dict[str, Any]:
    """An experiment's earlier results.json (``--merge``): a dict keyed by ``names`` (operators,
    systems...) whose every record passes ``valid``. Calls ``error(message)`` (e.g. an argparse
    parser's ``error``) when it cannot be read or is not such a file."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        error(f"--merge: cannot read a results.json at {path}: {exc}")
    if not isinstance(results, dict) or not all(name in names and valid(r) for name, r in results.items()):
        error(f"--merge: {path} is not a results.json of this script ({', '.join(names)})")
    return results


# ------------------------------------------------------------------------- estimation experiments


def pretrain(
    out: Path,
    model: Any,
    data: Any,
    epochs: int,
    *,
    checkpoint: str = "pretrained.ckpt",
    quiet: bool = False,
    **trainer: Any,
):
    """``model`` (a LightningModule) trained on ``data`` for ``epochs``, then tested: (the model in
    eval mode, the test metrics). Resumable: a checkpoint in ``out/train/last.ckpt`` at every
    epoch's end; the finished model is saved as ``out/CHECKPOINT``, and a later call loads it
    (the metrics are then None). ``trainer``: more keyword arguments of ``lightning.Trainer``."""
    import warnings

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    out = Path(out)
    final = out / checkpoint
    if final.is_file():
        return type(model).load_from_checkpoint(final, map_location="cpu").eval(), None
    last = out / "train" / "last.ckpt"
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*Total length of `DataLoader`.*")
    fit = L.Trainer(
        max_epochs=epochs,
        default_root_dir=str(out),
        logger=False,
        enable_progress_bar=not quiet,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=out / "train", save_last=True, save_top_k=0)],
        **trainer,
    )
    fit.fit(model, data, ckpt_path=str(last) if last.is_file() else None)
    metrics = fit.test(model, data, verbose=False)[0]
    fit.save_checkpoint(final)
    return model.eval(), metrics


def monte_carlo(
    results_path: Path,
    cases: Iterable[str],
    runs: int,
    one_run: Callable[[str, int], dict],
    *,
    quiet: bool = False,
) -> list[dict]:
    """Every (case, run) for run in range(runs) that ``results_path`` (a JSON list of entries with
    'case' and 'run') does not hold yet, by ``one_run(case, run)``; the file is rewritten after each
    run, so an interrupted experiment loses at most the run in flight. Returns all entries."""
    from tqdm import tqdm

    results_path = Path(results_path)
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["case"], r["run"]) for r in results}
    todo = [(c, r) for c in cases for r in range(runs) if (c, r) not in done]
    for case, run in tqdm(todo, desc="Monte Carlo runs", disable=quiet):
        results.append(one_run(case, run))
        results_path.write_text(json.dumps(results))
    return results


class Estimates:
    """One Monte Carlo run's record: ``entry`` (a JSON-able dict: 'case', 'run', 'theta0',
    'estimates' and 'seconds' by method, and what the stages add)."""

    def __init__(self, case: str, run: int, theta0: Any) -> None:
        self.entry: dict = {"case": case, "run": run, "theta0": [float(v) for v in theta0]}
        self.entry.update(estimates={}, seconds={})

    def record(self, method: str, theta: Any, seconds: float) -> None:
        self.entry["estimates"][method] = [float(v) for v in theta]
        self.entry["seconds"][method] = seconds

    def two_stage(
        self, model: Any, u: Any, y: Any, seed: int, warm_start_name: str, **fine_tune: Any
    ) -> dict:
        """The two-stage estimator on (u, y): 'TS pre-trained', then ``model.fine_tune`` as 'TS
        fine-tuned' and its warm start as ``warm_start_name`` (both timed as the whole fine-tuning);
        the OOD gate's verdict and the seconds per stage go into the entry, whatever they say.
        Returns the fine-tuning report."""
        import torch

        t = time.perf_counter()
        with torch.no_grad():
            pre = model({"u": u[None].float(), "y": y[None].float()})[0].double()
        self.record("TS pre-trained", pre, time.perf_counter() - t)
        t = time.perf_counter()
        _, report = model.fine_tune(u, y, seed=seed, **fine_tune)
        seconds = time.perf_counter() - t
        self.entry["gate"] = {k: report[k] for k in ("gate_statistic", "gate_dof", "gate_p_value", "verdict")}
        self.entry["stage_seconds"] = report["seconds"]
        self.record("TS fine-tuned", report["theta_fine_tuned"], seconds)
        if "theta_gauss_newton" in report:
            self.record(warm_start_name, report["theta_gauss_newton"], seconds)
        return report

    def prediction_error(self, simulate: Callable, y: Any, starts: dict[str, Any]) -> None:
        """The prediction-error method (Gauss-Newton on ``simulate``) from each named start."""
        from dtwin.estimation import prediction_error_method

        for method, start in starts.items():
            t = time.perf_counter()
            theta, _ = prediction_error_method(simulate, y, start)
            self.record(method, theta, time.perf_counter() - t)


def plot_estimates(
    results: list[dict],
    path: Path,
    *,
    truths: dict[str, Sequence[float]],
    parameters: Sequence[str],
    low: Sequence[float],
    high: Sequence[float],
    methods: dict[str, str],
    title: str,
    view_margin: float | None = None,
) -> None:
    """The estimates of every method over the Monte Carlo runs, a box plot per case (rows, the
    cases of ``truths`` that ``results`` has) and parameter (columns), the runs as jittered points,
    the truth as a black line and the prior box [low, high] as a grey band; saved to ``path``.
    ``methods``: the methods to show (those that ``results`` has), name -> short axis label.
    ``view_margin``: each axis shows the truth and the box with this fraction of their span on each
    side, so that a diverged estimate cannot squash them (it may leave the picture); None shows
    every estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    cases = [c for c in truths if any(r["case"] == c for r in results)]
    shown = [m for m in methods if any(m in r["estimates"] for r in results)]
    fig, axes = plt.subplots(len(cases), len(parameters), figsize=(15, 3.8 * len(cases)), squeeze=False)
    jitter = torch.Generator().manual_seed(0)
    for i, case in enumerate(cases):
        runs = [r for r in results if r["case"] == case]
        for j, name in enumerate(parameters):
            ax = axes[i][j]
            data = [[r["estimates"][m][j] for r in runs if m in r["estimates"]] for m in shown]
            ax.boxplot(data, showfliers=False)
            for k, d in enumerate(data):
                offsets = (torch.rand(len(d), generator=jitter) - 0.5).tolist()
                ax.plot([k + 1 + 0.3 * q for q in offsets], d, ".", ms=3, alpha=0.6)
            truth = truths[case][j]
            ax.axhline(truth, color="k", lw=1.2, label="truth")
            ax.axhspan(low[j], high[j], color="0.9", zorder=0, label="prior box")
            if view_margin is not None:
                lo, hi = min(low[j], truth), max(high[j], truth)
                ax.set_ylim(lo - view_margin * (hi - lo), hi + view_margin * (hi - lo))
            ax.set_xticks(range(1, len(shown) + 1), [methods[m] for m in shown], fontsize=8)
            ax.set_title(f"{case}: {name}")
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise_estimates(
    results: list[dict],
    cases: Iterable[str],
    methods: Iterable[str],
    parameters: Sequence[str],
    scale: Sequence[float] | None = None,
    over_parameters: str = "sum",
) -> dict:
    """Per case (in ``cases`` order, those ``results`` has): {'runs', 'gate_flagged' (runs whose OOD
    gate said 'out of distribution'), 'methods': per method that has estimates: {'mse': the mean
    over runs of the squared error of (theta_hat - theta0) / scale, summed over the parameters
    (``over_parameters='sum'``, ||.||^2) or averaged over them ('mean', the tanks paper's code),
    'median_sq_error' (the same per-run error, its median), 'rmse': per parameter, in its units,
    'seconds': mean per estimate, 'runs'}}. ``scale`` (default ones) puts parameters of
    different sizes on one footing (e.g. the HH defaults)."""
    import torch

    if over_parameters not in ("sum", "mean"):
        raise ValueError(
            f"summarise_estimates: over_parameters must be 'sum' or 'mean', got {over_parameters!r}"
        )
    table: dict = {}
    for case in cases:
        runs = [r for r in results if r["case"] == case]
        if not runs:
            continue
        rows = {}
        for method in methods:
            have = [r for r in runs if method in r["estimates"]]
            if not have:
                continue
            diff = torch.tensor([r["estimates"][method] for r in have], dtype=torch.float64) - torch.tensor(
                [r["theta0"] for r in have], dtype=torch.float64
            )
            scaled = diff if scale is None else diff / torch.tensor(scale, dtype=torch.float64)
            sq = scaled.pow(2)
            errs = (sq.sum(1) if over_parameters == "sum" else sq.mean(1)).tolist()
            rmse = diff.pow(2).mean(0).sqrt().tolist()
            rows[method] = {
                "mse": statistics.fmean(errs),
                "median_sq_error": statistics.median(errs),
                "rmse": dict(zip(parameters, rmse, strict=True)),
                "seconds": statistics.fmean(r["seconds"][method] for r in have),
                "runs": len(have),
            }
        flagged = sum(r.get("gate", {}).get("verdict") == "out of distribution" for r in runs)
        table[case] = {"methods": rows, "gate_flagged": flagged, "runs": len(runs)}
    return table
