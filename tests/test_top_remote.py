"""`rusm top` attached over QUIC to `rusm node start` subprocesses: moving to
a node of another machine through the attached one, and a node that went away.

The nodes run with their own ``RUSM_HOME``s, so the test's machine knows
neither by its directory: every attach goes over the cluster, with the
``ops`` identity.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets import OptionList

from rusm.cli.top import top_app
from rusm.net import ClusterCa, Identity
from rusm.tui.app import TopApp
from rusm.tui.screens.cluster import ClusterScreen

from .test_node_cli import Node, Nodes
from .test_tui_live import until

IDLE = 2.0
"""london's idle timeout: a silent link is dead after this long."""


@dataclass
class Cluster:
    london: Node
    tokyo: Node
    ops: Identity
    home: Path
    """The test's own RUSM_HOME: no node of this cluster is in it."""

    def target(self, node: Node) -> str:
        return f"{node.name}@{node.cluster}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ca = ClusterCa.generate()
    for name in ("london", "tokyo"):
        ca.issue(name).save(tmp_path / name)
    london_nodes = Nodes(tmp_path / "home-london", tmp_path)
    tokyo_nodes = Nodes(tmp_path / "home-tokyo", tmp_path)
    try:
        london = london_nodes.start("london", "--identity", str(tmp_path / "london"),
                                    "--idle-timeout", str(IDLE))
        # tokyo links to london: london knows tokyo's address only from its hello.
        tokyo = tokyo_nodes.start("tokyo", "--identity", str(tmp_path / "tokyo"),
                                  "--connect", london.cluster)
        yield Cluster(london, tokyo, ca.issue("ops"), tmp_path / "home")
    finally:
        london_nodes.close()
        tokyo_nodes.close()


def header(app: TopApp) -> str:
    return str(app.main.query_one("#header").render())


async def test_enter_in_the_cluster_view_attaches_through_the_attached_node(
    cluster: Cluster,
) -> None:
    app: TopApp = await top_app(cluster.target(cluster.london), identity=cluster.ops,
                                home=cluster.home, interval=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.model.sample is not None
                    and "tokyo" in app.model.sample.nodes, "london linked to tokyo")
        await pilot.press("n")
        assert isinstance(app.screen, ClusterScreen)
        screen = app.screen
        await until(pilot, lambda: any(r.node == "tokyo" for r in screen.rows), "tokyo's row")
        row = next(r for r in screen.rows if r.node == "tokyo")
        # Where tokyo listens, though it was tokyo that connected to london.
        assert row.address == cluster.tokyo.cluster
        options = screen.query_one(OptionList)
        options.highlighted = options.get_option_index("tokyo")
        await pilot.press("enter")
        await until(pilot, lambda: app.model.sample is not None
                    and app.model.sample.node == "tokyo", "a sample of tokyo")
        assert app.target == cluster.target(cluster.tokyo)
        assert isinstance(app.screen, type(app.main))
        assert " tokyo " in header(app)


async def test_attaching_through_a_node_that_has_no_such_peer_says_so(
    cluster: Cluster,
) -> None:
    app: TopApp = await top_app(cluster.target(cluster.london), identity=cluster.ops,
                                home=cluster.home, interval=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.model.sample is not None, "a sample")
        app.shell.run("node paris")
        pane = app.main.pane
        await until(pilot, lambda: "cannot attach to paris" in pane.message, "the refusal")
        assert "paris is not connected to london" in pane.message
        assert app.model.sample is not None and app.model.sample.node == "london"


async def test_without_an_identity_a_node_of_another_machine_is_refused_with_how_to(
    cluster: Cluster,
) -> None:
    # Attached to london by its directory entry (its own machine), no identity.
    app: TopApp = await top_app("london", home=cluster.london.home, interval=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.model.sample is not None
                    and "tokyo" in app.model.sample.nodes, "london linked to tokyo")
        app.shell.run("node tokyo")
        pane = app.main.pane
        await until(pilot, lambda: "cannot attach to tokyo" in pane.message, "the refusal")
        assert (f"needs a cluster identity: rusm top tokyo@{cluster.tokyo.cluster} "
                "--identity DIR") in pane.message
        assert app.model.sample is not None and app.model.sample.node == "london"


async def test_a_node_that_went_away_is_said_within_its_idle_timeout_with_the_age(
    cluster: Cluster,
) -> None:
    app: TopApp = await top_app(cluster.target(cluster.london), identity=cluster.ops,
                                home=cluster.home, interval=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.model.sample is not None, "a sample")
        assert not app.main.has_class("-down")
        killed = time.monotonic()
        cluster.london.proc.send_signal(signal.SIGKILL)
        cluster.london.proc.wait(10)
        await until(pilot, lambda: "london went away: idle timeout" in header(app),
                    "the header to say london went away")
        noticed = time.monotonic() - killed
        text = header(app)
        assert "last sample" in text and "ago" in text, text
        assert app.main.has_class("-down")  # table and charts dimmed
        assert "STALE" in str(app.main.query_one("#status-line").render())
        # Reported, not asserted (the machines are shared): the bound is IDLE + 1 s.
        print(f"noticed {noticed:.2f} s after the kill (idle timeout {IDLE:g} s)")
