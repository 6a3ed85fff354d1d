"""An in-memory keysvc + bucket behind the agent's ``Requester`` interface, for pure unit tests only.

Integration tests use the real ``keysvc serve`` and fake-gcs-server instead. ``reassemble`` is shared:
it rebuilds each (source, stream) from object suffixes and fails on any gap or overlap.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.transport import Response
from keysvc.wire.objectnames import parse_object_suffix, parse_suffix

BUCKET = "http://bucket.test/nodelogs-test/"


@dataclass
class FakeCloud:
    """Answers grant requests like keysvc and PUTs like a create-only bucket."""

    key: str
    lifetime: float = 3600.0
    objects: dict[str, bytes] = field(default_factory=dict)
    refused: bool = False
    #: The 401 body: keysvc's uniform refusal unless a test makes it key_expired/key_revoked.
    refusal: bytes = b'{"error":"unauthorized"}'
    #: The key record's scope, sent back in every answer as keysvc does.
    scope: dict[str, str] = field(default_factory=lambda: {"cluster": "c1", "node": "n1", "region": "us"})
    faults: list[Callable[[str, str], Response | None]] = field(default_factory=list)
    grant_calls: int = 0
    put_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.time)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Route one request."""
        with self.lock:
            for fault in list(self.faults):
                answer = fault(method, url)
                if answer is not None:
                    return answer
            if method == "POST" and url.endswith("/v1/ingest/grants"):
                return self._grant(headers or {}, body or b"")
            if method == "PUT" and url.startswith(BUCKET):
                return self._put(url.removeprefix(BUCKET), headers or {}, body or b"")
            return Response(404, {}, b"")

    def _grant(self, headers: Mapping[str, str], body: bytes) -> Response:
        self.grant_calls += 1
        if self.refused or headers.get("Authorization") != f"Bearer {self.key}":
            return Response(401, {}, self.refusal)
        request = json.loads(body)
        now = time.time()
        grants = []
        for item in request["objects"]:
            parse_object_suffix(item["name"])
            grants.append(
                {
                    "name": item["name"],
                    "object": item["name"],
                    "url": BUCKET + item["name"],
                    "method": "PUT",
                    "headers": {"content-type": "application/gzip", "x-goog-if-generation-match": "0"},
                    "expires_at": now + 300,
                }
            )
        answer = {
            "key_id": "k",
            **self.scope,
            "server_time": now,
            "key_expires_at": self.started + self.lifetime,
            "bucket": "nodelogs-test",
            "grants": grants,
        }
        return Response(200, {}, json.dumps(answer).encode())

    def _put(self, name: str, headers: Mapping[str, str], body: bytes) -> Response:
        self.put_calls += 1
        if headers.get("content-type") != "application/gzip":
            return Response(400, {}, b"bad headers")
        if name in self.objects:
            return Response(412, {}, b"")
        self.objects[name] = body
        return Response(200, {}, b"{}")


def reassemble(objects: Mapping[str, bytes]) -> dict[tuple[str, str], bytes]:
    """Rebuild every (source, stream) from its objects; raise AssertionError on a gap or an overlap."""
    by_stream: dict[tuple[str, str], list[tuple[int, int, bytes]]] = {}
    for suffix, body in objects.items():
        if suffix.endswith(".json"):
            continue  # a generation or gap record: no log bytes
        name = parse_suffix(suffix)
        data = gzip.decompress(body)
        assert len(data) == name.end - name.start, f"{suffix} holds {len(data)} bytes"
        by_stream.setdefault((name.source, name.stream), []).append((name.start, name.end, data))
    streams = {}
    for stream, parts in by_stream.items():
        parts.sort()
        position = 0
        pieces = []
        for start, end, data in parts:
            assert start == position, (
                f"{stream}: {'gap' if start > position else 'overlap'} at {position}->{start}"
            )
            pieces.append(data)
            position = end
        streams[stream] = b"".join(pieces)
    return streams
