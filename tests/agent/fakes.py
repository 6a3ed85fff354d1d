"""The agent's fake transports, written once: stand-ins for the ``Requester`` port in unit tests.

Each records every request it is sent (``sent``: method, URL, headers, body; ``timeouts``) and
answers without a network. :class:`Scripted` answers from a list, in order; :class:`ByPrefix`
answers by URL prefix.
``tests/agent/fake_cloud.py`` is the stateful one: an in-memory keysvc and create-only bucket.
Integration tests use the real ``keysvc serve`` and fake-gcs-server instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.errors import TransportError
from agent.transport import Response

Sent = tuple[str, str, dict[str, str], bytes | None]


@dataclass
class Recording:
    """The part every fake shares: it records what it was sent and defers the answer to ``answer``."""

    sent: list[Sent] = field(default_factory=list, init=False)
    timeouts: list[float | None] = field(default_factory=list, init=False)
    closed: bool = field(default=False, init=False)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Record the request, then return (or raise) what :meth:`answer` decides."""
        self.sent.append((method, url, dict(headers or {}), body))
        self.timeouts.append(timeout)
        return self.answer(method, url)

    def close(self) -> None:
        """Record that the owner closed its transport."""
        self.closed = True

    def answer(self, method: str, url: str) -> Response:
        """The answer to one request; subclasses decide."""
        raise AssertionError(f"unexpected {method} {url}")


class Scripted(Recording):
    """Answers requests from a script of Responses or exceptions, in order."""

    def __init__(self, *answers: Response | Exception) -> None:
        super().__init__()
        self.answers = list(answers)

    def answer(self, method: str, url: str) -> Response:
        """Pop the next scripted answer (raising it if it is an exception)."""
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class ByPrefix(Recording):
    """Answers by URL prefix: a status (a grant's 200 carries ``grant_body``), or an error to raise."""

    answers: dict[str, int | TransportError] = field(default_factory=dict)
    tls: tuple[str, ...] = ()
    grant_body: bytes = b"{}"

    def answer(self, method: str, url: str) -> Response:
        """Return or raise what ``answers`` says for the first prefix of ``url``."""
        for prefix, answer in self.answers.items():
            if url.startswith(prefix):
                if isinstance(answer, TransportError):
                    raise answer
                body = self.grant_body if answer == 200 and "grants" in url else b""
                return Response(answer, {}, body, tls=self.tls)
        raise AssertionError(f"unexpected URL {url}")
