"""The ``dtwin`` command.

    dtwin fit|validate|test|predict --model NAME --data NAME [--config FILE] [--trainer.* ...]
    dtwin list [--kind KIND] [--verbose]
    dtwin info
    dtwin simulate hh --n 2000 --out FILE
    dtwin bench [-k EXPR] [--json FILE] [--compare BASE.json --fail-ratio 1.25]

``fit`` and friends are Lightning's LightningCLI with plugin names resolved by the registry
(a full class path works too, in arguments and in config files): Lightning supplies the loop,
checkpoints (``--ckpt_path last`` resumes), loggers, progress bars, precision and DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from dtwin.errors import DtwinError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_NAMED = {"--model": "model", "--data": "data"}
_KIND_OF = {"model": None, "data": "datamodules"}

_HELP = """\
usage: dtwin <command> [options]

dtwin: digital-twin scientific machine learning (simulators, neural operators, estimators).

commands:
  fit | validate | test | predict
                 train or evaluate a model (Lightning's CLI); pick the model and data by their
                 plugin names: dtwin fit --model fno --data hh [--config FILE] [--trainer.max_epochs 10]
                 `dtwin fit --help` lists every option, `--print_config` shows the full config.
  list           the installed plugins: kind, name, distribution, version, status
  info           versions, the compiled kernels (CPU instruction set, CUDA architectures), threads
  simulate       run a twin: dtwin simulate hh --n 2000 --out hh.pt (writes traces and a PNG)
  bench          the benchmark suite (bench/) with a table of ratios against paired references;
                 --json saves the run, --compare BASE.json fails when a ratio worsened (dtwin bench -h)

environment:
  DTWIN_BACKEND=auto|reference|compiled   which kernels dtwin.ops use
  DTWIN_DISABLE_PLUGIN_AUTOLOAD=1         import only the plugins named on the command line
  DTWIN_CACHE_DIR=DIR                     where generated data sets are cached
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_HELP)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command in LIGHTNING_COMMANDS:
            return _lightning(command, rest)
        if command == "list":
            return _list(rest)
        if command == "info":
            return _info(rest)
        if command == "simulate":
            return _simulate(rest)
        if command == "bench":
            return _bench(rest)
    except DtwinError as exc:
        print(f"dtwin {command}: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"dtwin: unknown command {command!r}; the commands are fit, validate, test, predict, list, info, "
        "simulate, bench (dtwin --help)",
        file=sys.stderr,
    )
    return 2


# --------------------------------------------------------------------------------------------
# fit | validate | test | predict


def _resolve(slot: str, value: str) -> str:
    """A registry name (or class path) for --model / --data -> a class path jsonargparse imports."""
    from dtwin import registry

    if "." in value or ":" in value or value.startswith(("{", "[")) or os.path.exists(value):
        return value
    kind = _KIND_OF[slot]
    if kind is None:
        kinds = [k for k in registry.MODEL_KINDS if value in registry.names(k)]
        if not kinds:
            available = {k: registry.names(k) for k in registry.MODEL_KINDS}
            shown = "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in available.items())
            raise registry.UnknownPluginError(
                f"no model plugin named {value!r} ({shown}). A full class path (module.Class) also works."
            )
        kind = kinds[0]
    registry.load(kind, value)  # import now: a broken plugin fails here with a clear message
    return registry.resolve_class_path(kind, value)


