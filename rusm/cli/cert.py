"""``rusm cert``: the certificates nodes present to each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from . import cli


@cli.group("cert")
def cert_group() -> None:
    """Make the certificates nodes present to each other (mutual TLS).

    Either a cluster CA that issues each node a certificate naming it (peers
    are checked by name), or one shared identity copied to every node of a
    small trusted cluster (names are not checked).
    """


_DIR = click.Path(file_okay=False, path_type=Path)
_FORCE = click.option("--force", is_flag=True, help="Replace the files if DIR holds them already.")


def _days_option(default: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option("--days", type=click.IntRange(min=1), default=default, show_default=True,
                        help="How many days the certificate is valid.")


def _save(save: Callable[..., list[Path]], directory: Path, force: bool) -> list[Path]:
    from ..net import tls

    try:
        return save(directory, overwrite=force)
    except tls.IdentityExists as exc:
        msg = f"{exc.path} exists already; pass --force to replace it"
        raise click.ClickException(msg) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write to {directory}: {exc.strerror}") from exc


@cert_group.command("ca")
@click.argument("directory", metavar="DIR", type=_DIR)
@_days_option(3650)
@_FORCE
def cert_ca_command(directory: Path, days: int, force: bool) -> None:
    """Make a cluster CA in DIR (ca.pem and ca-key.pem)."""
    from ..net import tls

    ca = tls.ClusterCa.generate(days=days)
    cert_path, key_path = _save(ca.save, directory, force)
    click.echo(f"cluster CA {ca.certificate.subject.rfc4514_string()} written to {directory}:")
    click.echo(f"  {cert_path}  certificate: every node trusts it")
    click.echo(f"  {key_path}  private key (mode 0600): keep it off the nodes")
    click.echo(f"next, for each node: rusm cert issue NAME --ca {directory} --out NODE_DIR")


@cert_group.command("issue")
@click.argument("name")
@click.option("--ca", "ca_dir", type=_DIR, required=True,
              help="Directory of the cluster CA (made by rusm cert ca).")
@click.option("--out", "out_dir", type=_DIR, required=True,
              help="Directory to write the node's identity to.")
@click.option("--role", type=click.Choice(["node", "observer"]), default="node",
              show_default=True,
              help="node: joins the cluster, full access. observer: read-only, may only "
                   "attach (rusm top/attach) to watch; cannot send, spawn, kill or connect.")
@_days_option(365)
@_FORCE
def cert_issue_command(
    name: str, ca_dir: Path, out_dir: Path, role: str, days: int, force: bool
) -> None:
    """Issue node NAME a certificate signed by the cluster CA.

    With --role observer the certificate is marked read-only (SAN URI
    rusm:role=observer, under the CA's signature): its holder can watch a
    node, not change it, and cannot join the cluster as a node.
    """
    from ..net import tls

    try:
        tls.validate_node_name(name)
    except tls.InvalidNodeName as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    try:
        ca = tls.ClusterCa.load(ca_dir)
    except tls.IdentityNotFound as exc:
        raise click.ClickException(f"{exc}; make a CA first: rusm cert ca {ca_dir}") from exc
    except tls.TlsError as exc:
        raise click.ClickException(str(exc)) from exc
    paths = _save(ca.issue(name, days=days, role=role).save, out_dir, force)
    if role == tls.ROLE_OBSERVER:
        click.echo(f"read-only observer identity {name!r} written to {out_dir}:")
    else:
        click.echo(f"identity of node {name!r} written to {out_dir}:")
    _echo_identity_files(paths)
    if role == tls.ROLE_OBSERVER:
        click.echo(f"watch a node with it: rusm top NODE@HOST:PORT --identity {out_dir} "
                   "(send, spawn, kill and connect are refused)")


@cert_group.command("identity")
@click.argument("directory", metavar="DIR", type=_DIR)
@_days_option(3650)
@_FORCE
def cert_identity_command(directory: Path, days: int, force: bool) -> None:
    """Make a shared self-signed identity in DIR, to copy to every node.

    Any holder of its key is trusted as any node: use it for a small cluster
    you control; use rusm cert ca and rusm cert issue to tell nodes apart.
    """
    from ..net import tls

    paths = _save(tls.Identity.generate(days=days).save, directory, force)
    click.echo(f"shared identity written to {directory} (copy the directory to every node):")
    _echo_identity_files(paths)


def _echo_identity_files(paths: list[Path]) -> None:
    cert_path, key_path, trust_path = paths
    click.echo(f"  {cert_path}  certificate the node presents")
    click.echo(f"  {key_path}  private key (mode 0600)")
    click.echo(f"  {trust_path}  trust anchor the node checks peers against")
