"""What the experiment scripts (scripts/*_experiment.py) share: resumable ``dtwin fit`` runs, one
directory per run, and ``--set KEY=VALUE`` config overrides.

A run directory holds Lightning's versions (checkpoints, metrics) and, once its fit finished, a
``fit.done`` marker (JSON: the wall seconds and the fit's metrics.json record). Calling
:func:`resumable_fit` again skips a finished run and resumes a stopped one from its newest
``last.ckpt`` (``dtwin fit`` checkpoints at every epoch's end), so an interrupted experiment
loses at most the epoch in flight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["newest", "parse_overrides", "resumable_fit", "run_dtwin"]

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
