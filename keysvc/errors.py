"""Every error keysvc raises, rooted at :class:`KeysvcError`.

Only ``cli.py`` turns these into exit codes and only the HTTP layer turns them into status codes.
Third-party errors (sqlite3, psycopg, botocore, google.api_core, cryptography) are translated where
they enter, with ``raise ... from exc``. No message ever carries a secret.

::

    KeysvcError
    ├── ConfigError               broken or unsafe configuration
    ├── InvalidInput              a caller sent something malformed (ids, names, bodies)
    │   └── InvalidObjectName     a proposed object suffix breaks the naming grammar
    ├── NotFound                  no such key, record or resource
    ├── Conflict                  contradicts existing state (an operation id reused differently)
    ├── Refused                   a credential was refused; the reason is for the audit only
    │   ├── KeyEnded              a proven ingest key is revoked or expired: told to its holder only
    │   └── RateLimited           too many failed authentications from one source
    ├── StoreError                the state store failed
    │   ├── StoreUnavailable      the database cannot be reached right now (retryable)
    │   ├── StateMissing          a read found no database or signing key where configured
    │   └── MigrationError        the schema cannot be brought up to date
    ├── AuditIntegrityError       the audit chain does not verify
    ├── SigningError              a URL or audit record could not be signed
    ├── Unavailable               something keysvc needs is not available (a listen address in use)
    ├── EventError                a termination event could not be understood or acted on
    └── BucketReadError           the bucket could not be listed or an object read (``keysvc logs``)

The development tools (``keysvc demo``, the emulator) keep their own errors apart, in
:mod:`keysvc.devtools.errors`.
"""

from __future__ import annotations


class KeysvcError(Exception):
    """The root of every error keysvc raises on purpose."""


class ConfigError(KeysvcError):
    """Configuration is missing, malformed or unsafe."""


class InvalidInput(KeysvcError):
    """A caller sent something malformed: an id, a name, a body."""


class InvalidObjectName(InvalidInput):
    """A proposed object suffix does not match the chunk naming grammar."""


class NotFound(KeysvcError):
    """The named key, record or resource does not exist."""


class Refused(KeysvcError):
    """A credential was refused.

    ``reason`` is precise and goes to the audit log; callers only ever see a uniform refusal,
    so the answer is no oracle for which check failed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("credential refused")
        self.reason = reason


class KeyEnded(Refused):
    """The caller proved possession of an ingest key (its hash matched) and that key has ended.

    ``reason`` is ``expired`` or ``revoked``. Only this case is answered distinctly (401 with the
    error code ``key_expired``/``key_revoked``): the caller already holds the secret, so telling it
    that its own key is over reveals nothing to anyone who does not. Every other refusal stays
    uniform. The agent removes its key file only on this answer, or on a refusal after this
    endpoint had already accepted the key (see :mod:`agent.lifetime`).
    """


class RateLimited(Refused):
    """Too many failed authentications from one source address."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("rate_limited")
        self.retry_after = retry_after


class StoreError(KeysvcError):
    """The state store failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; the request may be retried later."""


class StateMissing(StoreError):
    """A command that only reads found no database, schema or audit signing key where it was configured."""


class MigrationError(StoreError):
    """The schema cannot be brought up to date."""


class AuditIntegrityError(KeysvcError):
    """The audit chain failed verification."""


class SigningError(KeysvcError):
    """A signed URL or an audit signature could not be produced."""


class EventError(KeysvcError):
    """A termination event could not be parsed or acted on."""


class Conflict(KeysvcError):
    """The request contradicts existing state, such as an operation id reused with other parameters."""


class BucketReadError(KeysvcError):
    """The bucket could not be listed or an object could not be read."""


class Unavailable(KeysvcError):
    """Something keysvc needs is not available: a listen address already in use, an upstream API down."""
