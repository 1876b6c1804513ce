"""The rusm command line."""

import re

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
