"""On a node (the agent install: tenacity and structlog only) `keysvc` says in one line what is missing."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest
import structlog
import tenacity

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
# Exactly what the console script `keysvc` (pyproject [project.scripts]) runs.
ENTRY_POINT = "import sys; from keysvc.cli import main; sys.exit(main(sys.argv[1:]))"


def node_python(tmp_path: Path) -> Path:
    """A fresh venv holding only the repo, tenacity and structlog, as `pip install nodelogs` leaves a node."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=True).create(target)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    for module in (tenacity, structlog):
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, Path(site) / source.name)
    (Path(site) / "nodelogs-repo.pth").write_text(f"{REPO}\n")
    return python


@pytest.mark.parametrize("argv", [["keys", "list"], ["serve"], ["--help"]])
def test_keysvc_without_its_extra_is_one_line_naming_the_install(tmp_path: Path, argv: list[str]) -> None:
    """Without cryptography and the rest of [keysvc], the command exits 69 with one line, not a traceback."""
    python = node_python(tmp_path)
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('cryptography'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "None"
    result = subprocess.run(
        [str(python), "-c", ENTRY_POINT, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 69
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "backend is not installed" in lines[0]
    assert "pip install 'nodelogs[keysvc]'" in lines[0]
