"""The development tools' own errors, apart from the product's tree in :mod:`keysvc.errors`.

They subclass :class:`~keysvc.errors.KeysvcError` only so that ``keysvc demo`` fails through the
CLI's one error-to-exit-code mapping like every other command::

    KeysvcError (keysvc.errors)
    └── DevtoolsError             a development tool failed (never raised by the product)
        ├── EmulatorError         the local bucket emulator failed (demo and tests only)
        └── DemoError             a step of ``keysvc demo`` failed
"""

from __future__ import annotations

from keysvc.errors import KeysvcError


class DevtoolsError(KeysvcError):
    """A development tool failed; the product never raises this."""


class EmulatorError(DevtoolsError):
    """The local bucket emulator misbehaved or could not be reached (demo and tests only)."""


class DemoError(DevtoolsError):
    """A step of the demo failed."""
