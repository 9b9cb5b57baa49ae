"""Workload presets: a named job mix (arrivals, sizes, durations) fitted to a published trace.

A preset YAML holds the generator (`arrival`, `classes`, `users`) plus provenance (`source`, `figures`:
each derived number with where it came from) and `published`: the trace's own statistics the preset is
meant to reproduce. Shipped presets live in workloads/presets/; `capsim workload fit` writes new ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.errors import CapsimError
from simulator.profiles import workloads_dir
from simulator.units import MAX_COUNT
from simulator.workload.arrivals import ArrivalSpec
from simulator.workload.spec import JobClass, PresetWorkload, SyntheticWorkload
from simulator.yaml_file import read_yaml, validation_error


class Preset(BaseModel):
    # Numbers must be finite everywhere: NaN and infinity are refused like any value out of range.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    preset: str
    description: str = ""
    source: str
    arrival: ArrivalSpec
    classes: list[JobClass] = Field(min_length=1)
    users: int = Field(default=1, ge=1, le=MAX_COUNT)
    published: dict[str, float] = Field(default_factory=dict)
    figures: dict[str, Any] = Field(default_factory=dict)
    fit: dict[str, Any] = Field(default_factory=dict)


def presets_dir() -> Path:
    return workloads_dir() / "presets"


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def preset_path(name: str) -> Path:
    """A shipped preset's file. Only the names listed in workloads/presets/ are accepted, so a name can
    never reach a file outside that folder ("../models/llama3-8b")."""
    path = presets_dir() / f"{name}.yaml"
    if name not in list_presets() or not path.is_file():
        raise CapsimError(f"unknown preset {name!r}; shipped presets: {', '.join(list_presets()) or 'none'}")
    return path


def load_preset(path: str | Path) -> Preset:
    return preset_from_dict(read_yaml(path, "preset"), source=str(path))


def preset_from_dict(data: Any, source: str = "<preset>") -> Preset:
    if not isinstance(data, dict):
        raise CapsimError("expected a mapping with preset, source, arrival and classes", source=source)
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, source) from None


def resolve_preset(entry: PresetWorkload, base_dir: Path) -> SyntheticWorkload:
    """The synthetic source a `kind: preset` entry stands for: the preset's mix with the entry's horizon,
    rate scale and growth."""
    path = preset_path(entry.name) if entry.name is not None else Path(base_dir) / entry.path
    preset = load_preset(path)
    return SyntheticWorkload(
        kind="synthetic", name=entry.label or preset.preset, jobs=entry.jobs, until=entry.until,
        start=entry.start, growth=entry.growth, arrival=preset.arrival.scaled(entry.rate_scale),
        classes=preset.classes, users=entry.users or preset.users)
