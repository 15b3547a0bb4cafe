"""The typed errors dtwin raises. Each message says what was wrong and what would be right."""

from __future__ import annotations


class DtwinError(Exception):
    """Base class of every dtwin error."""


class BackendUnavailableError(DtwinError, RuntimeError):
    """A compiled kernel was required (DTWIN_BACKEND=compiled) but this build has none."""


class SimulationError(DtwinError, RuntimeError):
    """A simulator failed for some of its members; ``indices`` lists them, ``status`` says why."""

    def __init__(self, message: str, indices: list[int], status: list[int]) -> None:
        super().__init__(message)
        self.indices = indices
        self.status = status


class PluginError(DtwinError):
    """Base class of the registry's errors."""


class UnknownPluginError(PluginError, KeyError):
    """No plugin of that kind has that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicatePluginError(PluginError):
    """Two distributions register the same name for one kind."""


class PluginLoadError(PluginError, ImportError):
    """A plugin's module failed to import; the original exception is chained."""


class PluginTypeError(PluginError, TypeError):
    """An entry point names an object that is not a subclass of the kind's base class."""


class CheckpointError(DtwinError, ValueError):
    """A checkpoint cannot be loaded as the plugin that was asked for."""
