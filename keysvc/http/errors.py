"""The one place where keysvc errors become HTTP statuses and JSON error bodies.

Every error body is ``{"error": "<code>", "message": "<human text>"}``. A refused credential is
always ``401 unauthorized`` with the same message, whatever check failed: the precise reason goes
to the audit log only. The one exception is :class:`~keysvc.errors.KeyEnded`: a caller that proved
possession of its key learns that the key is expired or revoked (``key_expired``/``key_revoked``).
Messages never carry a secret, and validation errors never echo input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse

from keysvc.errors import (
    AuditIntegrityError,
    Conflict,
    InvalidInput,
    InvalidObjectName,
    KeyEnded,
    KeysvcError,
    NotFound,
    RateLimited,
    Refused,
    SigningError,
    StoreUnavailable,
)

UNAUTHORIZED_MESSAGE = "the credential was refused"
KEY_ENDED_MESSAGE = "the key has ended: it will never be accepted again"


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """Return a JSON error response."""
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=dict(headers or {}))


def unauthorized() -> JSONResponse:
    """The uniform answer to any refused credential."""
    return error_response(401, "unauthorized", UNAUTHORIZED_MESSAGE, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str = "this credential may not be used here") -> JSONResponse:
    """The answer to a valid kind of credential used where its scope does not reach."""
    return error_response(403, "forbidden", message)


def rate_limited(retry_after: float) -> JSONResponse:
    """The answer to a source that failed authentication too often."""
    seconds = str(max(1, int(retry_after)))
    return error_response(
        429, "rate_limited", "too many failed authentications; retry later", {"Retry-After": seconds}
    )


# (error type, status, code, message; None means the exception's own message). First match wins.
_MAPPING: tuple[tuple[type[KeysvcError], int, str, str | None], ...] = (
    (InvalidObjectName, 400, "invalid_object_name", None),
    (InvalidInput, 400, "invalid_input", None),
    (NotFound, 404, "not_found", None),
    (Conflict, 409, "conflict", None),
    (StoreUnavailable, 503, "unavailable", "the state store is unavailable; retry later"),
    (SigningError, 503, "signer_unavailable", "upload URLs cannot be signed right now"),
    (AuditIntegrityError, 500, "audit_integrity", None),
)


def for_error(exc: KeysvcError) -> JSONResponse:
    """Map a keysvc error to its response."""
    if isinstance(exc, RateLimited):
        return rate_limited(exc.retry_after)
    if isinstance(exc, KeyEnded):
        return error_response(401, f"key_{exc.reason}", KEY_ENDED_MESSAGE, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Refused):
        return unauthorized()
    for kind, status, code, message in _MAPPING:
        if isinstance(exc, kind):
            return error_response(status, code, message if message is not None else str(exc))
    return error_response(500, "internal", "internal error")


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> tuple[int, str, str]:
    """Turn request validation errors into ``(status, code, message)`` without echoing any input."""
    if any(error.get("type") == "json_invalid" for error in errors):
        return 400, "malformed_json", "the request body is not valid JSON"
    parts = []
    for error in errors[:5]:
        loc = [part for part in error.get("loc", ()) if part != "body"]
        msg = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden" and loc:
            # The last part is the caller's own field name: it could be anything, even a key.
            loc, msg = loc[:-1], "unknown fields are not permitted"
        where = ".".join(str(part) for part in loc) or "body"
        parts.append(f"{where}: {msg}")
    return 422, "invalid_request", "; ".join(parts)
