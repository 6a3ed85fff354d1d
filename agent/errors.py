"""Every error the agent raises, rooted at :class:`AgentError`.

Only ``agent/cli.py`` turns these into exit codes. Third-party and stdlib errors (``OSError``,
``ssl.SSLError``, ``http.client.HTTPException``) are translated where they enter, with
``raise ... from exc``. No message ever carries the key or a proxy password.

::

    AgentError
    ├── ConfigError               bad configuration: flags, environment, TOML file (exit 2)
    │   ├── KeyFileInsecure       the key file is readable by group/other, or not a key (exit 2)
    │   └── SettingMismatch       cluster/node/region disagree with the key's record (exit 2, key kept)
    ├── StateCorrupt              a checkpoint or intent file cannot be trusted; names the file (exit 2)
    ├── KeyUnavailable            the key is finished (expired/revoked earlier) or absent (exit 12)
    ├── KeyRefused                keysvc refused the key: revoked, expired or unknown (exit 11;
    │                             the key file goes only when the refusal is final, agent.lifetime)
    ├── KeyExpired                the key's life is over, after the final flush (exit 10)
    ├── GrantRejected             keysvc answered 400 to our grant request: a bug on our side
    ├── RetryableFailure          a 5xx, 429 or similar answer worth retrying with backoff
    ├── UrlExpired                the bucket refused a signed URL as expired: get a fresh grant
    ├── UploadRefused             the bucket refused a PUT for a reason retrying cannot fix
    ├── Unreadable                a rotated generation's file cannot be read (a broken .gz); recorded as a gap
    └── TransportError            the network failed; HTTP error statuses are answers, not errors
        ├── ConnectError          name resolution, TCP connect or the TLS handshake failed
        ├── ConnectionLost        the connection broke before a whole response arrived
        ├── RequestTimeout        connecting or waiting for the answer took too long
        ├── ProxyError            the proxy refused the tunnel or the connection
        │   ├── ProxyAuthFailed   407 to CONNECT, or the SOCKS5 server refused or wants credentials
        │   ├── ProxyRefused      CONNECT answered other than 200, or a SOCKS5 CONNECT failed
        │   └── ProxyUntrusted    the TLS handshake with an https:// proxy failed (its certificate)
        └── ResponseTooLarge      the answer's body is larger than the transport accepts
"""

from __future__ import annotations


class AgentError(Exception):
    """The root of every error the agent raises on purpose."""


class TransportError(AgentError):
    """A request did not get an HTTP answer; retrying later may help."""


class ConnectError(TransportError):
    """Name resolution, the TCP connection or the TLS handshake failed."""


class ConnectionLost(TransportError):
    """The connection was reset or closed before a whole response arrived."""


class RequestTimeout(TransportError):
    """Connecting, sending or waiting for the response took longer than the timeout."""


class ProxyError(TransportError):
    """The proxy refused the tunnel or the connection; a subclass says how."""


class ProxyAuthFailed(ProxyError):
    """The proxy refused our credentials, or wants credentials the proxy URL does not carry."""


class ProxyRefused(ProxyError):
    """The proxy refused the CONNECT tunnel, or the SOCKS5 server refused to reach the target."""


class ProxyUntrusted(ProxyError):
    """The TLS handshake with an ``https://`` proxy failed, usually because its certificate is untrusted."""


class ResponseTooLarge(TransportError):
    """The response body exceeds the transport's bound."""


class ConfigError(AgentError):
    """The configuration (flags, environment, TOML file) is missing, malformed or unsafe."""


class KeyFileInsecure(ConfigError):
    """The key file is readable by group or other, or does not hold a well-formed key."""


class StateCorrupt(AgentError):
    """A checkpoint or intent file cannot be read or does not add up; the message names the file."""


class KeyUnavailable(AgentError):
    """The key file is absent, or the key was already finished (expired or revoked) on this node."""


class SettingMismatch(ConfigError):
    """A cluster, node or region setting disagrees with the key's own record at keysvc."""


class KeyRefused(AgentError):
    """keysvc refused the key (401/403): it is revoked, expired or unknown.

    ``ended`` is ``"expired"`` or ``"revoked"`` when keysvc told the proven holder so
    (``key_expired``/``key_revoked``), else ``None``: the uniform refusal, whose cause is unknown.
    """

    def __init__(self, message: str, ended: str | None = None) -> None:
        super().__init__(message)
        self.ended = ended


class KeyExpired(AgentError):
    """The key reached the end of its life; raised after the final flush."""


class GrantRejected(AgentError):
    """keysvc answered 400 to a grant request: something we sent is wrong (a bug, not a revocation)."""


class RetryableFailure(AgentError):
    """An answer that says "try again later": 5xx, 429, or an unexpected status."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UrlExpired(AgentError):
    """The bucket refused a signed URL as expired or badly signed; a fresh grant is needed."""


class UploadRefused(AgentError):
    """The bucket refused a PUT for a reason retrying cannot fix (for example 400 or 413)."""


class Unreadable(AgentError):
    """A rotated generation's file cannot be read (a broken or unfinished ``.gz``, an I/O error)."""
