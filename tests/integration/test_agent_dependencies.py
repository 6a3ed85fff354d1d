"""The agent installs and runs with tenacity and structlog only: no google-cloud-storage, boto3, botocore."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest
import structlog
import tenacity

from tests.agent.stack import Keysvc, Node, landed
from tests.servers import Server, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bare_python(tmp_path: Path) -> Path:
    """A fresh venv (no pip, no system packages) holding only the repo, tenacity and structlog."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=True).create(target)
    python = target / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for module in (tenacity, structlog):
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, site / source.name)
    (site / "nodelogs-repo.pth").write_text(f"{REPO}\n")
    assert sysconfig.get_paths()["purelib"] != str(site)
    return python


def test_bare_venv_cannot_import_cloud_sdks_but_runs_the_agent(
    tmp_path: Path, bare_python: Path, fake_gcs: Server, keysvc: Keysvc
) -> None:
    """In a venv without google.* or boto3 the agent uploads a log and exits 0 on SIGTERM."""
    probe = subprocess.run(
        [
            str(bare_python),
            "-c",
            "import importlib.util as u; print([m for m in ('google', 'boto3', 'botocore') "
            "if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"
    log = tmp_path / "boot.log"
    log.write_bytes(b"hello from a bare venv\n")
    node = Node(tmp_path / "node", keysvc, "bare-node", (str(log),)).provision()
    script = (
        "import sys\nfrom agent import cli\ncode = cli.main(['run'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('google', 'boto3', 'botocore'))\n"
        "print('HEAVY', heavy)\nsys.exit(code)\n"
    )
    process = subprocess.Popen(
        [str(bare_python), "-c", script],
        env=node.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: landed(fake_gcs.url, node.name, log, 1, b"hello from a bare venv\n"),
            what="upload from the bare venv",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "HEAVY []" in out
