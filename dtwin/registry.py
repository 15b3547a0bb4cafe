"""Plugin discovery and loading through Python entry points.

One entry-point group per kind (:data:`GROUPS`); an entry point names a LightningModule
(LightningDataModule for ``datamodules``) subclass::

    [project.entry-points."dtwin.operators"]
    fno = "dtwin_operators.fno:FNO"

Discovery reads distribution metadata only and imports nothing; a plugin's module is imported
the first time it is asked for. Every failure is a typed error from :mod:`dtwin.errors` that
says what to do. ``DTWIN_DISABLE_PLUGIN_AUTOLOAD=1`` makes :func:`autoload` (which the
``dtwin`` command calls to import every plugin up front) a no-op, so only the plugins named on
the command line are imported.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dtwin.errors import (
    CheckpointError,
    DuplicatePluginError,
    PluginLoadError,
    PluginTypeError,
    UnknownPluginError,
)

#: kind -> entry-point group
GROUPS = {
    "operators": "dtwin.operators",
    "estimators": "dtwin.estimators",
    "autoencoders": "dtwin.autoencoders",
    "datamodules": "dtwin.datamodules",
}
MODEL_KINDS = ("operators", "estimators", "autoencoders")


@dataclass(frozen=True)
class PluginSpec:
    """A discovered plugin: where it comes from and what it points to (nothing imported)."""

    kind: str
    name: str
    value: str  # "module:attribute"
    distribution: str
    version: str

    @property
    def class_path(self) -> str:
        """The dotted path LightningCLI accepts: 'module.attribute'."""
        module, _, attr = self.value.partition(":")
        return f"{module}.{attr}" if attr else module

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}"


@dataclass
class PluginStatus:
    """A row of ``dtwin list``: the spec, and what loading it gave (``ok``, ``broken``, ``duplicate``)."""

    spec: PluginSpec
    status: str = "not loaded"
    error: str | None = None
    duplicates: list[PluginSpec] = field(default_factory=list)


_loaded: dict[tuple[str, str], type] = {}


def _check_kind(kind: str) -> str:
    if kind not in GROUPS:
        raise UnknownPluginError(f"unknown plugin kind {kind!r}; the kinds are {', '.join(GROUPS)}")
    return kind


def discover(kind: str | None = None) -> list[PluginSpec]:
    """All plugins of one kind (or of every kind), sorted by kind and name. Imports nothing."""
    kinds = [_check_kind(kind)] if kind else list(GROUPS)
    specs: list[PluginSpec] = []
    for k in kinds:
        for ep in metadata.entry_points(group=GROUPS[k]):
            dist = ep.dist
            specs.append(
                PluginSpec(
                    kind=k,
                    name=ep.name,
                    value=ep.value,
                    distribution=dist.metadata["Name"] if dist is not None else "<unknown>",
                    version=dist.version if dist is not None else "?",
                )
            )
    # the same distribution seen twice on sys.path is one plugin, not a duplicate
    unique = {(s.kind, s.name, s.distribution, s.value): s for s in specs}
    return sorted(unique.values(), key=lambda s: (list(GROUPS).index(s.kind), s.name, s.distribution))


def names(kind: str) -> list[str]:
    """The registered names of one kind, sorted."""
    return sorted({s.name for s in discover(kind)})


def get(kind: str, name: str) -> PluginSpec:
    """The spec of one plugin; raises UnknownPluginError / DuplicatePluginError."""
    matches = [s for s in discover(kind) if s.name == name]
    if not matches:
        available = names(kind)
        hint = f"available {kind}: {', '.join(available)}" if available else f"no {kind} are installed"
        raise UnknownPluginError(
            f"no plugin named {name!r} in {GROUPS[kind]}; {hint}. "
            "A full class path (module.Class) also works."
        )
    if len(matches) > 1:
        origins = " and ".join(f"{s.origin} ({s.value})" for s in matches)
        raise DuplicatePluginError(
            f"the {kind[:-1]} name {name!r} is registered by {origins}; uninstall one of them, "
            "or pass the full class path of the one you want"
        )
    return matches[0]


def _base_class(kind: str) -> type:
    import lightning as L

    return L.LightningDataModule if kind == "datamodules" else L.LightningModule


def load(kind: str, name: str) -> type:
    """Import a plugin and return its class (cached); raises the registry's typed errors."""
    key = (_check_kind(kind), name)
    if key in _loaded:
        return _loaded[key]
    spec = get(kind, name)
    module_name, _, attr = spec.value.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as exc:
        raise PluginLoadError(
            f"plugin {name!r} ({GROUPS[kind]}) from {spec.origin} failed to import {spec.value}: "
            f"{type(exc).__name__}: {exc}. Fix or reinstall {spec.distribution}; "
            "the original traceback follows."
        ) from exc
    base = _base_class(kind)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginTypeError(
            f"plugin {name!r} ({GROUPS[kind]}) from {spec.origin} points to {spec.value}, a "
            f"{type(obj).__name__ if not isinstance(obj, type) else obj.__name__}, not a subclass of "
            f"{base.__module__}.{base.__qualname__}"
        )
    _loaded[key] = obj
    return obj


