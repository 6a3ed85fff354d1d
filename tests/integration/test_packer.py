"""The Packer template and install script: packer fmt and validate offline (packer 1.6.6), shellcheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _packer_is_installed() -> None:
    """.ci/bootstrap installs packer, so a machine without it fails here instead of skipping."""
    assert shutil.which("packer"), "packer is missing: run .ci/bootstrap"


REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "packer/nodelogs-agent.pkr.hcl"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def _offline(argv: list[str]) -> list[str]:
    """Run in a network namespace with no network at all when we can, to prove nothing is fetched."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0:
        return ["unshare", "-n", *argv]
    return argv


def _packer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _offline(["packer", *args]), cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )


def test_template_is_formatted() -> None:
    """`packer fmt -check` finds nothing to change in packer/."""
    result = _packer("fmt", "-check", "packer")
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_validates_offline(tmp_path: Path) -> None:
    """`packer validate` accepts the template without network access, given a wheel to upload."""
    wheel = tmp_path / "nodelogs-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip: the file provisioner only stats it
    result = _packer("validate", "-var", f"wheel={wheel}", TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_catches_a_missing_wheel(tmp_path: Path) -> None:
    """validate is not vacuous: a wheel path that does not exist is reported."""
    result = _packer("validate", "-var", f"wheel={tmp_path / 'missing.whl'}", TEMPLATE)
    assert result.returncode != 0
    assert "missing.whl" in result.stdout + result.stderr


def test_template_documents_its_variables() -> None:
    """Every variable, including region, source AMI filter and instance type, has a description."""
    text = (REPO / TEMPLATE).read_text()
    variables = [line.split('"')[1] for line in text.splitlines() if line.startswith("variable ")]
    assert {"region", "source_ami_name", "source_ami_owners", "instance_type", "wheel"} <= set(variables)
    assert text.count("description =") == len(variables)
    assert "required_plugins" not in text


def test_install_script_is_shellcheck_clean() -> None:
    """shellcheck finds nothing in packer/install-agent.sh."""
    result = subprocess.run(
        [str(SHELLCHECK), str(REPO / "packer/install-agent.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_install_script_creates_private_dir_and_does_not_enable_the_unit() -> None:
    """The install script makes /etc/nodelogs 0700, installs the unit file and never enables it."""
    text = (REPO / "packer/install-agent.sh").read_text()
    assert "install -d -m 0700 -o root -g root /etc/nodelogs" in text
    assert "/etc/systemd/system/nodelogs-agent.service" in text
    assert "systemctl enable" not in text
    assert "[keysvc]" not in text
