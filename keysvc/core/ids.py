"""Strict validation of the identifiers an AddNode carries.

Every id ends up in object names, audit records and SQL parameters, so each is held to a narrow
charset and length. A refusal says which field is wrong and never echoes more than a safe prefix.
"""

from __future__ import annotations

import re

from keysvc.core import tokenformat
from keysvc.errors import InvalidInput
from keysvc.wire import keyformat

# Kubernetes cluster names and our region names are DNS labels.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Node names are DNS subdomains (RFC 1123), as Kubernetes requires, capped at 253 characters.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_INSTANCE = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_REGION = re.compile(r"[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?")
_OPERATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _check(field: str, value: object, pattern: re.Pattern[str], max_len: int) -> str:
    if not isinstance(value, str) or len(value) > max_len or not pattern.fullmatch(value):
        raise InvalidInput(f"invalid {field}: expected {_DESCRIBE[field]}")
    return value


_DESCRIBE = {
    "cluster": "a DNS label (a-z, 0-9, '-', at most 63 characters)",
    "node": "a DNS subdomain (a-z, 0-9, '-', '.', at most 253 characters)",
    "instance": "an EC2 instance id such as i-0123456789abcdef0",
    "region": "a region name (a-z, 0-9, '-', at most 32 characters)",
    "operation_id": "1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'",
}


def cluster_id(value: object) -> str:
    """Return ``value`` if it is a valid cluster id, else raise :class:`InvalidInput`."""
    return _check("cluster", value, _DNS_LABEL, 63)


def node_id(value: object) -> str:
    """Return ``value`` if it is a valid node name, else raise :class:`InvalidInput`."""
    return _check("node", value, _DNS_SUBDOMAIN, 253)


def instance_id(value: object) -> str:
    """Return ``value`` if it is a valid EC2 instance id, else raise :class:`InvalidInput`."""
    return _check("instance", value, _INSTANCE, 19)


def region(value: object) -> str:
    """Return ``value`` if it is a valid region name, else raise :class:`InvalidInput`."""
    return _check("region", value, _REGION, 32)


def operation_id(value: object) -> str:
    """Return ``value`` if it is a valid AddNode operation id, else raise :class:`InvalidInput`.

    Its charset admits ``_``, so a key or token pasted here would fit; it is stored and audited for
    good, so anything carrying a secret's prefix is refused.
    """
    checked = _check("operation_id", value, _OPERATION, 128)
    if keyformat.PREFIX in checked or tokenformat.PREFIX in checked:
        raise InvalidInput("invalid operation_id: it contains something shaped like a key or token")
    return checked
