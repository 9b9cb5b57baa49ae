"""The command line starts fast: commands load with their concern, only when they run."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from simulator.cli import LAZY_COMMANDS, main


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_a_lazy_commands_listed_help_is_its_own(name):
    command = main.get_command(click.Context(main), name)
    assert command is not None and command.name == name
    first_paragraph = " ".join(command.help.partition("\n\n")[0].split())
    assert LAZY_COMMANDS[name][2] == first_paragraph, f"update LAZY_COMMANDS[{name!r}] in simulator/cli.py"


def test_help_lists_every_command_and_imports_none_of_the_stack():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom simulator.cli import main\n"
            "out = CliRunner().invoke(main, ['--help']).output\n"
            "heavy = sorted(m for m in ('pandas', 'numpy', 'scipy', 'pyarrow', 'pydantic', 'simpy', 'matplotlib')"
            " if m in sys.modules)\n"
            "print(heavy)\nprint(out)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, _, listing = out.partition("\n")
    assert heavy == "[]"
    for name in [*LAZY_COMMANDS, "run", "report", "init", "scenario", "compile"]:
        assert f"  {name} " in listing


def test_a_lazy_command_runs_when_invoked():
    result = CliRunner().invoke(main, ["workload", "fit", "--help"])
    assert result.exit_code == 0 and "Usage: main workload fit" in result.output
    assert CliRunner().invoke(main, ["nonsense"]).exit_code == 2


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    import simulator.runner

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(simulator.runner, "run", broken)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: ZeroDivisionError: a bug" in result.output and "capsim --debug" in result.output
    result = CliRunner().invoke(main, ["--debug", "run"])
    assert isinstance(result.exception, ZeroDivisionError)
