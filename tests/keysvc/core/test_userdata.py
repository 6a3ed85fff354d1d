"""Unit tests for keysvc.core.userdata: the three forms and the validation guarding their quoting."""

from __future__ import annotations

import email
import re
from email.message import Message

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from keysvc.core import userdata
from keysvc.core.userdata import AgentSettings, render
from keysvc.errors import InvalidInput
from keysvc.wire import keyformat

KEY = keyformat.mint().key
AGENT = AgentSettings(
    endpoint="https://keysvc.eu.example.com",
    cluster="prod-1",
    node="ip-10-0-0-1.eu-west-1.compute.internal",
    region="eu",
)
START = ["systemctl", "start", "--no-block", "nodelogs-agent.service"]


def _files(config: dict[str, object]) -> dict[str, dict[str, str]]:
    entries = config["write_files"]
    assert isinstance(entries, list)
    return {entry["path"]: entry for entry in entries}


def test_cloud_config_writes_key_and_settings_root_only() -> None:
    """The cloud-config writes the key (one line) and agent.env, both root-owned with mode 0600."""
    text = render("cloud-config", KEY, AGENT)
    assert text.startswith("#cloud-config\n")
    files = _files(yaml.safe_load(text))
    assert set(files) == {"/etc/nodelogs/key", "/etc/nodelogs/agent.env"}
    assert files["/etc/nodelogs/key"]["content"] == KEY + "\n"
    for entry in files.values():
        assert entry["permissions"] == "0600"
        assert entry["owner"] == "root:root"
    assert files["/etc/nodelogs/agent.env"]["content"].splitlines() == [
        "NODELOGS_ENDPOINT=https://keysvc.eu.example.com",
        "NODELOGS_CLUSTER=prod-1",
        "NODELOGS_NODE=ip-10-0-0-1.eu-west-1.compute.internal",
        "NODELOGS_REGION=eu",
    ]


def test_cloud_config_makes_the_directory_private_before_write_files_and_starts_the_unit() -> None:
    """bootcmd makes /etc/nodelogs 0700 before write_files runs; bootcmd and runcmd start the unit."""
    config = yaml.safe_load(render("cloud-config", KEY, AGENT))
    assert config["bootcmd"] == [
        ["mkdir", "-p", "-m", "0700", "/etc/nodelogs"],
        ["chmod", "0700", "/etc/nodelogs"],
        START,
    ]
    assert config["runcmd"] == [START]


def test_sources_are_added_only_when_given() -> None:
    """NODELOGS_SOURCES appears, comma separated, only when sources are configured."""
    assert "NODELOGS_SOURCES" not in render("cloud-config", KEY, AGENT)
    agent = AgentSettings(
        **{**AGENT.__dict__, "sources": ("/var/log/cloud-init*.log", "journal:kubelet.service")}
    )
    lines = userdata.environment_lines(agent)
    assert lines[-1] == "NODELOGS_SOURCES=/var/log/cloud-init*.log,journal:kubelet.service"


def test_the_key_expiry_is_rendered_rounded_up_in_every_form() -> None:
    """NODELOGS_KEY_EXPIRES_AT is whole seconds, rounded up so it stays an upper bound, in all three forms."""
    agent = AgentSettings(**{**AGENT.__dict__, "key_expires_at": 1796112000.2})
    assert userdata.environment_lines(agent)[-1] == "NODELOGS_KEY_EXPIRES_AT=1796112001"
    for form in ("cloud-config", "shell", "mime"):
        assert "NODELOGS_KEY_EXPIRES_AT=1796112001" in render(form, KEY, agent)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, 2.0**41])
def test_a_bad_key_expiry_is_refused(value: float) -> None:
    """A non-positive, non-finite, boolean or absurd expiry is InvalidInput, never rendered."""
    with pytest.raises(InvalidInput, match="key expiry"):
        render("shell", KEY, AgentSettings(**{**AGENT.__dict__, "key_expires_at": value}))


def test_shell_snippet_hands_the_key_only_to_printf() -> None:
    """In the shell form, the only line holding the key is a printf into the temporary file."""
    text = render("shell", KEY, AGENT)
    holding = [line.strip() for line in text.splitlines() if KEY in line]
    assert holding == [f"printf '%s\\n' '{KEY}' >\"$nodelogs_tmp\" &&"]


