#!/usr/bin/env python3
"""The Hodgkin-Huxley operator-learning experiment (SPECS.md section 1) across operators and seeds.

Each run is the documented pair of commands, with the seed and the data size as overrides:

    dtwin fit  --config configs/hh/OP.yaml --seed_everything S --data.n_samples N --data.n_train 0.8N
               --trainer.default_root_dir ROOT/OP/nN/seedS
    dtwin test (the same) --ckpt_path last

then, for N = 2000, two tests beyond the paper: zero-shot super-resolution (the test set on 1000
points instead of 500: --data.n_points 1000; not for WNO, whose weights hold the coefficients of
the 500-point grid) and out-of-family inputs (random trains of 4 pulses: --data.family train; not
for the paper's DeepONet, whose branch reads one pulse's parameters). Every run's report.json is
kept as ROOT/OP/nN/seedS/<test>.json; the collected tables go to ROOT/results.md and
ROOT/results.json, the data-efficiency plot to ROOT/data_efficiency.png.

Interrupted? Run the same command again: finished runs are skipped, a fit that stopped resumes
from its last checkpoint.

    python3 scripts/hh_experiment.py                      # 3 operators x 3 seeds at 2000 samples
    python3 scripts/hh_experiment.py --samples 1000 2000 4000 8000 --seeds 0   # the sweep
    python3 scripts/hh_experiment.py --report             # only collect what exists
    python3 scripts/hh_experiment.py --report --merge docs/hh/results.json   # plus earlier results

--merge starts the tables from the records of an earlier results.json (for example the one kept in
docs/hh/, whose runs are not in a fresh checkout); a run found under ROOT replaces the merged record
of the same operator, size and seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from dtwin.experiments import newest, read_results

ROOT = Path(__file__).resolve().parent.parent
OPERATORS = ("fno", "wno", "deeponet")
PAPER = {  # test relative L2 (%) of Centofanti et al., by samples
    "fno": {2000: 1.43, 8000: 0.97},
    "deeponet": {2000: 2.20, 8000: 1.63},
    "wno": {2000: 3.30, 8000: 1.83},
}
PAPER_EPOCHS = {"fno": 2000, "wno": 2000, "deeponet": 10000}
#: the tests of a run: name -> extra overrides (None: the operator cannot take that input)
TESTS = {
    "test": [],
    "superres-1000": ["--data.n_points", "1000"],
    "trains": ["--data.family", "train"],
}


#: (operator, test) pairs that cannot run, and why
NOT_APPLICABLE = {
    ("deeponet", "trains"): "n/a (reads one pulse's parameters)",
    ("wno", "superres-1000"): "n/a (weights hold 500-point coefficients)",
}


def run_dir(root: Path, op: str, n: int, seed: int) -> Path:
    return root / op / f"n{n}" / f"seed{seed}"


def overrides(op: str, n: int, seed: int, directory: Path, epochs: int | None) -> list[str]:
    args = [
        "--config",
        str(ROOT / "configs" / "hh" / f"{op}.yaml"),
        "--seed_everything",
        str(seed),
        "--data.n_samples",
        str(n),
        "--data.n_train",
        str(int(0.8 * n)),
        "--trainer.default_root_dir",
        str(directory),
    ]
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
    return args


def dtwin(*args: str, quiet: bool) -> None:
    command = [sys.executable, "-m", "dtwin", *args]
    print("  $ dtwin " + " ".join(args), flush=True)
    env = dict(os.environ)
    if quiet:
        command += ["--trainer.enable_progress_bar", "false"]
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"hh_experiment: `dtwin {args[0]}` failed (exit {result.returncode}); see above")


def run_one(root: Path, op: str, n: int, seed: int, epochs: int | None, extras: bool, quiet: bool) -> None:
    directory = run_dir(root, op, n, seed)
    directory.mkdir(parents=True, exist_ok=True)
    common = overrides(op, n, seed, directory, epochs)
    if not (directory / "fit.done").is_file():
        resume = ["--ckpt_path", "last"] if newest(directory, "last*.ckpt") else []
        start = time.perf_counter()
        dtwin("fit", *common, *resume, quiet=quiet)
        metrics = newest(directory, "metrics.json")
        fit = json.loads(metrics.read_text()).get("fit", {}) if metrics else {}
        (directory / "fit.done").write_text(
            json.dumps({"wall_seconds": time.perf_counter() - start, **fit}, indent=2)
        )
    for name, extra in TESTS.items():
        if name != "test" and (not extras or (op, name) in NOT_APPLICABLE):
            continue
        target = directory / f"{name}.json"
        if target.is_file():
            continue
        before = time.time()
        dtwin("test", *common, *extra, "--ckpt_path", "last", quiet=quiet)
        report = newest(directory, "report.json")
        if report is None or report.stat().st_mtime < before:
            raise SystemExit(f"hh_experiment: the test run of {directory} wrote no report.json")
        shutil.copy(report, target)
        shutil.copy(report.with_name("predictions.png"), directory / f"{name}.png")


# --------------------------------------------------------------------------------------------
# collecting


def collect(root: Path) -> dict:
    results: dict = {}
    for op in OPERATORS:
        for size_dir in sorted((root / op).glob("n*")):
            n = int(size_dir.name[1:])
            entry: dict = {"seeds": {}}
            for seed_dir in sorted(size_dir.glob("seed*")):
                seed = int(seed_dir.name[4:])
                record = {}
                for name in TESTS:
                    path = seed_dir / f"{name}.json"
                    if path.is_file():
                        record[name] = json.loads(path.read_text())
                done = seed_dir / "fit.done"
                if done.is_file():
                    record["fit"] = json.loads(done.read_text())
                if record:
                    entry["seeds"][seed] = record
            if entry["seeds"]:
                results.setdefault(op, {})[n] = entry
    return results


def merge(earlier: dict, results: dict) -> dict:
    """The records of an earlier results.json, with every (operator, size, seed) of ``results`` over them."""
    merged: dict = {}
    for source in (earlier, results):
        for op, sizes in source.items():
            for n, entry in sizes.items():
                seeds = merged.setdefault(op, {}).setdefault(int(n), {"seeds": {}})["seeds"]
                seeds.update({int(seed): record for seed, record in entry["seeds"].items()})
    return {op: dict(sorted(sizes.items())) for op, sizes in merged.items()}


def _stat(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values) * 100
    if len(values) == 1:
        return f"{mean:.2f}%"
    return f"{mean:.2f}% +- {statistics.stdev(values) * 100:.2f}"


def tables(results: dict) -> str:
    lines = [
        "| operator | test rel. L2 (mean +- std, seeds) | seeds | paper | parameters | epochs "
        "| s/epoch (fastest run) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for op in OPERATORS:
        entry = results.get(op, {}).get(2000)
        if not entry:
            continue
        seeds = entry["seeds"].values()
        errors = [s["test"]["rel_l2_mean"] for s in seeds if "test" in s]
        params = next((f"{s['test']['parameters']:,}" for s in seeds if "test" in s), "-")
        fits = [s["fit"] for s in seeds if "fit" in s]
        epochs = ", ".join(sorted({str(f.get("epoch")) for f in fits})) or "-"
        per_epoch = [f["seconds_per_epoch"] for f in fits if "seconds_per_epoch" in f]
        timing = f"{min(per_epoch):.2f}" if per_epoch else "-"  # load from other jobs only adds time
        paper = f"{PAPER[op][2000]:.2f}% ({PAPER_EPOCHS[op]} epochs)"
        lines.append(f"| {op} | {_stat(errors)} | {len(errors)} | {paper} | {params} | {epochs} | {timing} |")
    lines += [
        "",
        "| operator | test (500 points) | zero-shot on 1000 points | random 4-pulse trains |",
        "| --- | --- | --- | --- |",
    ]
    for op in OPERATORS:
        entry = results.get(op, {}).get(2000)
        if not entry:
            continue
        seeds = entry["seeds"].values()
        cells = []
        for name in TESTS:
            values = [s[name]["rel_l2_mean"] for s in seeds if name in s]
            cells.append(NOT_APPLICABLE.get((op, name)) or _stat(values))
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    sizes = sorted({n for op in results.values() for n in op})
    if len(sizes) > 1:
        lines += ["", "| samples | " + " | ".join(OPERATORS) + " |", "| --- |" + " --- |" * len(OPERATORS)]
        for n in sizes:
            row = []
            for op in OPERATORS:
                seeds = results.get(op, {}).get(n, {}).get("seeds", {}).values()
                ours = _stat([s["test"]["rel_l2_mean"] for s in seeds if "test" in s])
                paper = PAPER[op].get(n)
                row.append(f"{ours} (paper {paper:.2f}%)" if paper else ours)
            lines.append(f"| {n} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> bool:
    sizes = sorted({n for op in results.values() for n in op})
    if len(sizes) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for op, color in zip(OPERATORS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
        points = [
            (n, [s["test"]["rel_l2_mean"] * 100 for s in entry["seeds"].values() if "test" in s])
            for n, entry in sorted(results.get(op, {}).items())
        ]
        points = [(n, v) for n, v in points if v]
        if points:
            ax.plot(
                [n for n, _ in points], [statistics.mean(v) for _, v in points], "o-", color=color, label=op
            )
        paper = sorted(PAPER[op].items())
        ax.plot([n for n, _ in paper], [v for _, v in paper], "x:", color=color, label=f"{op} (paper)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("samples (80% for training)")
    ax.set_ylabel("test relative L2 (%)")
    ax.set_title("Hodgkin-Huxley operator: data efficiency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="hh_experiment",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python3 scripts/hh_experiment.py --operators fno --seeds 0 1 2",
    )
    parser.add_argument("--operators", nargs="+", default=list(OPERATORS), choices=OPERATORS)
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (the data set is fixed)"
    )
    parser.add_argument("--samples", nargs="+", type=int, default=[2000], help="data set sizes (80%% train)")
    parser.add_argument(
        "--epochs",
        nargs="*",
        default=[],
        metavar="OP=N",
        help="override a config's max_epochs, e.g. fno=2000",
    )
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "hh", help="where runs are kept")
    parser.add_argument(
        "--no-extras", action="store_true", help="skip the super-resolution and pulse-train tests"
    )
    parser.add_argument("--report", action="store_true", help="only collect existing runs into the tables")
    parser.add_argument("--quiet", action="store_true", help="no progress bars inside the runs")
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="RESULTS_JSON",
        help="start from an earlier results.json (e.g. docs/hh/results.json); runs under --root win",
    )
    args = parser.parse_args(argv)
    earlier = read_results(args.merge, OPERATORS, parser.error) if args.merge is not None else {}
    epochs = {}
    for item in args.epochs:
        op, _, value = item.partition("=")
        if op not in OPERATORS or not value.isdigit():
            parser.error(f"--epochs takes OP=N with OP one of {OPERATORS}, got {item!r}")
        epochs[op] = int(value)
    for n in args.samples:
        if n < 10:
            parser.error(f"--samples: each size must be >= 10, got {n}")
    if not args.report:
        runs = [(op, n, s) for n in args.samples for s in args.seeds for op in args.operators]
        for i, (op, n, seed) in enumerate(runs, 1):
            print(f"[{i}/{len(runs)}] {op}, {n} samples, seed {seed}", flush=True)
            run_one(
                args.root,
                op,
                n,
                seed,
                epochs.get(op),
                extras=n == 2000 and not args.no_extras,
                quiet=args.quiet,
            )
    results = merge(earlier, collect(args.root))
    text = tables(results)
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "results.md").write_text(text)
    (args.root / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(text)
    if plot(results, args.root / "data_efficiency.png"):
        print(f"plot: {args.root / 'data_efficiency.png'}")
    print(f"tables: {args.root / 'results.md'}")


if __name__ == "__main__":
    main()
