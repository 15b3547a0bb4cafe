"""dtwin's public test helpers: the plugin conformance kit and the op test base.

Third-party plugin authors call :func:`check_plugin` from their own tests (or use the
``dtwin_check_plugin`` pytest fixture that dtwin's pytest plugin provides).
"""

from dtwin.testing.conformance import PluginCheckError, check_plugin, quiet_trainer

__all__ = ["PluginCheckError", "check_plugin", "quiet_trainer"]
