"""Unit tests of provisioner and admin credentials: hashing, scopes, the file, and live rotation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keysvc.errors import ConfigError, InvalidInput, NotFound
from keysvc.files.credentials import (
    CredentialFile,
    create_credential,
    delete_credential,
    mint_token,
    parse_credentials,
    read_credentials,
)
from keysvc.wire.results import Failure, Reason, Success

T0 = 1_800_000_000.0


def reason(result: object) -> Reason:
    """The reason of a failed authentication."""
    assert isinstance(result, Failure)
    return result.reason


def test_created_token_is_stored_only_as_hash(tmp_path: Path) -> None:
    """The file holds the hash and never the token; it is mode 0600."""
    path = tmp_path / "credentials.toml"
    cred, token = create_credential(path, name="provisioner", scopes=["nodes:add"], now=T0)
    text = path.read_text()
    assert token not in text
    assert token.split("_")[2] not in text
    assert cred.sha256.hex() in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_credentials(path) == {cred.id: cred}


def test_token_authenticates_with_its_scopes_only(tmp_path: Path) -> None:
    """A token passes for a scope it carries and fails with out_of_scope for one it lacks."""
    path = tmp_path / "c.toml"
    cred, token = create_credential(path, name="prov", scopes=["nodes:add", "nodes:terminate"], now=T0)
    live = CredentialFile(path)
    result = live.authenticate(token, "nodes:add")
    assert isinstance(result, Success)
    assert result.value.id == cred.id
    assert reason(live.authenticate(token, "admin:read")) is Reason.OUT_OF_SCOPE


def test_refusal_reasons(tmp_path: Path) -> None:
    """Malformed, unknown and wrong-secret tokens each get their precise reason."""
    path = tmp_path / "c.toml"
    _, token = create_credential(path, name="prov", scopes=["nodes:add"], now=T0)
    live = CredentialFile(path)
    assert reason(live.authenticate("Bearer nonsense", "nodes:add")) is Reason.MALFORMED
    assert reason(live.authenticate(mint_token()[1], "nodes:add")) is Reason.UNKNOWN
    wrong_secret = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    assert reason(live.authenticate(wrong_secret, "nodes:add")) is Reason.HASH_MISMATCH


def test_rotation_without_restart(tmp_path: Path) -> None:
    """A running CredentialFile sees new tokens and stops accepting deleted ones at the next call."""
    path = tmp_path / "c.toml"
    old, old_token = create_credential(path, name="prov", scopes=["nodes:add"], now=T0)
    live = CredentialFile(path)
    assert isinstance(live.authenticate(old_token, "nodes:add"), Success)
    _, new_token = create_credential(path, name="prov-2", scopes=["nodes:add"], now=T0)
    assert isinstance(live.authenticate(new_token, "nodes:add"), Success)
    delete_credential(path, old.id)
    assert reason(live.authenticate(old_token, "nodes:add")) is Reason.UNKNOWN
    assert isinstance(live.authenticate(new_token, "nodes:add"), Success)


def test_a_broken_file_keeps_the_last_good_set(tmp_path: Path) -> None:
    """A file that stops parsing leaves the previous credentials in force."""
    path = tmp_path / "c.toml"
    _, token = create_credential(path, name="prov", scopes=["nodes:add"], now=T0)
    live = CredentialFile(path)
    assert isinstance(live.authenticate(token, "nodes:add"), Success)
    path.write_text("this is [not toml")
    os.utime(path, ns=(1, 1))
    assert isinstance(live.authenticate(token, "nodes:add"), Success)


def test_a_file_that_is_not_utf8_is_a_config_error_and_keeps_the_last_good_set(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a ConfigError, and a running server keeps its last good credentials."""
    path = tmp_path / "c.toml"
    _, token = create_credential(path, name="prov", scopes=["nodes:add"], now=T0)
    live = CredentialFile(path)
    assert isinstance(live.authenticate(token, "nodes:add"), Success)
    path.write_bytes(b"\xff\xfe[[credential]]\n")
    os.utime(path, ns=(1, 1))
    assert isinstance(live.authenticate(token, "nodes:add"), Success)
    with pytest.raises(ConfigError, match="UTF-8"):
        read_credentials(path)


def test_a_missing_file_accepts_nothing(tmp_path: Path) -> None:
    """Without a credentials file every token is unknown."""
    live = CredentialFile(tmp_path / "absent.toml")
    assert reason(live.authenticate(mint_token()[1], "nodes:add")) is Reason.UNKNOWN


@pytest.mark.parametrize(
    ("name", "scopes"),
    [("bad name", ["nodes:add"]), ("ok", []), ("ok", ["root"]), ("x" * 65, ["nodes:add"])],
)
def test_create_validates_name_and_scopes(tmp_path: Path, name: str, scopes: list[str]) -> None:
    """Names are a safe charset and scopes come from the fixed list."""
    with pytest.raises(InvalidInput):
        create_credential(tmp_path / "c.toml", name=name, scopes=scopes, now=T0)


def test_delete_unknown_is_not_found(tmp_path: Path) -> None:
    """Deleting an id that is not in the file says so."""
    with pytest.raises(NotFound):
        delete_credential(tmp_path / "c.toml", "aaaaaaaaaaaaaaaa")


@pytest.mark.parametrize(
    "text",
    [
        "[other]\n",
        '[[credential]]\nid = "aaaaaaaaaaaaaaaa"\n',
        '[[credential]]\nid = "aaaaaaaaaaaaaaaa"\nname = "n"\nscopes = ["nodes:add"]\n'
        'sha256 = "zz"\ncreated_at = "x"\n',
        '[[credential]]\nid = "aaaaaaaaaaaaaaaa"\nname = "n"\nscopes = ["god"]\nsha256 = "'
        + "0" * 64
        + '"\ncreated_at = "x"\n',
    ],
)
def test_parse_refuses_unexpected_content(text: str) -> None:
    """Unknown tables, missing fields, bad hashes and unknown scopes are configuration errors."""
    with pytest.raises(ConfigError):
        parse_credentials(text)
