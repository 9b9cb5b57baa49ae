"""A policy's options, as the scenario's `scheduler:` gives them, validated into its Options model with
one CapsimError naming `scheduler.<key path>` for anything wrong:

- what the model refuses (pydantic's errors, the key path without pydantic's own tags);
- what a validator of the model cannot even read (a number where it iterates a list: `thresholds: 5`),
  traced to the option that raised it;
- and, on the validated options, what no policy can use: NaN or infinite numbers and integers that do
  not fit 64 bits; for the built-in policies, whose every number is a time, a count, a share, a speed
  or a quota, negative numbers too.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from simulator.errors import CapsimError
from simulator.yaml_file import format_key_path, validation_error

_UNREADABLE = (TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError)


def checked_options(cls, options: dict[str, Any], source: str = "<scenario>") -> BaseModel:
    model = cls.Options
    try:
        validated = model.model_validate(options)
    except ValidationError as exc:
        err = validation_error(exc, source)
        where = "scheduler" + ("" if err.where == "<top level>" else f".{err.where}")
        if exc.errors()[0]["type"] == "extra_forbidden":
            raise CapsimError(f"unknown option for policy {cls.name!r}", source=source, where=where) from None
        raise CapsimError(err.detail, source=source, where=where) from None
    except _UNREADABLE as exc:
        key = _culprit(model, options)
        raise CapsimError(f"{_expected(model, key)}, got {_shown(options.get(key))}" if key else
                          f"cannot read the options ({type(exc).__name__}: {exc})", source=source,
                          where=f"scheduler.{key}" if key else "scheduler") from None
    builtin = cls.__module__.startswith("simulator.policies.")
    for path, value in _numbers(validated.model_dump(), []):
        where = "scheduler." + format_key_path(path)
        if isinstance(value, float) and not math.isfinite(value):
            raise CapsimError(f"expected a finite number, got {value}", source=source, where=where)
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise CapsimError(f"expected a whole number that fits 64 bits, got {value}", source=source, where=where)
        if builtin and value < 0:
            raise CapsimError(f"must not be negative, got {value:g}", source=source, where=where)
    return validated


def _numbers(value: Any, path: list):
    """(key path, number) of every number in validated options (booleans are not numbers here)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, [*path, k])
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _numbers(v, [*path, i])


def _culprit(model: type[BaseModel], options: dict[str, Any]) -> str | None:
    """The option whose value a validator could not read: the one that raises on its own."""
    if not isinstance(options, dict):
        return None
    for key, value in options.items():
        try:
            model.model_validate({key: value})
        except ValidationError:
            continue
        except _UNREADABLE:
            return key
    return None


def _expected(model: type[BaseModel], key: str) -> str:
    field = model.model_fields.get(key)
    origin = typing.get_origin(field.annotation) if field is not None else None
    if origin is list or (origin in (typing.Union, types.UnionType)
                          and any(typing.get_origin(a) is list for a in typing.get_args(field.annotation))):
        return "expected a list"
    if origin is dict:
        return "expected a mapping"
    return "cannot read this value"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
