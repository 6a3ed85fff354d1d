"""keysvc: mints, checks, revokes and audits per-node ingest keys.

This package's ``__init__`` stays import-light: the agent imports the pure wire-format modules
(:mod:`keysvc.wire.keyformat`, :mod:`keysvc.wire.objectnames`) on nodes that have none of keysvc's
dependencies installed.
"""

__all__: list[str] = []
