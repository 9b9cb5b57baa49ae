"""Every `capsim` command in the docs' bash blocks runs as written, from the repository root, and so
do the README's performance-model commands (its other examples need the files they name)."""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def commands(path: Path) -> list[str]:
    """The capsim commands of a page's ```bash blocks (continuation lines joined)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("capsim "):
                out.append(line)
    return out


README_COMMANDS = ("capsim predict", "capsim validate-perf")
CASES = [(doc.name, cmd) for doc in DOCS for cmd in commands(doc)]
CASES += [("README.md", cmd) for cmd in commands(ROOT / "README.md") if cmd.startswith(README_COMMANDS)]


def test_the_docs_have_commands():
    assert CASES


@pytest.mark.parametrize(("page", "command"), CASES)
def test_doc_command_runs(page, command, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, shlex.split(command)[1:])
    assert result.exit_code == 0, f"{page}: {command}\n{result.output}"
