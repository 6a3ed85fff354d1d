"""A local stand-in for the GCE metadata server's token endpoint and the IAM Credentials ``signBlob`` API.

No emulator of either exists, so this implements their documented REST contracts and nothing more:

- ``GET /computeMetadata/v1/instance/service-accounts/default/token`` (needs ``Metadata-Flavor:
  Google``) -> ``{"access_token", "expires_in", "token_type": "Bearer"}``; ``.../default/email`` -> text;
- ``POST /v1/projects/-/serviceAccounts/{email}:signBlob`` (needs ``Authorization: Bearer <a token it
  issued>``) ``{"payload": base64}`` -> ``{"keyId", "signedBlob": base64}``, an RSA PKCS#1 v1.5
  SHA-256 signature made with a real RSA key the test generates (its public half verifies URLs).

Faults are injected per test: ``token_status`` makes the token endpoint answer that status, and
``sign_statuses`` is a queue of statuses the next signBlob calls answer instead of signing.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
EMAIL_PATH = "/computeMetadata/v1/instance/service-accounts/default/email"


@dataclass
class IamState:
    """What the server holds and counts."""

    email: str
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    sign_requests: int = 0
    token_status: int | None = None
    sign_statuses: deque[int] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The public half, to verify signed URLs."""
        return self.key.public_key()


def _handler(state: IamState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            return

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.headers.get("Metadata-Flavor") != "Google":
                self._answer(403, b'{"error": "missing Metadata-Flavor"}')
            elif self.path == EMAIL_PATH:
                self._answer(200, state.email.encode(), "application/text")
            elif self.path == TOKEN_PATH:
                with state.lock:
                    state.token_requests += 1
                    if state.token_status is not None:
                        self._answer(state.token_status, b'{"error": "injected"}')
                        return
                    token = "ya29.test-" + secrets.token_urlsafe(16)
                    state.tokens.add(token)
                self._answer(
                    200,
                    json.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).encode(),
                )
            else:
                self._answer(404, b"{}")

        def do_POST(self) -> None:
            expected = f"/v1/projects/-/serviceAccounts/{state.email}:signBlob"
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            auth = self.headers.get("Authorization", "")
            with state.lock:
                state.sign_requests += 1
                injected = state.sign_statuses.popleft() if state.sign_statuses else None
                known = auth.startswith("Bearer ") and auth[7:] in state.tokens
            if self.path != expected:
                self._answer(404, b'{"error": {"code": 404}}')
            elif not known:
                self._answer(401, b'{"error": {"code": 401, "status": "UNAUTHENTICATED"}}')
            elif injected is not None:
                self._answer(injected, json.dumps({"error": {"code": injected}}).encode())
            else:
                payload = base64.b64decode(body["payload"])
                signature = state.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
                answer = {"keyId": "test-key-1", "signedBlob": base64.b64encode(signature).decode()}
                self._answer(200, json.dumps(answer).encode())

    return Handler


class IamServer:
    """The two endpoints on one loopback port, served from a thread."""

    def __init__(self, email: str = "keysvc@nodelogs-test.iam.gserviceaccount.com") -> None:
        self.state = IamState(email)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
