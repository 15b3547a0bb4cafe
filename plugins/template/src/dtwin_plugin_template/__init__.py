"""A template dtwin plugin: one operator, registered in pyproject.toml."""

from dtwin_plugin_template.conv import ConvOperator

__all__ = ["ConvOperator"]