def _resolve_config(path: str, tmpdir: str) -> str:
    import yaml

    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    changed = False
    for slot in ("model", "data"):
        entry = config.get(slot) if isinstance(config, dict) else None
        if isinstance(entry, str):
            config[slot] = {"class_path": _resolve(slot, entry)}
            changed = True
        elif isinstance(entry, dict) and isinstance(entry.get("class_path"), str):
            resolved = _resolve(slot, entry["class_path"])
            changed |= resolved != entry["class_path"]
            entry["class_path"] = resolved
    if not changed:
        return path
    out = Path(tmpdir) / Path(path).name
    with open(out, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    return str(out)


def _rewrite_args(args: list[str], tmpdir: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        slot = _NAMED.get(key) or (
            "model" if key == "--model.class_path" else "data" if key == "--data.class_path" else None
        )
        is_config = key in ("--config", "-c")
        if (slot or is_config) and not eq and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        if slot and value:
            out.append(f"{key}={_resolve(slot, value)}")
        elif is_config and value:
            out.append(f"--config={_resolve_config(value, tmpdir)}")
        else:
            out.append(arg)
        i += 1
    return out


def _cli_class():
    from lightning.pytorch.cli import LightningCLI

    class DtwinCLI(LightningCLI):
        """LightningCLI where ``--ckpt_path last`` means the newest last.ckpt of any earlier run
        under the run root (Lightning alone looks only in the new run's version folder)."""

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            if config.get("ckpt_path") != "last":
                return
            root = Path(config.trainer.default_root_dir or "runs")
            found = sorted(root.glob("**/last*.ckpt"), key=lambda p: p.stat().st_mtime)
            if found:
                config.ckpt_path = str(found[-1])
                print(f"dtwin: --ckpt_path last: {found[-1]}", file=sys.stderr)
            else:
                print(
                    f"dtwin: --ckpt_path last: no last.ckpt under {root}/; starting from scratch",
                    file=sys.stderr,
                )
                config.ckpt_path = None

    return DtwinCLI


def _lightning(command: str, args: list[str]) -> int:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from dtwin import registry
    from dtwin.callbacks import MetricsJSON, OperatorReport

    broken = [row for row in registry.autoload() if row.status != "ok"]
    for row in broken:
        print(
            f"dtwin: warning: plugin {row.spec.name!r} ({row.spec.kind}, {row.spec.origin}) is {row.status}: "
            f"{row.error.splitlines()[0] if row.error else ''}",
            file=sys.stderr,
        )
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    with tempfile.TemporaryDirectory(prefix="dtwin-cli-") as tmpdir:
        # LightningCLI (and Lightning's DDP launcher, which re-runs this command in each
        # process) read sys.argv: hand them the arguments with plugin names resolved
        sys.argv[1:] = [command, *_rewrite_args(args, tmpdir)]
        _cli_class()(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults={
                "default_root_dir": "runs",
                # every epoch's end (after its validation, if any): with check_val_every_n_epoch > 1
                # Lightning would save only on validation epochs, and an interrupted run, or a last
                # epoch off that grid, would lose the epochs since
                "callbacks": [
                    ModelCheckpoint(save_last=True, save_on_train_epoch_end=True),
                    MetricsJSON(),
                    OperatorReport(),
                ],
            },
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "prog": "dtwin",
                "description": "dtwin: --model and --data take plugin names (dtwin list) or class paths.",
            },
        )
    return 0


# --------------------------------------------------------------------------------------------
# list, info


def _list(args: list[str]) -> int:
    from dtwin import registry

    parser = argparse.ArgumentParser(prog="dtwin list", description="List the installed dtwin plugins.")
    parser.add_argument("--kind", choices=list(registry.GROUPS), help="only this kind")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the full error of broken plugins")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    opts = parser.parse_args(args)
    rows = registry.status(opts.kind)
    if opts.json:
        print(
            json.dumps(
                [
                    {
                        "kind": r.spec.kind,
                        "name": r.spec.name,
                        "distribution": r.spec.distribution,
                        "version": r.spec.version,
                        "target": r.spec.value,
                        "status": r.status,
                        "error": r.error,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print("no dtwin plugins are installed")
        return 0
    table = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "STATUS", "TARGET")]
    table += [
        (r.spec.kind, r.spec.name, r.spec.distribution, r.spec.version, r.status, r.spec.value) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if r.error:
            detail = r.error if opts.verbose else r.error.splitlines()[0]
            print(f"\n{r.spec.kind}/{r.spec.name} ({r.status}): {detail}")
    if any(r.error for r in rows) and not opts.verbose:
        print("\n(dtwin list --verbose shows full tracebacks)")
    return 0


def info_dict() -> dict[str, Any]:
    import lightning
    import torch

    import dtwin
    from dtwin import ops

    build = ops.build_info()
    from dtwin.ops import _library

    devices = ("cpu", "cuda")
    kernels = {op: [dev for dev in devices if ops.has_kernel(op, dev)] for op in _library.registered_ops()}
    return {
        "dtwin": dtwin.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "lightning": lightning.__version__,
        "extension": "loaded" if ops.extension_loaded() else f"missing ({ops.extension_error()})",
        "cpu_simd": build.get("cpu_simd"),
        "openmp": build.get("openmp"),
        "cuda_compiled": build.get("cuda"),
        "cuda_archs": build.get("cuda_archs"),
        "compiler": build.get("compiler"),
        "threads": torch.get_num_threads(),
        "backend": os.environ.get("DTWIN_BACKEND", "auto"),
        "kernels": kernels,
    }


def _info(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="dtwin info", description="Versions and what dtwin._C was built with."
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    opts = parser.parse_args(args)
    info = info_dict()
    if opts.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if key == "kernels":
            value = "; ".join(f"{op}: {', '.join(devs) or 'reference only'}" for op, devs in value.items())
        print(f"{key.ljust(width)}  {value}")
    return 0


# --------------------------------------------------------------------------------------------
# simulate


def _simulate(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="dtwin simulate",
        description="Run a twin and save its trajectories (a .pt file of tensors) with a PNG of a few "
        "of them.",
    )
    sub = parser.add_subparsers(dest="twin", required=True, metavar="TWIN")
    p = sub.add_parser(
        "hh",
        help="Hodgkin-Huxley neurons driven by the paper's input families",
        description="Simulate N Hodgkin-Huxley neurons (SPECS.md section 1) and save t, the inputs "
        "and V (mV) at the output grid.",
    )
    p.add_argument("--n", type=int, default=2000, help="number of neurons (default 2000)")
    p.add_argument(
        "--out", required=True, help="output file (.pt); a PNG of a few traces is written beside it"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the input draw (default 0)")
    p.add_argument(
        "--family",
        choices=("pulse", "train", "smooth"),
        default="pulse",
        help="inputs: the paper's single pulse, random pulse trains, smooth random waveforms",
    )
    p.add_argument("--points", type=int, default=500, help="output grid points on [0, t_end] (default 500)")
    p.add_argument("--t-end", type=float, default=100.0, help="horizon in ms (default 100)")
    p.add_argument(
        "--method", default="default", help="rush_larsen, rk4, dopri5 or default (dopri5, rtol 1e-5)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    opts = parser.parse_args(args)
    if opts.n < 1:
        parser.error(f"--n must be >= 1, got {opts.n}")
    import torch

    from dtwin.data.hh import generate_hh_dataset

    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = generate_hh_dataset(
        opts.n,
        seed=opts.seed,
        n_points=opts.points,
        t_end=opts.t_end,
        family=opts.family,
        method=opts.method,
        chunk=256,
        progress=True,
    )
    torch.save(data, out)
    print(f"wrote {out} ({opts.n} neurons x {opts.points} points: {', '.join(data)})")
    if not opts.no_plot:
        png = out.with_suffix(".png")
        _plot_traces(data, png)
        print(f"wrote {png}")
    return 0


def _plot_traces(data: dict, path: Path, n: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = data["t"].numpy()
    k = min(n, data["V"].shape[0])
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i in range(k):
        axes[0].plot(t, data["V"][i].numpy(), lw=1)
        axes[1].plot(t, data["current"][i].numpy(), lw=1)
    axes[0].set_ylabel("V (mV)")
    axes[1].set_ylabel("I (uA/cm$^2$)")
    axes[1].set_xlabel("t (ms)")
    axes[0].set_title(f"Hodgkin-Huxley twin: {k} of {data['V'].shape[0]} simulated neurons")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# --------------------------------------------------------------------------------------------
# bench

_BENCH_HELP = """\
Run dtwin's benchmark suite (pytest-benchmark) and print, for every pair, the median time of
dtwin's code, of its reference or peer measured in the same run, and their ratio. Ratios, not
times, are compared against a baseline: a machine that is slower overall moves both members of a
pair alike.

examples:
  dtwin bench -k spectral                          # one suite, table of ratios
  dtwin bench --json base.json                     # save a baseline (on main)
  dtwin bench --compare base.json --fail-ratio 1.25   # exit 1 when a ratio fell by > 1.25x
  dtwin bench --path my_plugin/bench -- -x         # a plugin's own suite; pytest arguments after --
"""


def _default_bench_path() -> Path | None:
    import dtwin

    for candidate in (Path(dtwin.__file__).resolve().parents[1] / "bench", Path.cwd() / "bench"):
        if candidate.is_dir():
            return candidate
    return None


def _bench(args: list[str]) -> int:
    import subprocess

    from dtwin import benchmarking

    parser = argparse.ArgumentParser(
        prog="dtwin bench", description=_BENCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--path",
        action="append",
        help="benchmark file or folder (repeatable; default: bench/ of this dtwin checkout, else ./bench)",
    )
    parser.add_argument("-k", "--filter", help="pytest -k expression selecting benchmarks, e.g. 'hh and f32'")
    parser.add_argument(
        "--json", help="write the run's pytest-benchmark JSON here (default: a temporary file)"
    )
    parser.add_argument(
        "--compare", metavar="BASE.json", help="a baseline from an earlier `dtwin bench --json`"
    )
    parser.add_argument(
        "--fail-ratio",
        type=float,
        default=1.25,
        help="with --compare: fail when a pair's ratio fell by more than this factor (default 1.25)",
    )
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: more pytest arguments")
    opts = parser.parse_args(args)
    if not opts.fail_ratio >= 1.0:
        parser.error(
            f"--fail-ratio must be >= 1 (the factor by which a ratio may fall), got {opts.fail_ratio}"
        )
    base = None
    if opts.compare:
        try:
            base = benchmarking.ratios(benchmarking.load(opts.compare))
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"--compare: {exc}")
    if opts.path:
        paths = [Path(p) for p in opts.path]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            parser.error(f"--path: {', '.join(missing)} does not exist")
    else:
        found = _default_bench_path()
        if found is None:
            parser.error("no bench/ folder next to dtwin or in the current directory; name one with --path")
        paths = [found]
    extra = opts.pytest_args[1:] if opts.pytest_args[:1] == ["--"] else opts.pytest_args
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(opts.json) if opts.json else Path(tmp) / "bench.json"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            *map(str, paths),
            "--benchmark-enable",
            f"--benchmark-json={out}",
        ]
        cmd += ["-p", "no:cacheprovider", "-q", "--benchmark-columns=median,iqr,rounds"]
        if opts.filter:
            cmd += ["-k", opts.filter]
        print("dtwin bench:", " ".join(cmd), flush=True)
        code = subprocess.call([*cmd, *extra])
        if code == 5:
            print(
                f"dtwin bench: no benchmark matched (-k {opts.filter!r}) under {', '.join(map(str, paths))}"
            )
            return 2
        if not out.is_file():
            print(f"dtwin bench: pytest exited with {code} and wrote no results", file=sys.stderr)
            return code or 1
        rows = benchmarking.ratios(benchmarking.load(out))
        if code != 0:
            print(f"dtwin bench: some benchmarks failed (pytest exit {code}); the ratios below omit them")
    print()
    if base is not None:
        print(f"ratios of this run against {opts.compare} (change = new ratio / base ratio; < 1 is slower)")
    for line in benchmarking.format_ratios(rows, base):
        print(line)
    if opts.json:
        print(f"dtwin bench: results saved to {opts.json}")
    if base is None:
        return 1 if code else 0
    regressions = benchmarking.compare(base, rows, opts.fail_ratio)
    for r in regressions:
        print(
            f"REGRESSION: {r.pair} vs {r.baseline}: ratio {r.new_ratio:.2f}x, was {r.base_ratio:.2f}x "
            f"({r.factor:.2f}x worse > {opts.fail_ratio})"
        )
    if regressions:
        print(f"dtwin bench: {len(regressions)} pair(s) regressed beyond --fail-ratio {opts.fail_ratio}")
        return 1
    print(f"dtwin bench: no pair regressed beyond --fail-ratio {opts.fail_ratio} ({len(rows)} compared)")
    return 1 if code else 0