def test_shell_snippet_turns_tracing_off_before_the_key_and_restores_it_after() -> None:
    """`set +xv` comes before the key and the caller's xtrace/verbose state is restored after it."""
    lines = render("shell", KEY, AGENT).splitlines()
    key_line = next(i for i, line in enumerate(lines) if KEY in line)
    off = lines.index("set +xv")
    assert off < key_line
    assert lines.index('if [ "$nodelogs_xtrace" = on ]; then set -x; fi') > key_line
    assert lines.index('if [ "$nodelogs_verbose" = on ]; then set -v; fi') > key_line
    assert "umask 077 &&" in lines[off + 2]


def test_mime_holds_one_mergeable_cloud_config_part() -> None:
    """The MIME form is multipart/mixed with one text/cloud-config part carrying the merge header."""
    message = email.message_from_string(render("mime", KEY, AGENT))
    assert message.get_content_type() == "multipart/mixed"
    parts = [part for part in message.walk() if not part.is_multipart()]
    assert len(parts) == 1
    part: Message = parts[0]
    assert part.get_content_type() == "text/cloud-config"
    assert part["Merge-Type"] == "list(append)+dict(no_replace,recurse_list)+str()"
    assert part.get_filename() == "nodelogs.cfg"
    assert part.get_payload(decode=True).decode("ascii") == render("cloud-config", KEY, AGENT)


def test_unknown_form_is_refused() -> None:
    """A form other than cloud-config, shell or mime is InvalidInput."""
    with pytest.raises(InvalidInput, match="unknown user data form"):
        render("powershell", KEY, AGENT)


@pytest.mark.parametrize(
    "key",
    ["", "not-a-key", KEY[:-1] + ("a" if KEY[-1] != "a" else "b"), KEY + "'", f"{KEY}\n"],
    ids=["empty", "garbage", "bad-checksum", "trailing-quote", "trailing-newline"],
)
def test_malformed_key_is_refused_without_echoing_it(key: str) -> None:
    """A key that does not parse (or has a bad checksum) is refused, and the message does not contain it."""
    with pytest.raises(InvalidInput) as info:
        render("shell", key, AGENT)
    assert key.strip() == "" or key.strip() not in str(info.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://keysvc.example.com",
        "https://user:pw@keysvc.example.com",
        "https://keysvc.example.com/?x=1",
        "https://keysvc.example.com/#f",
        "https://keysvc.example.com/a b",
        "https://keysvc.example.com/'",
        "https://keysvc.example.com\n",
        "https://keysvc.example.com:99999",
        "https://$(reboot)",
        "keysvc.example.com",
    ],
)
def test_unsafe_endpoint_is_refused(endpoint: str) -> None:
    """Endpoints with credentials, queries, odd characters or bad ports are refused."""
    with pytest.raises(InvalidInput, match="endpoint"):
        render("cloud-config", KEY, AgentSettings(**{**AGENT.__dict__, "endpoint": endpoint}))


@pytest.mark.parametrize(
    "source", ["relative.log", "/var/log/a,b", "/var/log/a b", "/x'y", "journal:", "/a\nb"]
)
def test_unsafe_source_is_refused(source: str) -> None:
    """A source must be an absolute path/glob or journal:<unit>, without separators or quotes."""
    with pytest.raises(InvalidInput, match="source"):
        render("shell", KEY, AgentSettings(**{**AGENT.__dict__, "sources": (source,)}))


def test_ids_are_validated() -> None:
    """Cluster, node and region go through keysvc.core.ids and are refused when malformed."""
    for field, value in (("cluster", "Prod_1"), ("node", "a..b"), ("region", "EU")):
        with pytest.raises(InvalidInput, match=field):
            render("cloud-config", KEY, AgentSettings(**{**AGENT.__dict__, field: value}))


_SAFE_OUTSIDE_QUOTES = re.compile(r"'[^']*'")


@given(
    endpoint=st.text(max_size=40),
    source=st.text(max_size=40),
)
def test_any_accepted_input_stays_inside_its_quotes(endpoint: str, source: str) -> None:
    """Whatever values are accepted hold no quote, $, backtick, backslash or newline in the shell form."""
    agent = AgentSettings(
        endpoint="https://k.example.com" + endpoint,
        cluster="c",
        node="n",
        region="r",
        sources=("/" + source,),
    )
    try:
        text = render("shell", KEY, agent)
    except InvalidInput:
        return
    printf_line = next(line for line in text.splitlines() if "NODELOGS_ENDPOINT=" in line)
    outside = _SAFE_OUTSIDE_QUOTES.sub("", printf_line)
    assert " ".join(outside.split()) == 'printf >"$nodelogs_tmp" &&'
    for value in _SAFE_OUTSIDE_QUOTES.findall(printf_line)[1:]:  # [0] is the '%s\n' format
        assert not set(value[1:-1]) & set('$`\\\n"')
