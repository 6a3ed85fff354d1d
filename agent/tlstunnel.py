"""TLS inside TLS: a TLS session to the target carried through a TLS connection to an https:// proxy.

``ssl.SSLSocket`` cannot wrap another ``SSLSocket`` (it would write the inner TLS records straight
to the file descriptor, past the outer TLS layer), so the inner session is an ``ssl.SSLObject``
over memory buffers, and its records travel through the outer socket's ``sendall``/``recv``. The
class offers what ``http.client`` uses of a socket: ``sendall``, ``makefile("rb")``,
``settimeout`` and ``close``. urllib3's ``SSLTransport`` works the same way.
"""

from __future__ import annotations

import io
import socket
import ssl
from typing import Any

_RECORD = 16 * 1024 + 512


class TunnelledTLS:
    """A socket-like TLS client session whose records go through ``outer`` (already TLS to a proxy)."""

    def __init__(self, outer: ssl.SSLSocket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._outer = outer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._closed = False
        self._io(self._tls.do_handshake)

    # -- what http.client and the transport use -------------------------------------------------------

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``."""
        view = memoryview(data)
        while view:
            sent: int = self._io(self._tls.write, view)
            view = view[sent:]

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt and send ``data``; returns how many bytes were taken (all of them)."""
        self.sendall(data)
        return len(data)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        """Read decrypted bytes into ``buffer``; 0 at the end of the stream."""
        size = nbytes or len(buffer)
        try:
            count: int = self._io(self._tls.read, size, buffer)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0
        return count

    def recv(self, size: int) -> bytes:
        """Read up to ``size`` decrypted bytes; ``b""`` at the end of the stream."""
        buffer = bytearray(size)
        count = self.recv_into(buffer, size)
        return bytes(buffer[:count])

    def makefile(self, mode: str = "rb", buffering: int | None = None, **_: object) -> io.BufferedReader:
        """A buffered binary reader over the decrypted stream, as ``http.client`` reads responses."""
        if mode != "rb":
            raise ValueError("only mode 'rb' is supported")
        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type]  # duck-typed: recv_into, fileno
        return io.BufferedReader(raw, buffering or io.DEFAULT_BUFFER_SIZE)

    def settimeout(self, timeout: float | None) -> None:
        """Set the timeout of the outer socket, which all reads and writes go through."""
        self._outer.settimeout(timeout)

    def gettimeout(self) -> float | None:
        """The outer socket's timeout."""
        return self._outer.gettimeout()

    def fileno(self) -> int:
        """The outer socket's file descriptor."""
        return self._outer.fileno()

    def version(self) -> str | None:
        """The inner TLS version, such as ``TLSv1.3``."""
        return self._tls.version()

    def close(self) -> None:
        """Close the outer connection (no close_notify: the proxy connection is simply dropped)."""
        if not self._closed:
            self._closed = True
            self._outer.close()

    def _decref_socketios(self) -> None:
        """Called by ``socket.SocketIO.close``; the connection itself closes with :meth:`close`."""

    # -- moving records between the memory buffers and the outer socket ---------------------------------

    def _io(self, operation: Any, *args: Any) -> Any:
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self._outer.recv(_RECORD)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            except ssl.SSLWantWriteError:  # pragma: no cover - memory BIOs do not fill up
                self._flush()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._outer.sendall(data)
