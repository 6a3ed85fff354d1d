"""TLS for ``keysvc serve``, with the certificate and key reloaded when their files change.

uvicorn takes one :class:`ssl.SSLContext` at start. This module hands it a context whose
``sni_callback`` runs at the start of every handshake (with or without SNI): it compares the two
files' ``(inode, size, mtime)`` with what was loaded and, when either changed, builds a fresh
context with ``load_cert_chain`` and switches the connection to it (``ssl_object.context = new``).
New connections therefore see a rotated certificate at once, without a restart; connections already
open keep theirs. A pair that does not load (a rotation caught half-written: the new certificate
with the old key) keeps the previous context, logs ``tls_reload_failed`` and is retried at the next
handshake. At start, a pair that does not load is a :class:`~keysvc.errors.ConfigError`.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import structlog

from keysvc.errors import ConfigError

MIN_VERSION = ssl.TLSVersion.TLSv1_2

Stamp = tuple[tuple[int, int, int], tuple[int, int, int]]


def _stamp(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSION
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return context


class ReloadingCertificate:
    """A server SSLContext that follows ``cert_file`` and ``key_file`` as they are replaced."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._lock = threading.Lock()
        try:
            self._stamp = self._read_stamp()
            self._current = _context(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"server.tls_cert_file/tls_key_file ({cert_file}, {key_file}) do not load as a pair: {exc}"
            ) from exc
        self.reloads = 0
        self.outer = _context(cert_file, key_file)
        self.outer.sni_callback = self._on_handshake

    def _read_stamp(self) -> Stamp:
        return _stamp(self.cert_file), _stamp(self.key_file)

    def current(self) -> ssl.SSLContext:
        """The context for the next handshake, reloaded first when either file changed."""
        with self._lock:
            try:
                stamp = self._read_stamp()
            except OSError:
                return self._current  # a file is being replaced right now: keep serving the old pair
            if stamp != self._stamp:
                try:
                    self._current = _context(self.cert_file, self.key_file)
                except (OSError, ssl.SSLError) as exc:
                    structlog.get_logger().warning("tls_reload_failed", error=str(exc))
                    return self._current
                self._stamp = stamp
                self.reloads += 1
                structlog.get_logger().info("tls_reloaded", cert_file=str(self.cert_file))
            return self._current

    def _on_handshake(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: object
    ) -> None:
        connection.context = self.current()