def status(kind: str | None = None) -> list[PluginStatus]:
    """Every plugin with the result of importing it: what ``dtwin list`` shows."""
    rows: list[PluginStatus] = []
    specs = discover(kind)
    for spec in specs:
        row = PluginStatus(spec)
        row.duplicates = [s for s in specs if s.kind == spec.kind and s.name == spec.name and s != spec]
        if row.duplicates:
            row.status = "duplicate"
            row.error = "also registered by " + ", ".join(s.origin for s in row.duplicates)
        else:
            try:
                load(spec.kind, spec.name)
                row.status = "ok"
            except (PluginLoadError, PluginTypeError) as exc:
                row.status = "broken"
                row.error = str(exc)
                cause = exc.__cause__
                if cause is not None:
                    row.error += "\n" + "".join(
                        traceback.format_exception(type(cause), cause, cause.__traceback__)
                    )
        rows.append(row)
    return rows


def autoload_disabled() -> bool:
    return os.environ.get("DTWIN_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() in ("1", "true", "yes", "on")


def autoload(kinds: Iterable[str] = tuple(GROUPS)) -> list[PluginStatus]:
    """Import every plugin of the given kinds, collecting failures instead of raising; a no-op
    returning [] when DTWIN_DISABLE_PLUGIN_AUTOLOAD=1."""
    if autoload_disabled():
        return []
    return [row for kind in kinds for row in status(kind)]


def resolve_class_path(kind: str, name_or_path: str) -> str:
    """A registered name becomes its class path; a dotted path is returned unchanged."""
    if "." in name_or_path or ":" in name_or_path:
        return name_or_path.replace(":", ".")
    return get(kind, name_or_path).class_path


def find_name(cls: type) -> tuple[str, str] | None:
    """The (kind, name) under which a class is registered, if it is; imports nothing."""
    value = f"{cls.__module__}:{cls.__qualname__}"
    for spec in discover():
        if spec.value == value:
            return spec.kind, spec.name
    return None


def plugin_record(obj: Any) -> dict[str, str]:
    """What a checkpoint records about the plugin that wrote it."""
    cls = type(obj)
    found = find_name(cls)
    record = {"class_path": f"{cls.__module__}.{cls.__qualname__}"}
    if found:
        record["kind"], record["name"] = found
    return record


def load_checkpoint(
    name: str, checkpoint: str | Path, *, kind: str | None = None, map_location: Any = "cpu", **kwargs: Any
) -> Any:
    """Rebuild a model from a checkpoint through the registry, by plugin name.

    The checkpoint is read with ``weights_only=True``. Raises CheckpointError when it was written
    by another plugin (dtwin's base modules record which one in every checkpoint).
    """
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    kinds = [kind] if kind else [k for k in MODEL_KINDS if name in names(k)]
    if not kinds:
        available = {k: names(k) for k in MODEL_KINDS}
        raise UnknownPluginError(f"no model plugin named {name!r}; available: {available}")
    if len(kinds) > 1:
        raise DuplicatePluginError(
            f"{name!r} names a plugin of several kinds ({', '.join(kinds)}); pass kind="
        )
    cls = load(kinds[0], name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {str(path)!r} as a checkpoint (weights_only=True): {exc}"
        ) from exc
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{str(path)!r} is not a Lightning checkpoint (no state_dict)")
    # dtwin's base modules refuse a checkpoint that another plugin wrote (CheckpointError)
    return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True, **kwargs)
