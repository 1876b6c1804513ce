"""The rusm command line."""

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from rusm.cli import cli


def test_demo_actors_runs_a_supervised_workload_and_reports_restarts() -> None:
    result = CliRunner().invoke(cli, ["demo", "--actors", "--seconds", "1.2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"supervisor <demo\.\d+> started", out)
    assert "the supervisor restart" in out
    depths = [int(d) for d in re.findall(r"consumer_mailbox=(\d+)", out)]
    assert depths and max(depths) > 0
    assert re.search(r"done after 1.2 s: \d+ spawned", out)


def test_demo_rejects_a_nonpositive_duration_with_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["demo", "--seconds", "0"])
    assert result.exit_code == 2
    assert "--seconds" in result.output


def test_demo_off_a_terminal_prints_the_london_table_of_a_live_two_node_cluster(
    tmp_path: Path,
) -> None:
    rusm = Path(sys.executable).parent / "rusm"
    out = subprocess.run(
        [str(rusm), "demo", "--seconds", "2"], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60, env={**os.environ, "RUSM_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    headers = re.findall(r"^node london .* nodes tokyo$", out.stdout, re.M)
    assert len(headers) >= 2  # one table per second, and tokyo is connected
    assert re.search(r"^<london\.\d+>\s+consumer\s", out.stdout, re.M)
    assert not list((tmp_path / "nodes").glob("*.json"))  # its entries are gone
