"""The docs run. README.md and every docs/*.md page (but the generated key reference) is read as a
reader would, block by block in order, in a fresh folder that holds a copy of the checkout's
`workloads/` (the data a reader in a checkout has at hand):

- a ```yaml block whose first line is a comment naming a file (`# sweep.yaml`) is written to it;
- a ```bash block runs line by line (`\\` continuations joined, `# comments` dropped): `capsim ...`
  through click's CliRunner, which must exit 0 (`capsim ... > FILE` writes its output to FILE);
  `cd DIR` moves into DIR; the set-up commands (`python3 -m venv ...`, `pip ...`), which .ci/run runs
  verbatim, are skipped here; any other line is an error, so a page cannot hide a command the test
  does not run;
- a ```python block is exec'd, every block of a page in one namespace (as one session, `__name__`
  "__main__");
- other blocks (```text, ``` output samples, yaml fragments without a file name) are shown, not run.

A block opts out only with `<!-- docs-test: skip (reason) -->` on the line before it.
"""

from __future__ import annotations

import linecache
import re
import shlex
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {"scenario_reference.md"}  # written by `capsim scenario reference` (tests/test_scenario_reference.py)
PAGES = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in GENERATED)]
RUNNABLE = {"bash", "python", "yaml"}

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->$")
_FILE_COMMENT = re.compile(r"^#\s*(?P<name>[\w./-]+\.ya?ml)\s*$")
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, 1-based
    skip: str | None  # the reason given by a skip comment right before it


def blocks(text: str, page: str = "<page>") -> list[Block]:
    """The fenced blocks of a Markdown text, in order; an indented fence (in a list) is dedented."""
    lines = text.splitlines()
    out: list[Block] = []
    skip: tuple[str, int] | None = None
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence:
            indent, lang = fence.groups()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            assert end is not None, f"{page}:{i + 1}: a fenced block that is never closed"
            body = [line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end]]
            out.append(Block(lang, "\n".join(body) + "\n", i + 1, skip[0] if skip else None))
            assert skip is None or lang in RUNNABLE, f"{page}:{skip[1]}: a skip comment before a block that never runs"
            skip = None
            i = end + 1
            continue
        marker = _SKIP.match(lines[i].strip())
        if marker:
            skip = (marker["reason"].strip(), i + 1)
        elif lines[i].strip():
            assert skip is None, f"{page}:{skip[1]}: a skip comment must be right before its block"
        elif "docs-test" in lines[i]:
            raise AssertionError(f"{page}:{i + 1}: unreadable docs-test comment: {lines[i]}")
        i += 1
    assert skip is None, f"{page}:{skip[1]}: a skip comment with no block after it"
    return out


def shell_lines(text: str) -> list[str]:
    """The logical lines of a bash block: continuations joined, blank lines dropped."""
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def is_setup(words: list[str]) -> bool:
    """The set-up commands (.ci/run runs the README's verbatim): a virtual environment and pip."""
    return words[:3] in (["python3", "-m", "venv"], ["python", "-m", "venv"]) or Path(words[0]).name == "pip"


