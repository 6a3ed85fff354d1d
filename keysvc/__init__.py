"""keysvc: mints, checks, revokes and audits per-node ingest keys.

The public surface is the command line (:mod:`keysvc.cli`), the HTTP API (:mod:`keysvc.http`), and
for the agent the wire contract, :mod:`keysvc.wire`, whose ``__init__`` names what is public. The
folders are the layers (entry points, wiring, service, adapters, core); see README "Development".
This ``__init__`` stays import-light: the agent imports :mod:`keysvc.wire` on nodes that have none
of keysvc's dependencies installed.
"""

__all__: list[str] = []
