"""The optional compiled engine: a build older than its sources is never loaded, and a fresh one is.

CI runs the engine tests once more with the compiled build (.ci/run); outputs must not change.
"""

import json
import shutil
import sys

import pytest

import simulator.engine.simulation
from simulator import compiled

SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A copy of the hot modules' sources with stand-in build artefacts and a manifest that matches."""
    for module in compiled.MODULES:
        for suffix in (".py", ".pxd"):
            target = tmp_path / (module + suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(compiled.PACKAGE / (module + suffix), target)
        (tmp_path / (module + SUFFIX)).write_bytes(b"")
    monkeypatch.setattr(compiled, "PACKAGE", tmp_path)
    monkeypatch.setattr(compiled, "MANIFEST", tmp_path / "_compiled.json")
    compiled.MANIFEST.write_text(json.dumps({m: compiled._source_hash(m) for m in compiled.MODULES}))
    return tmp_path


def test_a_build_matching_its_sources_is_kept(fake_package):
    assert set(compiled.status().values()) == {"compiled"}
    compiled.drop_stale()
    assert (fake_package / ("job" + SUFFIX)).exists()


def test_a_build_older_than_its_sources_is_removed_with_a_warning(fake_package):
    source = fake_package / "cluster/pool.py"
    source.write_text(source.read_text() + "\n# edited after the build\n")
    assert compiled.status()["cluster/pool"] == "stale" and compiled.status()["job"] == "compiled"
    with pytest.warns(UserWarning, match=r"older than its sources \(cluster/pool\).*capsim compile"):
        compiled.drop_stale()
    assert set(compiled.status().values()) == {"python"}  # the whole build goes: a mix would not link
    assert not list(fake_package.rglob("*.so")) and not compiled.MANIFEST.exists()


def test_the_compiled_engine_is_what_runs_when_built():
    if set(compiled.status().values()) != {"compiled"}:
        pytest.skip("the compiled engine is not built here (capsim compile)")
    assert simulator.engine.simulation.__file__.endswith(".so")
    assert sys.modules["simulator.job"].__file__.endswith(".so")