class Reader:
    """Runs a page's blocks in order in the current folder, as a reader of the page would."""

    def __init__(self, page: str, monkeypatch: pytest.MonkeyPatch):
        self.page = page
        self.monkeypatch = monkeypatch
        self.namespace: dict = {"__name__": "__main__"}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, block: Block) -> None:
        where = f"{self.page}:{block.line}"
        if block.lang not in RUNNABLE:
            return
        if block.skip:
            self.skipped.append(f"{where} ({block.skip})")
            return
        if block.lang == "yaml":
            first = block.text.splitlines()[0] if block.text.strip() else ""
            named = _FILE_COMMENT.match(first.strip())
            if named:
                target = Path(named["name"])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text)
                self.ran.append(f"{where}: wrote {target}")
        elif block.lang == "python":
            name = f"{where} (python block)"
            linecache.cache[name] = (len(block.text), None, block.text.splitlines(True), name)  # for tracebacks
            code = compile(block.text, name, "exec")
            exec(code, self.namespace)
            self.ran.append(f"{where}: python")
        else:
            for line in shell_lines(block.text):
                self.shell(line, where)

    def shell(self, line: str, where: str) -> None:
        words = shlex.split(line, comments=True)
        if not words:
            return
        if is_setup(words):
            self.skipped.append(f"{where}: {line} (a set-up command: .ci/run runs it, not this test)")
            return
        commands: list[list[str]] = [[]]
        for word in words:
            if word == "&&":
                commands.append([])
            else:
                commands[-1].append(word)
        for command in commands:
            self.command(command, line, where)

    def command(self, words: list[str], line: str, where: str) -> None:
        if words[0] == "cd" and len(words) == 2:
            self.monkeypatch.chdir(Path.cwd() / words[1])
            return
        if Path(words[0]).name != "capsim":
            raise AssertionError(f"{where}: the docs test does not run {line!r}: write it as a capsim command, "
                                 "or put <!-- docs-test: skip (reason) --> before its block")
        out_file = None
        if ">" in words:
            at = words.index(">")
            assert at == len(words) - 2, f"{where}: only `> FILE` at the end is understood: {line!r}"
            words, out_file = words[:at], words[at + 1]
        result = CliRunner().invoke(main, words[1:])
        if result.exit_code != 0:
            trace = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
            raise AssertionError(f"{where}: `{line}` exited {result.exit_code}\n{result.output}\n{trace}")
        if out_file is not None:
            Path(out_file).write_text(result.stdout)
        self.ran.append(f"{where}: {line}")


def test_the_pages_are_the_ones_listed():
    index = (ROOT / "docs/index.md").read_text()
    for page in PAGES[1:]:
        if page == "docs/index.md":
            continue
        assert f"({Path(page).name})" in index, f"docs/index.md does not list {page}"
    assert "(scenario_reference.md)" in index


@pytest.mark.parametrize("page", [*PAGES, "docs/scenario_reference.md"])
def test_relative_links_lead_somewhere(page):
    path = ROOT / page
    for match in _LINK.finditer(path.read_text()):
        target = match["target"]
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{page}: link to {target}: no such file"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest.read_text()), f"{page}: link to {target}: no such heading"


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    found = set()
    in_block = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif not in_block and line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return found


def test_blocks_parse_skips_and_files():
    page = ("Text\n\n```yaml\n# a.yaml\nname: x\n```\n\n<!-- docs-test: skip (needs a cluster) -->\n"
            "```bash\ncapsim sweep a.yaml --ray auto\n```\n\n- item\n\n  ```bash\n  capsim run a.yaml \\\n"
            "    --seed 3   # a comment\n  ```\n")
    found = blocks(page)
    assert [(b.lang, b.skip) for b in found] == [("yaml", None), ("bash", "needs a cluster"), ("bash", None)]
    assert len(shell_lines(found[2].text)) == 1
    assert shlex.split(shell_lines(found[2].text)[0], comments=True) == ["capsim", "run", "a.yaml", "--seed", "3"]
    with pytest.raises(AssertionError, match="right before"):
        blocks("<!-- docs-test: skip (x) -->\nText\n```bash\ncapsim run\n```\n")


@pytest.mark.parametrize("page", PAGES)
def test_page_runs(page, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "workloads", tmp_path / "workloads")
    monkeypatch.chdir(tmp_path)
    reader = Reader(page, monkeypatch)
    for block in blocks((ROOT / page).read_text(), page):
        reader.run(block)
    print("\n".join(["ran:", *reader.ran, "skipped:", *reader.skipped]))
    if not reader.ran:
        pytest.skip(f"{page} has nothing to run")


def test_the_serving_sample_is_what_the_command_prints():
    text = (ROOT / "docs/serving.md").read_text()
    sample = re.search(r"^```\n(.*?)^```", text[text.index("The first prints:"):], flags=re.S | re.M).group(1)
    result = CliRunner().invoke(main, ["predict-inference", "--device", "h200-sxm", "--model", "llama3-70b", "--tp", "2",
                                       "--batch", "32", "--prompt-len", "2048", "--output-len", "256"])
    assert result.exit_code == 0 and result.stdout == sample
