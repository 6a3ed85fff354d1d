"""Render the EC2 user data that puts a node's key on disk and starts the agent. Pure: no I/O.

Three forms, all writing the same two files (see the node-side file contract):

- ``/etc/nodelogs/key``: the key, one line, mode 0600, owner root;
- ``/etc/nodelogs/agent.env``: the agent's systemd ``EnvironmentFile``, mode 0600.

``cloud-config``
    ``write_files`` writes both files with ``permissions: '0600'`` and ``bootcmd`` plus ``runcmd``
    start ``nodelogs-agent.service`` with ``--no-block``. cloud-init 22.4 writes a file's content
    first, under the process umask, and chmods it afterwards (``cloudinit.util.write_file``), so
    ``/etc/nodelogs`` must be a 0700 root directory before it runs: during that window nobody but
    root can even look up the path. The image creates it so (``packer/install-agent.sh``) and
    ``bootcmd``, which runs before ``write_files`` in the same stage, makes sure of it again.
    ``bootcmd`` runs on every boot inside ``cloud-init.service``; the start job it queues waits for
    that oneshot to finish because the unit is ordered ``After=cloud-init.service``, so the agent
    starts as soon as the key exists, before the user's own scripts (run by ``cloud-final``, in
    name order, ahead of ``runcmd``). ``runcmd`` repeats the start once per instance, a no-op when
    the agent already runs.
``shell``
    A POSIX ``sh`` snippet to paste, at the top level, into existing user data (an EKS bootstrap
    script, say). It turns xtrace and verbose off around the key and restores the caller's settings,
    writes each file in a subshell with ``umask 077`` through ``mktemp`` in the same directory plus
    ``mv``, and hands the key only to the ``printf`` builtin, so it never shows in a process list.
    A failure is reported on stderr and never aborts the caller's script, even under ``set -e``.
``mime``
    A ``multipart/mixed`` document holding the cloud-config as a ``text/cloud-config`` part with a
    ``Merge-Type`` header, so cloud-init merges it with the user's own parts: lists append, the
    user's keys win.

Every value is validated before it is placed in YAML, shell or an environment file, so nothing a
caller passes can break out of its quoting.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from urllib.parse import urlsplit

from keysvc.core import ids
from keysvc.errors import InvalidInput
from keysvc.wire.keyformat import parse
from keysvc.wire.results import Failure

FORMS = ("cloud-config", "shell", "mime")
KEY_PATH = "/etc/nodelogs/key"
ENV_PATH = "/etc/nodelogs/agent.env"
CONFIG_DIR = "/etc/nodelogs"
UNIT = "nodelogs-agent.service"
MERGE_TYPE = "list(append)+dict(no_replace,recurse_list)+str()"

# A source is a file path, a glob or ``journal:<unit>``; no commas (the list separator), no
# whitespace, quotes, ``$``, backslashes or control characters.
_SOURCE = re.compile(r"(?:journal:[A-Za-z0-9:_.@-]{1,256}|/[A-Za-z0-9_./*?\[\]@+-]{0,4095})")
# Host names and URL paths restricted to characters that need no quoting anywhere we put them.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")
_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]*)*")


@dataclass(frozen=True)
class AgentSettings:
    """What the agent needs besides its key: where keysvc is and who this node is."""

    endpoint: str
    cluster: str
    node: str
    region: str
    sources: tuple[str, ...] = ()
    #: The key's expiry (Unix seconds). Rendered as ``NODELOGS_KEY_EXPIRES_AT`` (rounded up to the
    #: second): the agent stops by it even when it never reaches keysvc; keysvc's answer still wins.
    key_expires_at: float | None = None


def render(form: str, key: str, agent: AgentSettings) -> str:
    """Return user data of ``form`` (``cloud-config``, ``shell`` or ``mime``) for ``key``."""
    checked_key = _checked_key(key)
    env_lines = environment_lines(agent)
    if form == "cloud-config":
        return _cloud_config(checked_key, env_lines)
    if form == "shell":
        return _shell(checked_key, env_lines)
    if form == "mime":
        return _mime(_cloud_config(checked_key, env_lines))
    raise InvalidInput(f"unknown user data form: expected one of {', '.join(FORMS)}")


def environment_lines(agent: AgentSettings) -> tuple[str, ...]:
    """Return the ``KEY=value`` lines of ``agent.env``, after validating every value."""
    lines = [
        f"NODELOGS_ENDPOINT={_checked_endpoint(agent.endpoint)}",
        f"NODELOGS_CLUSTER={ids.cluster_id(agent.cluster)}",
        f"NODELOGS_NODE={ids.node_id(agent.node)}",
        f"NODELOGS_REGION={ids.region(agent.region)}",
    ]
    if agent.key_expires_at is not None:
        lines.append(f"NODELOGS_KEY_EXPIRES_AT={_checked_expiry(agent.key_expires_at)}")
    if agent.sources:
        lines.append(f"NODELOGS_SOURCES={','.join(_checked_source(s) for s in agent.sources)}")
    return tuple(lines)


def _checked_expiry(value: float) -> int:
    # Digits only, so it needs no quoting anywhere; rounded up, so it stays an upper bound.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 2**40:
        raise InvalidInput("invalid key expiry: expected positive Unix seconds")
    return math.ceil(value)


def _checked_key(key: str) -> str:
    if not isinstance(key, str) or isinstance(parse(key), Failure):
        raise InvalidInput("the key is not a well-formed nodelogs key")
    return key


def _checked_endpoint(endpoint: str) -> str:
    try:
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    except ValueError:  # an unbalanced "[" or "]" in the host
        parts = None
    if (
        parts is None
        or parts.scheme not in {"https", "http"}
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or not _HOST.fullmatch(parts.hostname or "")
        or not _PATH.fullmatch(parts.path)
        or endpoint != f"{parts.scheme}://{parts.netloc}{parts.path}"
    ):
        raise InvalidInput("invalid endpoint: expected an http(s) URL without credentials, query or fragment")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError as exc:
        raise InvalidInput("invalid endpoint: the port is out of range") from exc
    return endpoint


def _checked_source(source: str) -> str:
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        raise InvalidInput(
            "invalid source: expected an absolute path or glob, or journal:<unit>, "
            "without commas, spaces or quotes"
        )
    return source


def _cloud_config(key: str, env_lines: tuple[str, ...]) -> str:
    # Every value is from a quote-free alphabet (validated above), so double quotes are exact YAML.
    env_block = "".join(f"      {line}\n" for line in env_lines)
    start = f"[systemctl, start, --no-block, {UNIT}]"
    return (
        "#cloud-config\n"
        "# nodelogs: the node's ingest key and agent settings, root-only (0600) in a 0700 directory\n"
        "# the image created; then start the agent, which uploads this node's startup logs.\n"
        "write_files:\n"
        f"  - path: {KEY_PATH}\n"
        "    owner: root:root\n"
        "    permissions: '0600'\n"
        f'    content: "{key}\\n"\n'
        f"  - path: {ENV_PATH}\n"
        "    owner: root:root\n"
        "    permissions: '0600'\n"
        "    content: |\n"
        f"{env_block}"
        "bootcmd:\n"
        f'  - [mkdir, -p, -m, "0700", {CONFIG_DIR}]\n'
        f'  - [chmod, "0700", {CONFIG_DIR}]\n'
        f"  - {start}\n"
        "runcmd:\n"
        f"  - {start}\n"
    )


def _shell(key: str, env_lines: tuple[str, ...]) -> str:
    # Single quotes are exact here: neither the key nor any setting can contain one.
    env_args = " ".join(f"'{line}'" for line in env_lines)
    return f"""\
