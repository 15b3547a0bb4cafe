"""nn.Modules built on dtwin's ops, for plugins to compose."""

__all__: list[str] = []
