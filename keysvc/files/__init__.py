"""Local files keysvc keeps: the credentials file, the audit signing key, atomic private writes."""

__all__: list[str] = []
