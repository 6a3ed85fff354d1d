"""Where an exchange's EC2 instance identity document is judged: verified, then checked against the key.

The signature is verified before any transaction (it is CPU only); the result is then checked inside
the exchange's transaction against the key's record: bound instance, allowed account, launch time.
A cluster that requires documents refuses an exchange without one (``missing_document``).
"""

from __future__ import annotations

from keysvc.core.identity import IdentityDocument, IdentityPolicy, check_document
from keysvc.core.models import KeyRecord
from keysvc.service.ports import IdentityVerifier
from keysvc.wire.results import Failure, Reason


def verify(
    verifier: IdentityVerifier | None, identity: tuple[bytes, str] | None
) -> IdentityDocument | Failure | None:
    """Return the verified document, why it failed, or None when the exchange carried none."""
    if identity is None:
        return None
    if verifier is None:
        return Failure(Reason.BAD_SIGNATURE, "no trust directory is configured for identity documents")
    result = verifier.verify(*identity)
    return result if isinstance(result, Failure) else result.value


def refusal(
    policy: IdentityPolicy, rec: KeyRecord, verified: IdentityDocument | Failure | None
) -> Failure | None:
    """Return why this key may not be exchanged with ``verified``, or None when it may."""
    if isinstance(verified, Failure):
        return verified
    if verified is None:
        return Failure(Reason.MISSING_DOCUMENT, "this cluster requires it") if policy.require else None
    return check_document(verified, bound_instance=rec.instance, started_at=rec.started_at, policy=policy)