# --- nodelogs agent: begin (rendered by keysvc; contains a secret, keep tracing off) ---
case $- in *x*) nodelogs_xtrace=on ;; *) nodelogs_xtrace=off ;; esac
case $- in *v*) nodelogs_verbose=on ;; *) nodelogs_verbose=off ;; esac
set +xv
if (
  umask 077 &&
  mkdir -p {CONFIG_DIR} &&
  chmod 0700 {CONFIG_DIR} &&
  nodelogs_tmp=$(mktemp {CONFIG_DIR}/.key.XXXXXXXX) &&
  printf '%s\\n' '{key}' >"$nodelogs_tmp" &&
  mv -f "$nodelogs_tmp" {KEY_PATH} &&
  nodelogs_tmp=$(mktemp {CONFIG_DIR}/.agent-env.XXXXXXXX) &&
  printf '%s\\n' {env_args} >"$nodelogs_tmp" &&
  mv -f "$nodelogs_tmp" {ENV_PATH}
); then
  systemctl start --no-block {UNIT} || printf 'nodelogs: could not start {UNIT}\\n' >&2
else
  rm -f {CONFIG_DIR}/.key.* {CONFIG_DIR}/.agent-env.*
  printf 'nodelogs: could not write {CONFIG_DIR}; the agent will not run\\n' >&2
fi
if [ "$nodelogs_verbose" = on ]; then set -v; fi
if [ "$nodelogs_xtrace" = on ]; then set -x; fi
unset nodelogs_xtrace nodelogs_verbose
# --- nodelogs agent: end ---
"""


def _mime(cloud_config: str) -> str:
    document = MIMEMultipart("mixed")
    part = MIMEText(cloud_config, "cloud-config", "us-ascii")
    part["Merge-Type"] = MERGE_TYPE
    part.add_header("Content-Disposition", "attachment", filename="nodelogs.cfg")
    document.attach(part)
    return document.as_string()
