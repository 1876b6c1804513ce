"""The rusm cert commands: make a CA, issue node certificates, make a shared identity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rusm.cli import cli
from rusm.cli.cert import cert_issue_command
from rusm.net.tls import (
    ROLE_NODE,
    ROLE_OBSERVER,
    ROLES,
    ClusterCa,
    Identity,
    PeerRejected,
    verify_peer,
)


def rusm(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def succeeds(*args: str | Path) -> str:
    result = rusm(*args)
    assert result.exit_code == 0, result.output
    return result.output


def test_cert_ca_makes_a_ca_and_says_where(tmp_path: Path) -> None:
    out = succeeds("cert", "ca", tmp_path / "ca")
    assert str(tmp_path / "ca" / "ca.pem") in out
    assert str(tmp_path / "ca" / "ca-key.pem") in out
    assert "rusm cert issue NAME --ca" in out
    assert ClusterCa.load(tmp_path / "ca").certificate.extensions


def test_cert_ca_refuses_to_overwrite_a_ca_without_force(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path)
    before = (tmp_path / "ca-key.pem").read_bytes()
    result = rusm("cert", "ca", tmp_path)
    assert result.exit_code == 1
    assert "exists already; pass --force" in result.output
    assert (tmp_path / "ca-key.pem").read_bytes() == before


def test_cert_ca_with_force_replaces_the_ca(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path)
    before = (tmp_path / "ca-key.pem").read_bytes()
    succeeds("cert", "ca", tmp_path, "--force")
    assert (tmp_path / "ca-key.pem").read_bytes() != before


def test_cert_issue_writes_a_node_identity_signed_by_the_ca(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path / "ca")
    out = succeeds("cert", "issue", "node_1", "--ca", tmp_path / "ca", "--out", tmp_path / "n1")
    assert "node 'node_1'" in out
    for name in ("cert.pem", "key.pem", "trust.pem"):
        assert str(tmp_path / "n1" / name) in out
    succeeds("cert", "issue", "london", "--ca", tmp_path / "ca", "--out", tmp_path / "ldn")
    node_1, london = Identity.load(tmp_path / "n1"), Identity.load(tmp_path / "ldn")
    assert node_1.name == "node_1"
    verify_peer(london, list(node_1.chain), "node_1")


def test_cert_issue_days_sets_the_validity(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path / "ca")
    succeeds("cert", "issue", "a", "--ca", tmp_path / "ca", "--out", tmp_path / "a", "--days", "7")
    cert = Identity.load(tmp_path / "a").certificate
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7


def test_cert_issue_without_a_ca_says_how_to_make_one(tmp_path: Path) -> None:
    result = rusm("cert", "issue", "london", "--ca", tmp_path / "ca", "--out", tmp_path / "n")
    assert result.exit_code == 1
    assert f"make a CA first: rusm cert ca {tmp_path / 'ca'}" in result.output
    assert not (tmp_path / "n").exists()


def test_cert_issue_rejects_an_invalid_node_name(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path / "ca")
    result = rusm("cert", "issue", "lon.don", "--ca", tmp_path / "ca", "--out", tmp_path / "n")
    assert result.exit_code == 2
    assert "invalid node name 'lon.don'" in result.output


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_cert_issue_refuses_a_ca_key_others_can_read(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path / "ca")
    (tmp_path / "ca" / "ca-key.pem").chmod(0o644)
    result = rusm("cert", "issue", "london", "--ca", tmp_path / "ca", "--out", tmp_path / "n")
    assert result.exit_code == 1
    assert f"run: chmod 600 {tmp_path / 'ca' / 'ca-key.pem'}" in result.output


def test_cert_identity_makes_a_shared_identity(tmp_path: Path) -> None:
    out = succeeds("cert", "identity", tmp_path)
    assert "copy the directory to every node" in out
    assert str(tmp_path / "key.pem") in out
    shared = Identity.load(tmp_path)
    assert shared.name is None
    verify_peer(shared, list(shared.chain), None)


def test_cert_identity_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    succeeds("cert", "identity", tmp_path)
    result = rusm("cert", "identity", tmp_path)
    assert result.exit_code == 1
    assert "pass --force" in result.output
    succeeds("cert", "identity", tmp_path, "--force")


def test_cert_issue_role_observer_issues_a_read_only_certificate(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path / "ca")
    out = succeeds("cert", "issue", "ops", "--role", "observer",
                   "--ca", tmp_path / "ca", "--out", tmp_path / "ops")
    assert "read-only observer identity 'ops'" in out
    assert f"rusm top NODE@HOST:PORT --identity {tmp_path / 'ops'}" in out
    succeeds("cert", "issue", "london", "--ca", tmp_path / "ca", "--out", tmp_path / "ldn")
    ops, london = Identity.load(tmp_path / "ops"), Identity.load(tmp_path / "ldn")
    assert (ops.name, ops.role) == ("ops", ROLE_OBSERVER)
    assert london.role == ROLE_NODE, "the default role is node"
    assert verify_peer(london, list(ops.chain), "ops", hidden=True) == ROLE_OBSERVER
    with pytest.raises(PeerRejected, match="observer"):
        verify_peer(london, list(ops.chain), "ops", hidden=False)


def test_cert_issue_offers_exactly_the_roles_the_node_knows(tmp_path: Path) -> None:
    succeeds("cert", "ca", tmp_path / "ca")
    result = rusm("cert", "issue", "ops", "--role", "admin",
                  "--ca", tmp_path / "ca", "--out", tmp_path / "ops")
    assert result.exit_code == 2 and "'node', 'observer'" in result.output
    assert not (tmp_path / "ops").exists()
    option = next(p for p in cert_issue_command.params if p.name == "role")
    assert tuple(option.type.choices) == ROLES  # type: ignore[attr-defined]
