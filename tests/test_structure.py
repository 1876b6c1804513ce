"""The layering the design promises, read from the source (imports only).

- ``rusm.actors`` knows nothing of ``rusm.net``;
- the QUIC engine is imported only by the link adapter (``rusm/net/quic.py``)
  and the TLS subclasses that make it mutual (``rusm/net/mtls.py``);
- the TUI and the observe protocol (``rusm.observe``) import no transport:
  ``import rusm.tui`` loads neither websockets nor the QUIC engine.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rusm"
ENGINE_MODULES = {"net/quic.py", "net/mtls.py"}


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative ones resolved)."""
    package = ["rusm", *path.relative_to(ROOT).parent.parts]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.add(".".join([*base, node.module] if node.module else base))
            else:
                out.add(node.module or "")
    return out


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_layering(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    names = imports(path)
    if rel.startswith("actors/"):
        assert not [n for n in names if n.startswith("rusm.net")], f"{rel} imports rusm.net"
    if rel.startswith(("tui/", "observe/")):
        transport = [n for n in names if n.startswith(("rusm.net.observe", "rusm.net.node",
                                                         "websockets", "qh3", "aioquic"))]
        assert not transport, f"{rel} imports a transport: {transport}"
    if rel not in ENGINE_MODULES:
        engine = [n for n in names if n.split(".")[0] in ("qh3", "aioquic")]
        assert not engine, f"{rel} imports the QUIC engine directly: {engine}"


def test_the_scan_sees_the_engine_where_it_is() -> None:
    """The check above can fail: it finds qh3 in the adapter."""
    assert "qh3.asyncio.server" in imports(ROOT / "net/quic.py")
    assert "rusm.net.link" in imports(ROOT / "net/quic.py")


TRANSPORTS = ("websockets", "qh3", "aioquic", "rusm.net.node", "rusm.net.quic",
              "rusm.net.observe")


def test_importing_the_tui_and_the_protocol_loads_no_transport() -> None:
    """What the TUI pulls in, in a fresh interpreter (the source scan above
    cannot see an import made by a package's __init__)."""
    code = ("import sys, rusm.tui.app, rusm.tui.feeds, rusm.observe.protocol; "
            f"print([m for m in {TRANSPORTS!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
    # and the check can fail: the observe client does load websockets
    code = "import sys, rusm.net.observe; print('websockets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "True"


def test_every_error_of_the_net_layer_is_defined_in_its_errors_module() -> None:
    """One module for the net errors (issue 10 §5): no exception class is
    defined anywhere else under rusm/net (internal control-flow classes, named
    with a leading underscore, aside)."""
    import rusm.net.errors as errors

    bases = {name for name in errors.__all__ if isinstance(getattr(errors, name), type)}
    bases |= {"Exception", "RusmError", "ValueError", "TypeError", "LookupError",
              "PermissionError", "ConnectionError", "OSError", "RuntimeError"}
    elsewhere = []
    for path in sorted((ROOT / "net").rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                names = {getattr(b, "id", None) or getattr(b, "attr", "") for b in node.bases}
                if names & bases:
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert elsewhere == []
