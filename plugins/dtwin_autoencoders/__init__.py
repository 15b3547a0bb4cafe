"""dtwin's built-in autoencoder plugins, written as a third party would write them: they import
only dtwin's public API and are registered by entry points in dtwin's pyproject.toml."""
