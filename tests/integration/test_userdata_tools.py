"""Rendered user data checked with real tools: cloud-init schema and write_files, shellcheck, sh, bash.

The shell snippet and cloud-init's own write_files code run inside a scratch root: a chroot in a
private mount namespace with the host's /usr bind-mounted and an empty /etc, so they write the real
paths (/etc/nodelogs/...) without touching the host. Stubs on PATH record what the snippet runs.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from keysvc.core.userdata import AgentSettings, render
from keysvc.wire import keyformat
from tests.integration.cli_state import config_for, keysvc

pytestmark = pytest.mark.integration

KEY = keyformat.mint().key
AGENT = AgentSettings(
    endpoint="https://keysvc.eu.example.com",
    cluster="prod-1",
    node="ip-10-0-0-1.eu-west-1.compute.internal",
    region="eu",
    sources=("/var/log/cloud-init-output.log", "journal:kubelet.service"),
    key_expires_at=1796112000.25,
)
ENV_LINES = [
    "NODELOGS_ENDPOINT=https://keysvc.eu.example.com",
    "NODELOGS_CLUSTER=prod-1",
    "NODELOGS_NODE=ip-10-0-0-1.eu-west-1.compute.internal",
    "NODELOGS_REGION=eu",
    "NODELOGS_KEY_EXPIRES_AT=1796112001",
    "NODELOGS_SOURCES=/var/log/cloud-init-output.log,journal:kubelet.service",
]
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


@pytest.fixture
def root_with_unshare() -> None:
    """The scratch root needs root and unshare(1) for a private mount namespace; CI runs as root."""
    assert os.geteuid() == 0, "these tests build a scratch root and must run as root"
    assert shutil.which("unshare"), "unshare(1) is missing (util-linux)"


needs_root = pytest.mark.usefixtures("root_with_unshare")


@dataclass
class ScratchRoot:
    """A chroot whose /usr is the host's and whose /etc starts empty."""

    path: Path

    def run(self, argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the scratch root with only the stubs and /usr on PATH."""
        script = 'mount --bind /usr "$1/usr" && root=$1 && shift && exec chroot "$root" "$@"'
        return subprocess.run(
            [
                "unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", script, "sh",
                str(self.path), "/usr/bin/env", "-i", "PATH=/stub:/usr/bin:/usr/sbin", "HOME=/root", *argv,
            ],
            input=stdin, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def file(self, path: str) -> Path:
        """The host path of ``path`` inside the root."""
        return self.path / path.lstrip("/")


@pytest.fixture
def scratch_root(tmp_path: Path) -> ScratchRoot:
    """A fresh scratch root with stubs for systemctl, mv (records the temp file's mode) and printf."""
    root = tmp_path / "root"
    for name in ("usr", "etc", "tmp", "stub", "root", "dev"):
        (root / name).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    for link in ("bin", "lib", "lib64", "sbin"):
        (root / link).symlink_to(f"usr/{link}")
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    stubs = {
        "systemctl": 'printf "%s\\n" "$*" >> /systemctl.log\n',
        # Records the mode and owner of the file about to be renamed into place, then renames it.
        "mv": 'for a in "$@"; do last=$src; src=$a; done\n'
        'stat -c "%a %U %n" "$last" >> /mv.log\nexec /usr/bin/mv "$@"\n',
        # printf must be the shell builtin: if this external one ever runs, the key was in an argv.
        "printf": 'echo "$@" >> /printf-leak.log\n',
    }
    for name, body in stubs.items():
        stub = root / "stub" / name
        stub.write_text("#!/bin/sh\n" + body)
        stub.chmod(0o755)
    return ScratchRoot(root)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _check_node_files(root: ScratchRoot) -> None:
    assert _mode(root.file("/etc/nodelogs")) == 0o700
    key_file, env_file = root.file("/etc/nodelogs/key"), root.file("/etc/nodelogs/agent.env")
    assert key_file.read_text() == KEY + "\n"
    assert env_file.read_text().splitlines() == ENV_LINES
    for path in (key_file, env_file):
        assert _mode(path) == 0o600
        assert path.stat().st_uid == 0
    assert sorted(p.name for p in root.file("/etc/nodelogs").iterdir()) == ["agent.env", "key"]


def test_cloud_config_passes_cloud_init_schema(tmp_path: Path) -> None:
    """`cloud-init schema --config-file` accepts the cloud-config form."""
    config = tmp_path / "user-data.cfg"
    config.write_text(render("cloud-config", KEY, AGENT))
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_would_catch_a_broken_form(tmp_path: Path) -> None:
    """The schema check is not vacuous: a write_files entry without a path is rejected."""
    broken = render("cloud-config", KEY, AGENT).replace("  - path: /etc/nodelogs/key\n", "  - \n", 1)
    config = tmp_path / "broken.cfg"
    config.write_text(broken)
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_every_mime_part_passes_its_validator(tmp_path: Path) -> None:
    """Each part of the MIME form, merged with a user's own shell part by cloud-init make-mime, validates."""
    ours = email.message_from_string(render("mime", KEY, AGENT))
    (tmp_path / "nodelogs.cfg").write_text(ours.get_payload()[0].get_payload())
    (tmp_path / "bootstrap.sh").write_text("#!/bin/sh\nset -eu\n/etc/eks/bootstrap.sh prod-1\n")
    combined = subprocess.run(
        ["cloud-init", "devel", "make-mime", "-a", f"{tmp_path / 'bootstrap.sh'}:x-shellscript",
         "-a", f"{tmp_path / 'nodelogs.cfg'}:cloud-config"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    checked = {"cloud-config": 0, "x-shellscript": 0}
    for document in (ours, email.message_from_string(combined)):
        for index, part in enumerate(p for p in document.walk() if not p.is_multipart()):
            payload = part.get_payload(decode=True).decode()
            target = tmp_path / f"part-{id(document)}-{index}"
            target.write_text(payload)
            if part.get_content_type() == "text/cloud-config":
                result = subprocess.run(
                    ["cloud-init", "schema", "--config-file", str(target)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                checked["cloud-config"] += 1
            else:
                assert part.get_content_type() == "text/x-shellscript"
                result = subprocess.run(
                    [str(SHELLCHECK), str(target)], capture_output=True, text=True, check=False
                )
                checked["x-shellscript"] += 1
            assert result.returncode == 0, result.stdout + result.stderr
    assert checked == {"cloud-config": 2, "x-shellscript": 1}
    assert ours.get_payload()[0]["Merge-Type"] == "list(append)+dict(no_replace,recurse_list)+str()"


@pytest.mark.parametrize("dialect", ["sh", "bash"])
def test_shell_snippet_is_shellcheck_clean(tmp_path: Path, dialect: str) -> None:
    """shellcheck finds nothing in the snippet, alone and pasted into a strict bash script."""
    script = tmp_path / "user-data"
    script.write_text(f"#!/bin/{dialect}\nset -eu\n{render('shell', KEY, AGENT)}echo finished\n")
    result = subprocess.run([str(SHELLCHECK), str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@needs_root
@pytest.mark.parametrize(
    ("shell", "options"), [("/bin/dash", "-eux"), ("/bin/bash", "-euxv"), ("/bin/bash", "-eu")]
)
def test_shell_snippet_writes_private_files_without_echoing_the_key(
    scratch_root: ScratchRoot, shell: str, options: str
) -> None:
    """Under set -x/-v the snippet writes 0600 files via 0600 temp files, hides the key, starts the unit."""
    script = f"set {options}\necho before-marker\n{render('shell', KEY, AGENT)}echo after-marker\n"
    result = scratch_root.run([shell, "-c", script])
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    assert result.stdout.splitlines() == ["before-marker", "after-marker"]
    if "x" in options:
        # Tracing was on before, off around the key, and the caller's setting is back afterwards.
        assert "echo before-marker" in result.stderr
        assert "echo after-marker" in result.stderr
        assert "nodelogs_tmp" not in result.stderr
    _check_node_files(scratch_root)
    moves = scratch_root.file("/mv.log").read_text().splitlines()
    assert [line.split()[:2] for line in moves] == [["600", "root"], ["600", "root"]]
    assert scratch_root.file("/systemctl.log").read_text() == "start --no-block nodelogs-agent.service\n"
    assert not scratch_root.file("/printf-leak.log").exists(), "printf ran as an external command"


@needs_root
def test_shell_snippet_tightens_an_existing_directory(scratch_root: ScratchRoot) -> None:
    """An existing, too-open /etc/nodelogs becomes 0700 before the key is written."""
    directory = scratch_root.file("/etc/nodelogs")
    directory.mkdir()
    directory.chmod(0o755)
    result = scratch_root.run(["/bin/sh", "-c", render("shell", KEY, AGENT)])
    assert result.returncode == 0, result.stderr
    _check_node_files(scratch_root)


@needs_root
def test_shell_snippet_failure_does_not_abort_the_callers_script(scratch_root: ScratchRoot) -> None:
    """If /etc/nodelogs cannot be created the snippet says so, starts nothing, and set -e scripts go on."""
    scratch_root.file("/etc/nodelogs").write_text("in the way\n")
    script = f"set -eu\n{render('shell', KEY, AGENT)}echo bootstrap-continues\n"
    result = scratch_root.run(["/bin/sh", "-c", script])
    assert result.returncode == 0
    assert result.stdout == "bootstrap-continues\n"
    assert "nodelogs: could not write /etc/nodelogs" in result.stderr
    assert KEY not in result.stderr
    assert not scratch_root.file("/systemctl.log").exists()


@needs_root
def test_cloud_init_write_files_window_is_closed_by_the_private_directory(scratch_root: ScratchRoot) -> None:
    """With cloud-init's real write_files the key is 0644 until its chmod, but only inside a 0700 dir."""
    config = scratch_root.file("/user-data.cfg")
    config.write_text(render("cloud-config", KEY, AGENT))
    # bootcmd (mkdir/chmod) then write_files, as cloud-init's init stage runs them, with cloud-init's
    # own code; util.chmod is wrapped to record what the file looks like just before it is chmodded.
    program = textwrap.dedent(
        """
        import os, stat, subprocess, yaml
        from cloudinit import util
        from cloudinit.config import cc_write_files
        config = yaml.safe_load(open("/user-data.cfg"))
        for command in config["bootcmd"]:
            if command[0] != "systemctl":
                subprocess.run(command, check=True)
        seen = []
        real_chmod = util.chmod
        def recording_chmod(path, mode):
            if path.startswith("/etc/nodelogs/"):
                seen.append((path, oct(stat.S_IMODE(os.stat(path).st_mode)),
                             oct(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))))
            real_chmod(path, mode)
        util.chmod = recording_chmod
        os.umask(0o022)
        cc_write_files.write_files("write_files", config["write_files"], "root:root")
        for entry in seen:
            print(*entry)
        """
    )
    result = scratch_root.run(["/usr/bin/python3", "-c", program])
    assert result.returncode == 0, result.stderr
    seen = [line.split() for line in result.stdout.splitlines()]
    assert seen == [
        ["/etc/nodelogs/key", "0o644", "0o700"],
        ["/etc/nodelogs/agent.env", "0o644", "0o700"],
    ]
    _check_node_files(scratch_root)


def _keysvc(args: list[str], stdin: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "keysvc"
    return subprocess.run(
        [str(binary), "--config", str(config_for(tmp_path / "state")), "--state-dir", str(tmp_path / "state"),
         "userdata", "render", *args],
        input=stdin, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


RENDER_ARGS = [
    "--cluster", AGENT.cluster, "--node", AGENT.node, "--region", AGENT.region, "--endpoint", AGENT.endpoint,
    "--source", AGENT.sources[0], "--source", AGENT.sources[1], "--key-expires-at", str(AGENT.key_expires_at),
]  # fmt: skip


@pytest.mark.parametrize("form", ["cloud-config", "shell", "mime"])
def test_cli_renders_the_same_user_data_from_stdin(tmp_path: Path, form: str) -> None:
    """`keysvc userdata render` with the key on stdin prints what render() returns (MIME: its part)."""
    result = _keysvc(["--form", form, *RENDER_ARGS], KEY + "\n", tmp_path)
    assert result.returncode == 0, result.stderr
    if form == "mime":
        parts = [p for p in email.message_from_string(result.stdout).walk() if not p.is_multipart()]
        assert parts[0].get_payload() == render("cloud-config", KEY, AGENT)
    else:
        assert result.stdout == render(form, KEY, AGENT)
    assert KEY not in result.stderr


def test_cli_reads_the_key_from_a_file_and_never_from_argv(tmp_path: Path) -> None:
    """--key-file works, there is no option to pass the key itself, and a bad key is refused without echo."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    result = _keysvc(["--key-file", str(key_file), *RENDER_ARGS], None, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render("cloud-config", KEY, AGENT)
    abbreviated = _keysvc(["--key", KEY, *RENDER_ARGS], None, tmp_path)
    # A usage error, not a prefix match of --key-file. (argparse echoes the unknown arguments; the
    # caller already exposed that key in argv, which is why no option takes one.)
    assert abbreviated.returncode == 64  # EX_USAGE
    assert "unrecognized arguments" in abbreviated.stderr
    missing = _keysvc(["--key-file", KEY, *RENDER_ARGS], None, tmp_path)
    assert missing.returncode == 4
    assert KEY not in missing.stderr
    bad = _keysvc(RENDER_ARGS, KEY[:-2] + "\n", tmp_path)
    assert bad.returncode == 4
    assert KEY[:-2] not in bad.stderr + bad.stdout


def test_cli_refuses_an_unconfigured_region_like_addnode(tmp_path: Path) -> None:
    """`userdata render --region mars` fails with AddNode's own "unknown region" error and prints nothing."""
    args = [a if a != "eu" else "mars" for a in RENDER_ARGS]
    result = _keysvc(args, KEY + "\n", tmp_path)
    assert result.returncode == 4
    assert result.stdout == ""
    assert "unknown region" in result.stderr
    assert KEY not in result.stderr


def test_cli_refuses_user_data_for_another_nodes_key(tmp_path: Path) -> None:
    """A key the store issued for one node cannot be rendered into user data naming another node or region."""
    state = tmp_path / "state"
    issued = json.loads(
        keysvc(state, "keys", "issue", "--cluster", AGENT.cluster, "--node", AGENT.node, "--region", "eu",
               "-o", "json").stdout
    )  # fmt: skip
    key = issued["key"]
    assert _keysvc(RENDER_ARGS, key + "\n", tmp_path).returncode == 0
    for flag, other in (("--node", "ip-10-9-9-9.internal"), ("--cluster", "dev"), ("--region", "us")):
        args = list(RENDER_ARGS)
        args[args.index(flag) + 1] = other
        refused = _keysvc(args, key + "\n", tmp_path)
        assert refused.returncode == 4, (flag, refused.stderr)
        assert "issued for another cluster, node or region" in refused.stderr
        assert refused.stdout == ""
        assert key not in refused.stderr
