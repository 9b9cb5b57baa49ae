from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (it holds the public calibration and trace data)")
    return SHARED


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true",
                     help="skip the long closed-form oracles (marked `long`); CI runs them")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: a long closed-form oracle (minutes); skipped with --quick")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--quick"):
        return
    skip = pytest.mark.skip(reason="a long oracle: run without --quick")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
