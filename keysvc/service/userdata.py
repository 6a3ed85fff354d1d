"""The user data decision: which key may be rendered into user data for which node, and with what.

:class:`~keysvc.service.keys.KeyService` calls this with the stored record of the key when the store
knows it; ``keysvc userdata render`` on a host without state calls it with none.
"""

from __future__ import annotations

from collections.abc import Sequence

from keysvc.core import ids, userdata
from keysvc.core.models import KeyRecord, Region
from keysvc.errors import InvalidInput
from keysvc.wire import keyformat
from keysvc.wire.results import Failure


def key_id_of(key: object) -> str:
    """The key id of a well-formed key, else :class:`InvalidInput` (the key is never echoed)."""
    parsed = keyformat.parse(key) if isinstance(key, str) else None
    if parsed is None or isinstance(parsed, Failure):
        raise InvalidInput("the key is not a well-formed nodelogs key")
    return parsed.value.key_id


def render_user_data(
    form: str,
    key: str,
    where: Region,
    *,
    cluster: str,
    node: str,
    endpoint: str | None,
    sources: Sequence[str],
    known: KeyRecord | None,
    key_expires_at: float | None = None,
) -> str:
    """User data for ``key``; a key the store knows (``known``) must be for this cluster, node, region.

    The agent is told when the key expires: ``known``'s expiry, else ``key_expires_at``; the earlier
    of both when both are given.
    """
    key_id_of(key)
    wanted = (ids.cluster_id(cluster), ids.node_id(node), ids.region(where.name))
    if known is not None and (known.cluster, known.node, known.region) != wanted:
        raise InvalidInput(f"key {known.key_id} was issued for another cluster, node or region")
    expiries = [e for e in (known.expires_at if known is not None else None, key_expires_at) if e is not None]
    agent = userdata.AgentSettings(
        endpoint=endpoint if endpoint is not None else where.endpoint,
        cluster=wanted[0],
        node=wanted[1],
        region=wanted[2],
        sources=tuple(sources),
        key_expires_at=min(expiries) if expiries else None,
    )
    return userdata.render(form, key, agent)
