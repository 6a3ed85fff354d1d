"""The service layer: every decision about keys, grants and the audit record, over small ports.

- :class:`~keysvc.service.keys.KeyService`: AddNode, binding, revocation, expiry, user data;
- :class:`~keysvc.service.ingest.IngestService`: where the key is checked, and the upload grant;
- :class:`~keysvc.service.audit.AuditTrail`: the hash-chained, signed audit log;
- :mod:`keysvc.service.ports`: the Protocols the adapters implement (store, signers, clock);
- :mod:`keysvc.service.sweeper`: the background loop that expires keys.

Entry points (``keysvc.http``, ``keysvc.commands``) parse, call these, and format; adapters
(``keysvc.store``, ``keysvc.gcs``, ``keysvc.aws``, ``keysvc.files``) are wired in by
:mod:`keysvc.runtime` and never imported from here.
"""

__all__: list[str] = []
