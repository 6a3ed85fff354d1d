"""The GCS adapter: signing V4 upload URLs, and reading a node's objects back for ``keysvc logs``."""

__all__: list[str] = []
