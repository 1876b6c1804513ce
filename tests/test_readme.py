"""The README stays true: its opening commands and its embedding example."""

import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_the_readme_opens_with_the_demo_and_test_commands() -> None:
    first_block = README.split("```")[1].strip().splitlines()[1:]  # drop the "sh" tag
    assert len(first_block) == 2
    assert first_block[0].endswith("rusm demo")
    assert "'.[test]'" in first_block[1] and first_block[1].endswith("pytest")


def _run_example(n: int) -> subprocess.CompletedProcess[str]:
    code = re.findall(r"```python\n(.*?)```", README, re.S)[n]
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_embedding_example_runs_as_written() -> None:
    out = _run_example(0)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "hello, world"
    assert re.fullmatch(r"<london\.\d+> -> <london\.\d+> True", lines[1])
    assert lines[2] == "(True, 'bye')"
    assert "dead_letters=1" in lines[3]


def test_the_cluster_example_runs_as_written() -> None:
    out = _run_example(1)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['london']"
    assert re.fullmatch(r"hello, tokyo \(from <london\.\d+>\)", lines[1])
    assert re.fullmatch(r"worker <london\.\d+> started with 1 x", lines[2])
    assert lines[3:] == ["True", "london", "True"]


def test_the_gen_server_example_runs_as_written() -> None:
    out = _run_example(2)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["15", "False"]
