"""dtwin.registry with real distributions: temporary dist-info folders put on sys.path."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dtwin import registry
from dtwin.errors import (
    CheckpointError,
    DuplicatePluginError,
    PluginLoadError,
    PluginTypeError,
    UnknownPluginError,
)
from dtwin.testing import quiet_trainer

MODEL = """
import torch
from dtwin import OperatorModule

class {cls}(OperatorModule):
    batch_spec = {{"x": "[B, C, L]"}}

    def __init__(self, width: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.net = torch.nn.Conv1d(1, 1, 1)

    def forward(self, batch):
        self.check_batch(batch)
        return self.net(batch["x"])

    def example_batch(self, batch_size=2):
        return {{"x": torch.randn(batch_size, 1, 8), "y": torch.randn(batch_size, 1, 8)}}
"""


def make_distribution(
    root: Path, name: str, version: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]
) -> None:
    """A minimal installed distribution: a dist-info folder with METADATA and entry_points.txt."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh 'site-packages' on sys.path; the registry's cache is cleared around each test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._loaded.clear()
    yield tmp_path
    registry._loaded.clear()
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


def _refresh():
    importlib.invalidate_caches()


def test_third_party_discovery_without_import(site):
    make_distribution(
        site,
        "thirdparty-ops",
        "1.2.3",
        {"dtwin.operators": {"zeta": "thirdparty_ops:Zeta", "alpha": "thirdparty_ops:Alpha"}},
        {
            "thirdparty_ops": "import sys\nsys.modules['thirdparty_imported'] = True\n"
            + MODEL.format(cls="Zeta")
            + MODEL.format(cls="Alpha")
        },
    )
    _refresh()
    specs = [s for s in registry.discover("operators") if s.distribution == "thirdparty-ops"]
    assert [s.name for s in specs] == ["alpha", "zeta"]
    assert specs[0].version == "1.2.3" and specs[0].class_path == "thirdparty_ops.Alpha"
    assert "thirdparty_imported" not in sys.modules, "discovery imported the plugin"
    cls = registry.load("operators", "zeta")
    assert cls.__name__ == "Zeta" and "thirdparty_imported" in sys.modules
    assert registry.load("operators", "zeta") is cls


def test_unknown_name_lists_the_available(site):
    make_distribution(
        site,
        "thirdparty-a",
        "1.0",
        {"dtwin.operators": {"known": "thirdparty_a:Known"}},
        {"thirdparty_a": MODEL.format(cls="Known")},
    )
    _refresh()
    with pytest.raises(UnknownPluginError, match=r"no plugin named 'nope'.*available operators: .*known"):
        registry.get("operators", "nope")
    with pytest.raises(UnknownPluginError, match="kinds are"):
        registry.discover("widgets")


def test_duplicate_names_name_both_distributions(site):
    for dist in ("thirdparty-one", "thirdparty-two"):
        module = dist.replace("-", "_")
        make_distribution(
            site,
            dist,
            "0.1",
            {"dtwin.operators": {"dup": f"{module}:Dup"}},
            {module: MODEL.format(cls="Dup")},
        )
    _refresh()
    with pytest.raises(DuplicatePluginError, match=r"thirdparty-one 0\.1.*thirdparty-two 0\.1"):
        registry.load("operators", "dup")
    rows = [r for r in registry.status("operators") if r.spec.name == "dup"]
    assert {r.status for r in rows} == {"duplicate"}


def test_broken_plugin_is_reported_and_the_rest_still_load(site):
    make_distribution(
        site,
        "thirdparty-broken",
        "2.0",
        {"dtwin.operators": {"broken": "thirdparty_broken:Model"}},
        {"thirdparty_broken": "import not_a_module_anywhere\n"},
    )
    make_distribution(
        site,
        "thirdparty-fine",
        "1.0",
        {"dtwin.operators": {"fine": "thirdparty_fine:Fine"}},
        {"thirdparty_fine": MODEL.format(cls="Fine")},
    )
    _refresh()
    with pytest.raises(PluginLoadError, match=r"'broken'.*thirdparty-broken 2.0.*No module named") as info:
        registry.load("operators", "broken")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    rows = {r.spec.name: r for r in registry.status("operators")}
    assert rows["broken"].status == "broken" and "Traceback" in rows["broken"].error
    assert rows["fine"].status == "ok"


def test_wrong_type_is_refused(site):
    make_distribution(
        site,
        "thirdparty-wrong",
        "1.0",
        {
            "dtwin.operators": {"func": "thirdparty_wrong:make", "plain": "thirdparty_wrong:Plain"},
            "dtwin.datamodules": {"notdata": "thirdparty_wrong:Plain"},
        },
        {"thirdparty_wrong": "def make():\n    pass\n\nclass Plain:\n    pass\n"},
    )
    _refresh()
    with pytest.raises(
        PluginTypeError, match=r"not a subclass of lightning\.pytorch\.core\.module\.LightningModule"
    ):
        registry.load("operators", "func")
    with pytest.raises(PluginTypeError, match="Plain"):
        registry.load("operators", "plain")
    with pytest.raises(PluginTypeError, match="LightningDataModule"):
        registry.load("datamodules", "notdata")


def test_autoload_can_be_disabled(site, monkeypatch):
    make_distribution(
        site,
        "thirdparty-lazy",
        "1.0",
        {"dtwin.operators": {"lazy": "thirdparty_lazy:Lazy"}},
        {
            "thirdparty_lazy": "import sys\nsys.modules['thirdparty_lazy_imported'] = True\n"
            + MODEL.format(cls="Lazy")
        },
    )
    _refresh()
    monkeypatch.setenv("DTWIN_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert registry.autoload() == []
    assert "thirdparty_lazy_imported" not in sys.modules
    registry.load("operators", "lazy")  # what is asked for still loads
    monkeypatch.delenv("DTWIN_DISABLE_PLUGIN_AUTOLOAD")
    assert any(r.spec.name == "lazy" and r.status == "ok" for r in registry.autoload())


def test_checkpoint_reloads_by_name_and_refuses_another_plugin(site, tmp_path):
    make_distribution(
        site,
        "thirdparty-ckpt",
        "1.0",
        {"dtwin.operators": {"first": "thirdparty_ckpt:First", "second": "thirdparty_ckpt:Second"}},
        {"thirdparty_ckpt": MODEL.format(cls="First") + MODEL.format(cls="Second")},
    )
    _refresh()

    first = registry.load("operators", "first")(width=7)
    trainer = quiet_trainer(tmp_path, max_steps=1)
    batch = first.example_batch()
    trainer.fit(first, torch.utils.data.DataLoader([batch], batch_size=None))
    path = tmp_path / "first.ckpt"
    trainer.save_checkpoint(path, weights_only=False)
    state = torch.load(path, weights_only=True)
    assert state["dtwin_plugin"] == {
        "class_path": "thirdparty_ckpt.First",
        "kind": "operators",
        "name": "first",
    }
    again = registry.load_checkpoint("first", path)
    assert again.hparams.width == 7
    first.eval()
    torch.testing.assert_close(again(batch), first(batch), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"written by plugin 'first'.*cannot be loaded into Second"):
        registry.load_checkpoint("second", path)
    with pytest.raises(CheckpointError, match="does not exist"):
        registry.load_checkpoint("first", tmp_path / "missing.ckpt")


def test_resolve_class_path():
    assert registry.resolve_class_path("datamodules", "hh") == "dtwin.data.hh.HHDataModule"
    assert registry.resolve_class_path("datamodules", "my.module.Data") == "my.module.Data"


def test_builtin_plugins_are_listed():
    names = {(s.kind, s.name) for s in registry.discover()}
    assert ("datamodules", "hh") in names
