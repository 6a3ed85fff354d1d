"""The architecture, checked from the source: layers, the pure core, the agent's one contract, sizes.

keysvc's folders are its layers, and imports only point down them::

    entry points   keysvc.cli, keysvc.commands, keysvc.http      parse, call the service, format
    wiring         keysvc.runtime, keysvc.config                  choose and build the adapters
    service        keysvc.service                                 every decision, over ports
    adapters       keysvc.store, keysvc.gcs, keysvc.aws,          translate to and from the world
                   keysvc.files
    core           keysvc.core, keysvc.wire (+ keysvc.errors)     pure: formats, checks, the chain

The agent imports ``keysvc.wire`` and nothing else of keysvc. The development tools
(``keysvc.devtools``) are imported only by the ``demo`` command. These tests read every module's
imports with :mod:`ast` (including imports inside functions), so a violation fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

PURE = ("keysvc.core", "keysvc.wire")
ADAPTERS = ("keysvc.store", "keysvc.gcs", "keysvc.aws", "keysvc.files")
ENTRY = ("keysvc.cli", "keysvc.commands", "keysvc.http", "keysvc.runtime")
# What the pure core may import besides itself and keysvc.errors: the standard library's pure
# parts, and cryptography for the audit chain's Ed25519 verification.
PURE_ALLOWED = {
    "__future__", "abc", "base64", "bisect", "collections", "cryptography", "dataclasses", "datetime",
    "email", "enum", "functools", "hashlib", "hmac", "itertools", "json", "math", "re", "secrets",
    "string", "time", "typing", "urllib", "zlib",
}  # fmt: skip


def modules(package: str) -> list[tuple[str, Path]]:
    """Every module of ``package`` as (dotted name, path)."""
    base = ROOT / package.replace(".", "/")
    found = []
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((dotted, path))
    return found


def imports_of(path: Path) -> set[str]:
    """The absolute module names a file imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def under(name: str, packages: tuple[str, ...]) -> bool:
    """True when ``name`` is one of ``packages`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def allowed_in_core(name: str) -> bool:
    """True when the pure core may import ``name``."""
    if name in {"keysvc", "keysvc.errors"} or name.startswith("keysvc.errors."):
        return True
    if name.startswith("keysvc."):
        return under(name, PURE)
    return name.split(".", maxsplit=1)[0] in PURE_ALLOWED


@pytest.mark.parametrize(("module", "path"), modules("keysvc.core") + modules("keysvc.wire"))
def test_core_is_pure(module: str, path: Path) -> None:
    """The core imports no adapter, framework, driver, SDK, os, filesystem or thread module."""
    impure = sorted(name for name in imports_of(path) if not allowed_in_core(name))
    assert impure == [], f"{module} imports {impure}"


@pytest.mark.parametrize(("module", "path"), modules("keysvc.service"))
def test_service_imports_no_adapter_or_entry_point(module: str, path: Path) -> None:
    """The service decides over ports: it never imports an adapter, an entry point or the devtools."""
    bad = sorted(
        n for n in imports_of(path) if under(n, (*ADAPTERS, *ENTRY, "keysvc.devtools", "keysvc.config"))
    )
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize(
    ("module", "path"), [m for pkg in ADAPTERS for m in modules(pkg)] + modules("keysvc.core")
)
def test_adapters_and_core_import_nothing_above_them(module: str, path: Path) -> None:
    """Adapters and the core import neither the service, nor an entry point, nor the devtools."""
    above = ("keysvc.service", *ENTRY, "keysvc.devtools")
    bad = sorted(n for n in imports_of(path) if under(n, above) and n != "keysvc.service.ports")
    if module.startswith("keysvc.store"):  # a store returns what the Store port promises
        bad = [n for n in bad if n not in {"keysvc.service.ports", "keysvc.service.ports.Store"}]
    assert bad == [], f"{module} imports {bad}"


def test_only_the_demo_command_imports_the_devtools() -> None:
    """Nothing in the product imports keysvc.devtools except the ``keysvc demo`` command."""
    offenders = [
        module
        for module, path in modules("keysvc")
        if not under(module, ("keysvc.devtools",))
        and module != "keysvc.commands.demo"
        and any(under(n, ("keysvc.devtools",)) for n in imports_of(path))
    ]
    assert offenders == []


@pytest.mark.parametrize(("module", "path"), modules("agent"))
def test_agent_imports_only_the_wire_contract(module: str, path: Path) -> None:
    """The agent imports ``keysvc.wire`` (its declared public names) and nothing else from keysvc."""
    from_keysvc = {n for n in imports_of(path) if n == "keysvc" or n.startswith("keysvc.")}
    import keysvc.wire  # noqa: PLC0415 - only this test needs the public list

    public = {"keysvc.wire", *(f"keysvc.wire.{name}" for name in keysvc.wire.__all__)}
    assert from_keysvc <= public, f"{module} imports {sorted(from_keysvc - public)}"


def test_wire_contract_is_declared() -> None:
    """keysvc.wire names its public surface, and every name it declares exists."""
    import keysvc.wire  # noqa: PLC0415

    assert keysvc.wire.__all__
    assert all(hasattr(keysvc.wire, name) for name in keysvc.wire.__all__)


@pytest.mark.parametrize(("module", "path"), modules("agent") + modules("keysvc"))
def test_module_and_function_sizes(module: str, path: Path) -> None:
    """No module is over 400 lines and no function over 60, in agent/ and keysvc/."""
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{module}: {len(text.splitlines())} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == [], f"{module}: {long}"
