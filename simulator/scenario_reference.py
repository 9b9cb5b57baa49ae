"""The scenario file's reference and JSON Schema, generated from the pydantic models that validate it,
so the docs (docs/scenario_reference.md) and editors (docs/scenario.schema.json) never drift from the code.

Durations are validated from numbers (seconds) or strings with units ("90s", "2h", "30d"); pydantic's own
schema only knows the number, so every field whose validator parses a duration is widened here to accept
the string form too."""

from __future__ import annotations

import json
from collections import deque

from pydantic import BaseModel

from simulator.scenario import Scenario
from simulator.units import parse_duration

DURATION = {"type": "string", "pattern": r"^\s*[0-9.eE+-]+\s*(s|m|min|h|d|w|y)?\s*$",
            "description": "a duration: seconds, or a number with a unit (s, m, h, d, w, y)"}
# Validators that parse durations, by the names they call or carry (lambdas call parse_duration).
_PARSERS = {"parse_duration", "_seconds", "_optional_duration", "_duration_list"}


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every pydantic model reachable from `root`'s fields, by class name (the schema's $defs keys)."""
    seen: dict[str, type[BaseModel]] = {}
    todo = deque([root])
    while todo:
        model = todo.popleft()
        if model.__name__ in seen:
            continue
        seen[model.__name__] = model
        for field in model.model_fields.values():
            todo.extend(_nested(field.annotation))
    return seen


def _nested(annotation) -> list[type[BaseModel]]:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _nested(arg)]


def duration_fields(model: type[BaseModel]) -> dict[str, bool]:
    """{field alias: is a list} of the fields whose before-validator parses a duration."""
    out = {}
    for dec in model.__pydantic_decorators__.field_validators.values():
        func = getattr(dec.func, "__func__", dec.func)
        names = set(getattr(getattr(func, "__code__", None), "co_names", ())) | {getattr(func, "__name__", "")}
        if func is parse_duration or names & _PARSERS:
            for name in dec.info.fields:
                field = model.model_fields[name]
                out[field.alias or name] = "list" in str(field.annotation)
    return out


def _widen(prop: dict, is_list: bool) -> dict:
    if is_list:
        items = prop.get("items", {"type": "number"})
        return {**prop, "items": {"anyOf": [items, DURATION]}}
    if "anyOf" in prop:
        return {**prop, "anyOf": [*prop["anyOf"], DURATION]}
    rest = {k: v for k, v in prop.items() if k in ("default", "title", "description")}
    number = {k: v for k, v in prop.items() if k not in rest}
    return {**rest, "anyOf": [number, DURATION]}


def scenario_schema() -> dict:
    """The JSON Schema of a scenario file (draft 2020-12, as pydantic writes it), durations widened."""
    schema = Scenario.model_json_schema(by_alias=True)
    for name, field in Scenario.model_fields.items():
        if field.exclude:  # set by the loader, never written in a file
            schema["properties"].pop(name, None)
    defs = schema.get("$defs", {})
    for name, model in _models(Scenario).items():
        target = schema if model is Scenario else defs.get(name)
        if target is None:
            continue
        for field, is_list in duration_fields(model).items():
            if field in target.get("properties", {}):
                target["properties"][field] = _widen(target["properties"][field], is_list)
    schema["required"] = sorted({*schema.get("required", []), "workload"})  # a file always needs its jobs
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "capsim scenario"
    return schema


def schema_text() -> str:
    return json.dumps(scenario_schema(), indent=2, sort_keys=True) + "\n"


def _type(prop: dict) -> str:
    if "$ref" in prop:
        return f"[{prop['$ref'].rsplit('/', 1)[-1]}](#{prop['$ref'].rsplit('/', 1)[-1].lower()})"
    if "anyOf" in prop or "oneOf" in prop:
        parts = [_type(p) for p in prop.get("anyOf", prop.get("oneOf"))]
        return " or ".join(dict.fromkeys(p for p in parts if p != "null")) or "null"
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if prop.get("pattern") == DURATION["pattern"]:
        return "duration"
    if prop.get("type") == "object":
        return "mapping"
    bounds = [f"{op} {_bound(prop[k])}" for k, op in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                                                      ("exclusiveMaximum", "<"), ("minItems", "items ≥"),
                                                      ("maxItems", "items ≤")) if k in prop]
    return prop.get("type", "any") + (f" ({', '.join(bounds)})" if bounds else "")


def _bound(value) -> str:
    """2^53 and 2^63 as powers of two, other large bounds with thousands separators."""
    if isinstance(value, int) and value > 2**32 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    if isinstance(value, int | float) and abs(value) >= 10_000 and float(value).is_integer():
        return f"{int(value):,}"
    return str(value)


def _default(prop: dict, required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in prop:
        return ""
    value = prop["default"]
    return "none" if value is None else f"`{json.dumps(value)}`"


def reference_markdown() -> str:
    """docs/scenario_reference.md: one table per model, in the order a scenario file nests them."""
    schema = scenario_schema()
    defs = schema["$defs"]
    lines = ["# Scenario file reference", "",
             "Generated from the models that validate scenario files (`capsim scenario reference`; "
             "do not edit by hand). Editors validate a scenario against `docs/scenario.schema.json` "
             "(`capsim scenario schema`). Durations take seconds or a number with a unit "
             "(`90s`, `15m`, `2h`, `30d`, `1y`), at most 10,000 years. Numbers must be finite (no `.nan`, "
             "`.inf`). Unknown and repeated keys are errors; every error names the file, the key path and "
             "its line. The limits that hold across keys (nesting, aliases, sizes) are in "
             "docs/scenario.md, \"Validation rules\".", ""]
    order, queue = [], deque(["Scenario"])
    while queue:
        name = queue.popleft()
        if name in order:
            continue
        order.append(name)
        node = schema if name == "Scenario" else defs[name]
        refs = json.dumps(node.get("properties", {}))
        queue.extend(r.rsplit("/", 1)[-1] for r in _refs(refs))
    for name in order:
        node = schema if name == "Scenario" else defs[name]
        lines += [f"## {name}", ""]
        doc = (_models(Scenario)[name].__doc__ or "").strip() if name in _models(Scenario) else ""
        if doc and not doc.startswith("Usage docs"):
            lines += [" ".join(doc.split()), ""]
        required = set(node.get("required", []))
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for key, prop in node.get("properties", {}).items():
            desc = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{key}` | {_type(prop)} | {_default(prop, key in required)} | {desc} |")
        if node.get("additionalProperties") is True or name == "SchedulerSpec":
            lines.append("| *(other keys)* | | | options of the named policy, validated by the policy |")
        lines.append("")
    return "\n".join(lines)


def _refs(text: str) -> list[str]:
    import re

    return re.findall(r'"\$ref": "(#/\$defs/[A-Za-z0-9_]+)"', text)
