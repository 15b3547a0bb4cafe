"""dtwin.experiments: what the experiment scripts share (resumable ``dtwin fit`` runs, the newest
file of a run, ``--set KEY=VALUE`` overrides). No ``dtwin fit`` runs here: the child process is
replaced by a recorder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dtwin import experiments
from dtwin.experiments import newest, parse_overrides, resumable_fit, run_dtwin


class _Error(Exception):
    pass


def _raise(message: str):
    """An argparse-like ``error`` callback: it does not return."""
    raise _Error(message)


# ----------------------------------------------------------------------------------- parse_overrides


def test_parse_overrides_good_items():
    overrides, args = parse_overrides(
        ["model.lr=0.001", "trainer.max_epochs=3", "data.operator_args={sigma: 2.0}", "model.name=a=b"],
        _raise,
    )
    assert overrides == {
        "model.lr": "0.001",
        "trainer.max_epochs": "3",
        "data.operator_args": "{sigma: 2.0}",
        "model.name": "a=b",  # split at the first '='
    }
    assert args == [
        "--model.lr",
        "0.001",
        "--trainer.max_epochs",
        "3",
        "--data.operator_args",
        "{sigma: 2.0}",
        "--model.name",
        "a=b",
    ]


def test_parse_overrides_empty_value_and_repeated_key():
    overrides, args = parse_overrides(["model.x=", "model.lr=1", "model.lr=2"], _raise)
    assert overrides == {"model.x": "", "model.lr": "2"}  # the last one wins
    assert args == ["--model.x", "", "--model.lr", "2"]
    assert parse_overrides([], _raise) == ({}, [])
    assert parse_overrides(iter(["data.seed=1"]), _raise) == ({"data.seed": "1"}, ["--data.seed", "1"])


@pytest.mark.parametrize("item", ["lr=0.1", "model.lr", "=3", "optimizer.lr=1", "modellr=1", ""])
def test_parse_overrides_bad_item_calls_error_naming_set(item):
    with pytest.raises(_Error) as info:
        parse_overrides(["model.ok=1", item], _raise)
    message = str(info.value)
    assert "--set" in message and "KEY=VALUE" in message and repr(item) in message


def test_parse_overrides_with_an_argparse_parser(capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="exp")
    with pytest.raises(SystemExit):
        parse_overrides(["nope"], parser.error)
    assert "--set takes KEY=VALUE" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ newest


def _touch(path, mtime: float, text: str = ""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def test_newest_picks_the_most_recent_match_at_any_depth(tmp_path):
    _touch(tmp_path / "version_0" / "checkpoints" / "last.ckpt", 1_000)
    recent = _touch(tmp_path / "version_2" / "checkpoints" / "last-v1.ckpt", 3_000)
    _touch(tmp_path / "version_1" / "checkpoints" / "last.ckpt", 2_000)
    _touch(tmp_path / "other.ckpt", 5_000)  # newer, but not matching
    assert newest(tmp_path, "last*.ckpt") == recent
    top = _touch(tmp_path / "last.ckpt", 4_000)  # the directory itself counts too
    assert newest(tmp_path, "last*.ckpt") == top
    assert newest(str(tmp_path), "*.ckpt") == tmp_path / "other.ckpt"


def test_newest_is_none_without_a_match(tmp_path):
    assert newest(tmp_path, "*.ckpt") is None
    _touch(tmp_path / "a" / "metrics.json", 1_000)
    assert newest(tmp_path, "last*.ckpt") is None
    assert newest(tmp_path / "missing", "*.json") is None


# ----------------------------------------------------------------------------------- resumable_fit


@pytest.fixture
def recorder(monkeypatch):
    """Replaces experiments.run_dtwin: records the calls; ``metrics`` (a dict or None) is the
    'fit' section the fake run writes to <default_root_dir>/version_0/metrics.json."""
    state = SimpleNamespace(calls=[], metrics={"epoch": 2, "metrics": {"val/psnr": 21.5}})

    def fake(command, args, *, quiet=False, owner="dtwin", cwd=None):
        state.calls.append(
            SimpleNamespace(command=command, args=list(args), quiet=quiet, owner=owner, cwd=cwd)
        )
        root = args[args.index("--trainer.default_root_dir") + 1]
        if state.metrics is not None:
            path = os.path.join(root, "version_0", "metrics.json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump({"fit": state.metrics, "test": {"metrics": {"x": 1}}}, f)

    monkeypatch.setattr(experiments, "run_dtwin", fake)
    return state


def test_resumable_fit_runs_once_and_writes_fit_done(tmp_path, recorder):
    run = tmp_path / "runs" / "a"  # created
    record = resumable_fit(["--config", "c.yaml"], run, quiet=True, owner="exp", cwd=tmp_path)
    (call,) = recorder.calls
    assert call.command == "fit"
    assert call.args == ["--config", "c.yaml", "--trainer.default_root_dir", str(run)]  # no --ckpt_path
    assert (call.quiet, call.owner, call.cwd) == (True, "exp", tmp_path)
    done = json.loads((run / "fit.done").read_text())
    assert done == record
    assert isinstance(record["wall_seconds"], float) and record["wall_seconds"] >= 0
    assert record["epoch"] == 2 and record["metrics"] == {"val/psnr": 21.5}  # the 'fit' section only
    assert "test" not in record


def test_resumable_fit_skips_a_finished_run(tmp_path, recorder):
    run = tmp_path / "a"
    run.mkdir()
    (run / "fit.done").write_text(json.dumps({"wall_seconds": 12.0, "epoch": 9}))
    _touch(run / "version_0" / "checkpoints" / "last.ckpt", 1_000)
    assert resumable_fit(["--config", "c.yaml"], run) == {"wall_seconds": 12.0, "epoch": 9}
    assert recorder.calls == []
    (run / "fit.done").write_text("")  # an empty marker still means done
    assert resumable_fit([], run) == {}
    assert recorder.calls == []


def test_resumable_fit_resumes_from_last_ckpt(tmp_path, recorder):
    run = tmp_path / "a"
    _touch(run / "version_0" / "checkpoints" / "last.ckpt", 1_000)
    resumable_fit(["--model", "fno"], run)
    (call,) = recorder.calls
    assert call.args == ["--model", "fno", "--trainer.default_root_dir", str(run), "--ckpt_path", "last"]
    assert (run / "fit.done").is_file()
    # finished: a second call does not run again
    resumable_fit(["--model", "fno"], run)
    assert len(recorder.calls) == 1


def test_resumable_fit_without_metrics_records_the_wall_time_only(tmp_path, recorder):
    recorder.metrics = None
    record = resumable_fit([], tmp_path / "a")
    assert list(record) == ["wall_seconds"]
    assert json.loads((tmp_path / "a" / "fit.done").read_text()) == record


def test_resumable_fit_failure_leaves_no_marker(tmp_path, monkeypatch):
    def failing(command, args, **kwargs):
        raise SystemExit("exp: `dtwin fit` failed (exit 1); see above")

    monkeypatch.setattr(experiments, "run_dtwin", failing)
    with pytest.raises(SystemExit, match="failed"):
        resumable_fit([], tmp_path / "a")
    assert not (tmp_path / "a" / "fit.done").exists()


# --------------------------------------------------------------------------------------- run_dtwin


def test_run_dtwin_builds_the_command_and_names_the_owner_on_failure(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_run(cmd, cwd=None, env=None):
        seen.append((cmd, cwd, env))
        return subprocess.CompletedProcess(cmd, returncode=len(seen) - 1)

    monkeypatch.setattr(experiments.subprocess, "run", fake_run)
    run_dtwin("fit", ["--config", "c.yaml"], quiet=True, cwd=tmp_path)
    cmd, cwd, env = seen[0]
    quiet = ["--trainer.enable_progress_bar", "false"]
    assert cmd == [sys.executable, "-m", "dtwin", "fit", "--config", "c.yaml", *quiet]
    assert cwd == tmp_path and env == dict(os.environ)
    assert "$ dtwin fit --config c.yaml" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"myexp: `dtwin test` failed \(exit 1\)"):
        run_dtwin("test", [], owner="myexp")
    assert seen[1][0] == [sys.executable, "-m", "dtwin", "test"]  # not quiet: no extra arguments


# ------------------------------------------------------------------------------ summarise_estimates


def _estimate_records():
    def record(case, run, est):
        return {
            "case": case,
            "run": run,
            "theta0": [1.0, 2.0],
            "estimates": {"m": est},
            "seconds": {"m": 0.5},
            "gate": {"verdict": "out of distribution"},
        }

    return [record("A", 0, [1.5, 2.0]), record("A", 1, [1.0, 1.0]), record("A", 2, [0.0, 3.0])]


def test_summarise_estimates_sums_or_averages_over_the_parameters():
    results = _estimate_records()  # per-run squared errors summed over the 2 parameters: 0.25, 1, 2
    summed = experiments.summarise_estimates(results, ["A", "B"], ["m", "absent"], ["p", "q"])
    assert list(summed) == ["A"] and list(summed["A"]["methods"]) == ["m"]
    row = summed["A"]["methods"]["m"]
    assert row["mse"] == pytest.approx((0.25 + 1 + 2) / 3) and row["median_sq_error"] == pytest.approx(1.0)
    assert row["rmse"]["p"] == pytest.approx(((0.25 + 0 + 1) / 3) ** 0.5)
    assert summed["A"]["gate_flagged"] == 3 and row["seconds"] == 0.5
    mean = experiments.summarise_estimates(results, ["A"], ["m"], ["p", "q"], over_parameters="mean")
    assert mean["A"]["methods"]["m"]["mse"] == pytest.approx(row["mse"] / 2)
    assert mean["A"]["methods"]["m"]["median_sq_error"] == pytest.approx(0.5)
    scaled = experiments.summarise_estimates(results, ["A"], ["m"], ["p", "q"], scale=[1.0, 2.0])
    assert scaled["A"]["methods"]["m"]["mse"] == pytest.approx((0.25 + 0.25 + 1.25) / 3)


def test_summarise_estimates_refuses_another_reduction():
    with pytest.raises(ValueError, match="over_parameters must be 'sum' or 'mean', got 'max'"):
        experiments.summarise_estimates(_estimate_records(), ["A"], ["m"], ["p", "q"], over_parameters="max")
