"""The error answers each route documents in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from keysvc.http.schemas import ErrorBody

_TEXT = {
    400: "invalid input (ids, object names, selectors) or malformed JSON",
    401: "the credential was refused (uniform: the reason is audited, not told)",
    403: "the credential may not be used here (scope), e.g. an ingest key outside the grant endpoint",
    404: "no such key",
    409: "the operation id was already used with other parameters",
    413: "the request body is too large",
    415: "the request body is not application/json",
    422: "the body or a parameter has the wrong shape, type or unknown fields",
    429: "too many failed authentications from this address; see Retry-After",
    503: "the state store or the signer is unavailable; retry later",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return FastAPI ``responses=`` for the given error statuses, all with :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": _TEXT[status]} for status in statuses}


AUTHED = (400, 401, 403, 413, 415, 422, 429, 503)
