"""dtwin.benchmarking and ``dtwin bench``: ratios of paired benchmarks, regressions against a
baseline, a plugin's training step as a callable, and the command end to end on a tiny suite."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from dtwin import benchmarking
from dtwin.cli import main


def _entry(pair, role, median):
    return {"name": f"{pair}-{role}", "extra_info": {"pair": pair, "role": role}, "stats": {"median": median}}


def _write(path, entries):
    path.write_text(json.dumps({"benchmarks": entries}))
    return path


def test_ratios_pair_each_baseline_with_the_dtwin_member():
    rows = benchmarking.ratios(
        [
            _entry("a", "dtwin", 1.0),
            _entry("a", "peer", 3.0),
            _entry("a", "ref", 0.5),
            _entry("b", "peer", 1.0),
        ]
    )
    assert [(r.pair, r.baseline, r.ratio) for r in rows] == [("a", "peer", 3.0), ("a", "ref", 0.5)]


def test_compare_flags_only_ratios_that_fell_beyond_the_threshold():
    base = benchmarking.ratios(
        [
            _entry("a", "dtwin", 1.0),
            _entry("a", "peer", 4.0),
            _entry("b", "dtwin", 1.0),
            _entry("b", "peer", 2.0),
        ]
    )
    # the machine got twice as slow overall (b): no regression; a's dtwin code got 2x slower alone
    new = benchmarking.ratios(
        [
            _entry("a", "dtwin", 4.0),
            _entry("a", "peer", 8.0),
            _entry("b", "dtwin", 2.0),
            _entry("b", "peer", 4.0),
        ]
    )
    regressions = benchmarking.compare(base, new, fail_ratio=1.25)
    assert [(r.pair, round(r.factor, 6)) for r in regressions] == [("a", 2.0)]
    assert benchmarking.compare(base, new, fail_ratio=2.5) == []
    with pytest.raises(ValueError, match="fail_ratio must be >= 1"):
        benchmarking.compare(base, new, fail_ratio=0.5)


def test_load_names_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        benchmarking.load(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text('{"something": 1}')
    with pytest.raises(ValueError, match="not a pytest-benchmark JSON"):
        benchmarking.load(tmp_path / "x.json")


def test_training_step_takes_an_optimizer_step():
    from dtwin_operators.fno import FNO

    torch.manual_seed(0)
    model = FNO(width=8, modes=4, n_layers=1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = benchmarking.training_step(model, model.example_batch(2))()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


SUITE = """
import time

import pytest


@pytest.mark.parametrize("role,seconds", [("dtwin", 0.002), ("peer", 0.006)])
def test_pair(benchmark, role, seconds):
    benchmark.extra_info.update(pair="sleep", role=role)
    benchmark.pedantic(lambda: time.sleep(seconds), rounds=5, iterations=1)
"""


def test_dtwin_bench_runs_saves_and_compares(tmp_path, capsys):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_sleep.py").write_text(textwrap.dedent(SUITE))
    out = tmp_path / "run.json"
    assert main(["bench", "--path", str(suite), "--json", str(out)]) == 0
    (row,) = benchmarking.ratios(benchmarking.load(out))
    assert 1.5 < row.ratio < 6, row
    printed = capsys.readouterr().out
    assert "sleep" in printed and "peer" in printed

    # a baseline whose ratio was 4x better: this run is a regression; one just like it is not
    faster = _write(
        tmp_path / "base.json", [_entry("sleep", "dtwin", 1.0), _entry("sleep", "peer", 4 * row.ratio)]
    )
    assert main(["bench", "--path", str(suite), "--compare", str(faster)]) == 1
    assert "REGRESSION: sleep vs peer" in capsys.readouterr().out
    same = _write(tmp_path / "same.json", [_entry("sleep", "dtwin", 1.0), _entry("sleep", "peer", row.ratio)])
    assert main(["bench", "--path", str(suite), "--compare", str(same), "--fail-ratio", "2"]) == 0


def test_dtwin_bench_bad_arguments_say_what_is_wrong(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--fail-ratio", "0.9"])
    assert "--fail-ratio must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--compare", str(tmp_path / "missing.json")])
    assert "--compare" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--path", str(tmp_path / "nowhere")])
    assert "does not exist" in capsys.readouterr().err
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_sleep.py").write_text(textwrap.dedent(SUITE))
    assert main(["bench", "--path", str(suite), "-k", "no_such_benchmark"]) == 2


# ------------------------------------------------------------------- peak memory and child processes

MiB = 1024 * 1024


def _hwm_resettable() -> bool:
    """Linux with a writable /proc/self/clear_refs (VmHWM can be reset): what the CPU figure needs."""
    import os

    return os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK)


needs_hwm = pytest.mark.skipif(not _hwm_resettable(), reason="/proc/self/clear_refs is not writable")


@needs_hwm
def test_peak_memory_growth_sees_a_64_mib_tensor():
    def allocate():
        t = torch.ones(16 * MiB, dtype=torch.float32)  # 64 MiB, written (resident), then freed
        return float(t[-1])

    growth = benchmarking.peak_memory_growth(allocate)
    assert growth is not None
    assert growth >= 60 * MiB, growth / MiB
    assert growth < 1024 * MiB, growth / MiB


@needs_hwm
def test_peak_memory_growth_of_a_call_that_allocates_little_is_small():
    growth = benchmarking.peak_memory_growth(lambda: sum(range(1000)))
    assert growth is not None and 0 <= growth < 32 * MiB, growth / MiB


def test_peak_memory_growth_is_none_where_it_cannot_measure(monkeypatch, tmp_path):
    # no /proc/self/status (as off Linux): no figure, and no error
    monkeypatch.setattr(benchmarking, "_STATUS", tmp_path / "no-status")
    assert benchmarking._rss_kib("VmRSS") is None
    assert benchmarking.peak_memory_growth(lambda: torch.ones(4)) is None


def test_call_in_child_returns_the_result(tmp_path):
    (tmp_path / "child.py").write_text(
        textwrap.dedent(
            """
            import os

            def report(n, label="x"):
                print("noise on stdout before the result")
                return {
                    "n": n * 2,
                    "label": label,
                    "items": [1, 2.5, None],
                    "cwd": os.getcwd(),
                    "threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                }
            """
        )
    )
    work = tmp_path / "work"
    work.mkdir()
    out = benchmarking.call_in_child(tmp_path / "child.py", "report", 21, "y", cwd=work)
    assert out == {
        "n": 42,
        "label": "y",
        "items": [1, 2.5, None],
        "cwd": str(work.resolve()),
        "threshold": "65536",
    }


def test_call_in_child_failure_raises_with_the_childs_stderr(tmp_path):
    (tmp_path / "child.py").write_text(
        textwrap.dedent(
            """
            import sys

            def fails():
                print("a warning from the child", file=sys.stderr)
                raise ValueError("boom-from-the-child")
            """
        )
    )
    with pytest.raises(RuntimeError) as info:
        benchmarking.call_in_child(tmp_path / "child.py", "fails")
    message = str(info.value)
    assert "call_in_child" in message and "child.py:fails failed" in message
    assert "ValueError: boom-from-the-child" in message and "a warning from the child" in message
    with pytest.raises(RuntimeError, match="AttributeError"):
        benchmarking.call_in_child(tmp_path / "child.py", "no_such_function")
