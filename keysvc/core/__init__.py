"""keysvc's pure core: formats, checks, expiry, scope, the grant policy, ids, the audit chain, models.

Nothing here does I/O: no adapter, HTTP framework, database driver, cloud SDK, ``os.environ``,
filesystem or thread is imported (``tests/test_layers.py`` checks). Time comes in as ``now`` or a
:class:`~keysvc.core.clock.Clock`. The service layer above decides with these; adapters never do.
"""

__all__: list[str] = []
