"""Every command and ``python -m`` entry answers ``--help``, and says its defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator_bridge.cli.main import COMMANDS, main

ENTRIES = {
    "orchestrator_bridge": "usage: producer bridge",
    "orchestrator_bridge.cli": "usage: producer",
    "orchestrator_bridge.orchestrator": "usage: producer orchestrator",
    "bench": "usage: python -m bench",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: producer {command}") and len(text.splitlines()) > 4


def test_run_help_shows_what_each_default_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option, default in (
        ("--count N", "(default: no limit)"),
        ("--concurrency N", "(default: PRODUCER_CONCURRENCY, 8)"),
        ("--output FILE", "(default: stdout when it is not a terminal, else not kept)"),
        ("--batch-size", "(default: 20)"),
    ):
        assert option in text and default in text, (option, default)


@pytest.mark.parametrize("module", sorted(ENTRIES))
def test_each_python_m_entry_has_help(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(ENTRIES[module]), result.stdout[:200]
