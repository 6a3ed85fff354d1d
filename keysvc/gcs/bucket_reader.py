"""Read a node's chunk objects from its bucket with google-cloud-storage: list them, download one.

A thin adapter for ``keysvc logs get``; the reassembly rules live in :mod:`keysvc.core.logreader`. The
bucket and prefix come from the node's region (``[regions.<name>]``); ``[gcs].endpoint`` points
the client at an emulator (fake-gcs-server) with anonymous credentials, otherwise the service-account
file from ``[gcs]`` is used when it exists, else Application Default Credentials. Library errors
become :class:`BucketReadError` where they enter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import GoogleAPIError
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import storage

from keysvc.config import Settings
from keysvc.core.models import Region
from keysvc.errors import BucketReadError, InvalidObjectName
from keysvc.wire.objectnames import ChunkName, node_prefix, parse_suffix

EMULATOR_PROJECT = "nodelogs-local"
_LIBRARY_ERRORS = (GoogleAPIError, GoogleAuthError, requests.RequestException, OSError)


@dataclass(frozen=True, slots=True)
class ListedChunk:
    """A chunk object: its parsed name and its full object name in the bucket."""

    chunk: ChunkName
    object_name: str


class GcsBucketReader:
    """Lists and downloads one node's objects."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def open(cls, settings: Settings, region: Region, cluster: str, node: str) -> GcsBucketReader:
        """Build a reader for ``cluster``/``node`` in ``region`` from keysvc's settings."""
        try:
            if settings.gcs.endpoint:
                client = storage.Client(
                    project=EMULATOR_PROJECT,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options=ClientOptions(api_endpoint=settings.gcs.endpoint),
                )
            elif settings.gcs.service_account_file.exists():
                client = storage.Client.from_service_account_json(str(settings.gcs.service_account_file))
            else:
                client = storage.Client()
        except _LIBRARY_ERRORS as exc:
            raise BucketReadError(f"cannot create a storage client: {type(exc).__name__}") from exc
        return cls(client, region.bucket, node_prefix(region.prefix, cluster, node))

    @property
    def location(self) -> str:
        """``gs://bucket/prefix/`` for messages."""
        return f"gs://{self.bucket}/{self.prefix}"

    def list_chunks(self) -> tuple[list[ListedChunk], list[str]]:
        """Return the node's chunk objects and the names under its prefix that are not chunks."""
        chunks: list[ListedChunk] = []
        strays: list[str] = []
        try:
            for blob in self._client.list_blobs(self.bucket, prefix=self.prefix):
                name = str(blob.name)
                try:
                    chunks.append(ListedChunk(parse_suffix(name[len(self.prefix) :]), name))
                except InvalidObjectName:
                    strays.append(name)
        except _LIBRARY_ERRORS as exc:
            raise BucketReadError(f"cannot list {self.location}: {_describe(exc)}") from exc
        return chunks, strays

    def read(self, object_name: str) -> bytes:
        """Download an object's stored bytes (still gzip-compressed)."""
        try:
            blob = self._client.bucket(self.bucket).blob(object_name)
            data: bytes = blob.download_as_bytes(raw_download=True)
        except _LIBRARY_ERRORS as exc:
            raise BucketReadError(f"cannot read gs://{self.bucket}/{object_name}: {_describe(exc)}") from exc
        return data


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
