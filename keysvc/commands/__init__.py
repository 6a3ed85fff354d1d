"""The ``keysvc`` command groups; each module offers ``register(subparsers)`` (see :mod:`keysvc.cli`)."""
