"""The layering the design promises, read from the source (imports only).

- ``rusm.actors`` knows nothing of ``rusm.net``;
- the QUIC engine is imported only by the link adapter (``rusm/net/quic.py``)
  and the TLS subclasses that make it mutual (``rusm/net/mtls.py``).
"""
from __future__ import annotations

import ast
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
    if rel not in ENGINE_MODULES:
        engine = [n for n in names if n.split(".")[0] in ("qh3", "aioquic")]
        assert not engine, f"{rel} imports the QUIC engine directly: {engine}"


def test_the_scan_sees_the_engine_where_it_is() -> None:
    """The check above can fail: it finds qh3 in the adapter."""
    assert "qh3.asyncio.server" in imports(ROOT / "net/quic.py")
    assert "rusm.net.link" in imports(ROOT / "net/quic.py")
