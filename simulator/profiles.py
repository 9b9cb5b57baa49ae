"""Locate hardware profiles (`hardware_profiles/<device-id>.yaml`) in a checkout or an installed wheel."""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import yaml

from simulator.errors import CapsimError
from simulator.yaml_file import load_data_yaml, yaml_error

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    """The top-level folder in a source checkout, else the copy shipped inside the wheel."""
    for candidate in (_PACKAGE.parent / name, _PACKAGE / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise CapsimError(f"cannot find the {name}/ folder next to the package or inside it")


def profiles_dir() -> Path:
    return _data_dir("hardware_profiles")


def workloads_dir() -> Path:
    return _data_dir("workloads")


@lru_cache(maxsize=1)
def list_devices() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in profiles_dir().glob("*.yaml")))


@cache
def load_profile_yaml(device: str) -> dict:
    """The raw YAML mapping of one device profile; unknown ids name the known ones."""
    path = profiles_dir() / f"{device}.yaml"
    if not path.is_file():
        known = ", ".join(list_devices()) or "none"
        raise CapsimError(f"unknown device {device!r}; known devices: {known}")
    try:
        with path.open() as fh:
            data = load_data_yaml(fh)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, str(path)) from None
    if not isinstance(data, dict):
        raise CapsimError("expected a mapping at the top level", source=str(path))
    return data
