"""The run, sweep and plan reports in a real browser: headless Chromium loads each page from disk with
the network off, every <img> decodes (naturalWidth > 0), the console shows no error, and a screenshot
is kept (in pytest's tmp folder, or in $CAPSIM_ARTEFACTS when set, for CI to keep).

Skipped where no Chromium is installed (`apt-get install chromium`; .ci/run tries it)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from simulator.cli import main
from tests.test_report import _BASE, small_run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")

# Injected into a copy of the page: after load, the state of every image, written where --dump-dom sees it.
_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(i => ({src: i.src.slice(0, 22), complete: i.complete,
                                                         width: i.naturalWidth, height: i.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "capsim-image-check";
  out.textContent = JSON.stringify(images);
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
             "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # nothing can be fetched
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "Uncaught" in line or ("CONSOLE" in line and ("ERROR" in line or "error" in line.lower()))
            or "Failed to load resource" in line]


def _artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CAPSIM_ARTEFACTS", tmp_path / "artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_in_browser(report: Path, name: str, tmp_path: Path) -> None:
    html = report.read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert sources, f"{name}: no figure"
    for src in sources:  # every image is inline PNG that decodes
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    probe = tmp_path / f"{name}-probe.html"
    probe.write_text(html.replace("</body>", _CHECK + "\n</body>"))
    dumped = _chromium("--dump-dom", probe.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = re.search(r'<pre id="capsim-image-check">(.*?)</pre>', dumped.stdout, re.S)
    assert found, f"{name}: the check did not run:\n{dumped.stdout[-1000:]}"
    images = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(images) == len(sources)
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    assert not _console_errors(dumped.stderr), _console_errors(dumped.stderr)

    shot = _artefacts(tmp_path) / f"{name}.png"
    taken = _chromium("--hide-scrollbars", "--window-size=1200,3000", f"--screenshot={shot}", report.as_uri())
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    assert not _console_errors(taken.stderr), _console_errors(taken.stderr)


def test_run_report_renders_in_chromium(tmp_path):
    report = small_run().report(tmp_path / "run.html")
    check_in_browser(report, "run", tmp_path)


def test_sweep_report_renders_in_chromium(tmp_path):
    (tmp_path / "sw.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "base": _BASE, "seeds": 2, "axes": {"scheduler.policy": ["fifo", "easy-backfill"]},
        "metrics": ["p95_wait_s", "cost_usd"], "periods": "1d"}))
    runner = CliRunner()
    result = runner.invoke(main, ["sweep", str(tmp_path / "sw.yaml"), "--out", str(tmp_path / "sw"), "--workers", "1",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["report", str(tmp_path / "sw"), "--target", "2h"]).exit_code == 0
    check_in_browser(tmp_path / "sw" / "report.html", "sweep", tmp_path)


def test_plan_report_renders_in_chromium(tmp_path):
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({
        "name": "tiny-plan", "base": _BASE, "seeds": 2,
        "target": {"metric": "p95_wait_s", "at_most": "3h", "period": "1d"},
        "options": [{"name": "h100", "pool": {"device": "h100-sxm", "devices_per_node": 8}, "max_nodes": 4}]}))
    runner = CliRunner()
    result = runner.invoke(main, ["plan", str(tmp_path / "plan.yaml"), "--out", str(tmp_path / "pl"), "--workers", "1",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["report", str(tmp_path / "pl")]).exit_code == 0
    check_in_browser(tmp_path / "pl" / "report.html", "plan", tmp_path)


def test_the_console_check_sees_a_broken_page(tmp_path):
    """The check itself: a page with a script error and an image that does not decode fails it."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                   "<script>undefinedFunction();</script></body></html>")
    dumped = _chromium("--dump-dom", bad.as_uri())
    assert _console_errors(dumped.stderr), dumped.stderr[-2000:]
    with pytest.raises(AssertionError):
        check_in_browser(bad, "bad", tmp_path)
