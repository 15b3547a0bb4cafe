"""Performance-regression helpers: ratios of paired benchmarks, comparison against a baseline run,
and a plugin's training step as a benchmarkable callable.

A benchmark joins a pair through pytest-benchmark's ``extra_info``: ``pair`` (a label shared by
the members) and ``role`` (``'dtwin'`` for the measured code, anything else for its reference or
peer). Ratios are ``baseline time / dtwin time`` within one run, so they survive a slower or
noisier machine; a regression is a ratio that fell by more than a factor against a baseline run.

    dtwin bench --json new.json --compare base.json --fail-ratio 1.25
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Ratio",
    "Regression",
    "call_in_child",
    "compare",
    "format_ratios",
    "load",
    "peak_memory_growth",
    "ratios",
    "training_step",
]


@dataclass(frozen=True)
class Ratio:
    pair: str
    baseline: str  # the other role's name
    dtwin_s: float  # median seconds
    baseline_s: float

    @property
    def ratio(self) -> float:
        return self.baseline_s / self.dtwin_s

    @property
    def key(self) -> tuple[str, str]:
        return (self.pair, self.baseline)


@dataclass(frozen=True)
class Regression:
    pair: str
    baseline: str
    base_ratio: float
    new_ratio: float

    @property
    def factor(self) -> float:
        """How many times worse the ratio got (> 1 is worse)."""
        return self.base_ratio / self.new_ratio


def load(path: str | Path) -> list[dict[str, Any]]:
    """The benchmarks of a pytest-benchmark JSON file (``--benchmark-json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark JSON {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
        benchmarks = data["benchmarks"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a pytest-benchmark JSON file (written by --benchmark-json or "
            f"dtwin bench --json): {exc}"
        ) from exc
    return benchmarks


def _median(entry: Any) -> float:
    stats = entry["stats"] if isinstance(entry, Mapping) else entry.stats
    return float(stats["median"] if isinstance(stats, Mapping) else stats.median)


def _info(entry: Any) -> Mapping[str, Any]:
    return entry["extra_info"] if isinstance(entry, Mapping) else entry.extra_info


def ratios(benchmarks: Iterable[Any]) -> list[Ratio]:
    """Every (pair, baseline role) of the run with the dtwin member's and the baseline's medians.
    Takes JSON entries (:func:`load`) or pytest-benchmark's live objects."""
    pairs: dict[str, dict[str, float]] = defaultdict(dict)
    for b in benchmarks:
        info = _info(b)
        if "pair" in info:
            pairs[info["pair"]][info.get("role", "dtwin")] = _median(b)
    out = []
    for label in sorted(pairs):
        roles = pairs[label]
        if "dtwin" not in roles:
            continue
        for role in sorted(roles):
            if role != "dtwin":
                out.append(Ratio(label, role, roles["dtwin"], roles[role]))
    return out


def compare(base: Iterable[Ratio], new: Iterable[Ratio], fail_ratio: float = 1.25) -> list[Regression]:
    """The pairs whose ratio fell by more than ``fail_ratio`` from ``base`` to ``new`` (pairs in
    only one of the runs are ignored)."""
    if not fail_ratio >= 1.0:
        raise ValueError(f"fail_ratio must be >= 1 (a factor by which a ratio may fall), got {fail_ratio!r}")
    old = {r.key: r.ratio for r in base}
    worse = []
    for r in new:
        if r.key in old and old[r.key] / r.ratio > fail_ratio:
            worse.append(Regression(r.pair, r.baseline, old[r.key], r.ratio))
    return worse


def format_ratios(rows: Iterable[Ratio], base: Iterable[Ratio] | None = None) -> list[str]:
    """Table lines: pair, dtwin median, baseline, its median, ratio (and the base run's ratio)."""
    old = {r.key: r.ratio for r in base} if base is not None else None
    head = f"{'pair':52s} {'dtwin':>10s}  {'baseline':28s} {'baseline t':>10s} {'ratio':>7s}"
    lines = [head + (f" {'base ratio':>10s} {'change':>7s}" if old is not None else "")]
    for r in rows:
        line = (
            f"{r.pair[:52]:52s} {r.dtwin_s * 1e3:8.2f}ms  {r.baseline[:28]:28s} "
            f"{r.baseline_s * 1e3:8.2f}ms {r.ratio:6.2f}x"
        )
        if old is not None:
            if r.key in old:
                line += f" {old[r.key]:9.2f}x {r.ratio / old[r.key]:6.2f}x"
            else:
                line += f" {'(new)':>10s}"
        lines.append(line)
    return lines


def training_step(model: Any, batch: Mapping[str, Any] | None = None) -> Callable[[], Any]:
    """One optimizer step of a dtwin LightningModule outside a Trainer, as a callable to time:
    zero the gradients, ``training_step`` on ``batch`` (default: ``model.example_batch()``),
    backward, step the first optimizer of ``configure_optimizers``. Plugins that optimise
    manually (``automatic_optimization = False``) need a Trainer and are refused."""
    import torch

    batch = dict(model.example_batch() if batch is None else batch)
    if not getattr(model, "automatic_optimization", True):
        raise TypeError(
            f"{type(model).__name__} optimises manually (automatic_optimization = False): its training "
            "step needs a Trainer; time trainer.fit with max_steps instead"
        )
    configured = model.configure_optimizers()
    optimizer = _first_optimizer(configured)
    if optimizer is None:
        raise TypeError(
            f"{type(model).__name__}.configure_optimizers() returned {type(configured).__name__}; "
            "expected an optimizer, a list of them, or a dict with 'optimizer'"
        )
    model.train()

    def step():
        with warnings.catch_warnings():
            # self.log without a Trainer warns once per call; the step itself is what is timed
            warnings.filterwarnings("ignore", message=".*self.log.*")
            optimizer.zero_grad(set_to_none=True)
            loss = model.training_step(batch, 0)
            if isinstance(loss, Mapping):
                loss = loss["loss"]
            if not isinstance(loss, torch.Tensor):
                raise TypeError(
                    f"{type(model).__name__}.training_step returned {type(loss).__name__}, not a loss"
                )
            loss.backward()
            optimizer.step()
        return loss

    return step


def _first_optimizer(configured: Any) -> Any:
    import torch

    if isinstance(configured, torch.optim.Optimizer):
        return configured
    if isinstance(configured, Mapping):
        return _first_optimizer(configured.get("optimizer"))
    if isinstance(configured, (list, tuple)) and configured:
        return _first_optimizer(configured[0])
    return None


_STATUS = Path("/proc/self/status")


def _rss_kib(field: str) -> int | None:
    """VmRSS or VmHWM of this process in KiB (Linux), else None."""
    import re

    try:
        match = re.search(rf"{field}:\s+(\d+) kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def peak_memory_growth(fn: Callable[[], Any], device: str = "cpu") -> float | None:
    """Bytes by which ``fn()`` raises the peak memory: on CUDA the growth of
    ``torch.cuda.max_memory_allocated`` over what was allocated before; on a Linux CPU the growth
    of this process's peak resident memory (VmHWM, reset to the current RSS through
    /proc/self/clear_refs) over its resident memory before: everything the call touched, the
    allocator's caching and freed-but-kept pages included (glibc keeps small frees: set
    MALLOC_MMAP_THRESHOLD_ in a fresh process for a tighter figure). None where neither works."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    base = _rss_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
    except OSError:
        return None
    fn()
    hwm = _rss_kib("VmHWM")
    return None if base is None or hwm is None else 1024.0 * (hwm - base)


def call_in_child(path: str | Path, function: str, *args: Any, cwd: str | Path | None = None) -> Any:
    """``function(*args)`` of the Python file ``path``, run in a fresh child process (so that a
    peak-memory figure is not hidden by pages this process already holds; glibc is told to give
    freed tensors back with MALLOC_MMAP_THRESHOLD_). ``args`` and the result must be literals
    (numbers, strings, None, lists, dicts). Raises RuntimeError with the child's stderr on failure."""
    import ast
    import os
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('_dtwin_child', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['_dtwin_child'] = module\n"
        "spec.loader.exec_module(module)\n"
        f"print(repr(module.{function}(*{args!r})))\n"
    )
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"call_in_child: {path}:{function} failed:\n{out.stderr[-3000:]}")
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])
