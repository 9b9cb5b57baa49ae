"""Reading a YAML file the user gave us: one clear error naming the file when it cannot be read or parsed,
and naming the key path (and line) when its contents do not validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulator.errors import CapsimError

# libyaml's parser when PyYAML was built with it: our own data files (profiles, models) load ~6x faster.
_DATA_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_data_yaml(text_or_file) -> Any:
    """A YAML file shipped with capsim (same result as yaml.safe_load)."""
    return yaml.load(text_or_file, Loader=_DATA_LOADER)


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed contents of `path`; `what` names the file's role in the error ("sweep file")."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CapsimError(f"cannot read {what}: {exc.strerror}", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise CapsimError(f"malformed YAML: {exc}", source=str(path)) from None


# Discriminator tags appear in pydantic's error locations; a user never wrote them.
_TAGS = {"synthetic", "trace", "preset", "poisson", "diurnal", "constant", "exponential", "lognormal", "weibull",
         "empirical", "quantiles", "mixture", "int", "GpuChoice"}


def _key_path(loc: tuple) -> list:
    return [p for p in loc if not (isinstance(p, str) and (p in _TAGS or "[" in p or "-" in p and "(" in p))]


def format_key_path(parts: list) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _line_of(root: yaml.Node | None, parts: list) -> int | None:
    """The 1-based line of a key path in the composed YAML, or of its nearest existing parent."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for p in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(p, str):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == p), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and p < len(node.value):
            node = node.value[p]
            line = node.start_mark.line + 1
        else:
            break
    return line


def validation_error(exc: ValidationError, source: str, root: yaml.Node | None = None) -> CapsimError:
    """A pydantic error as one CapsimError naming the file, the key path (and its line when the
    composed YAML `root` is given) and what was expected. Used for scenarios, presets and sweeps."""
    err = exc.errors()[0]
    parts = _key_path(err["loc"])
    line = _line_of(root, parts)
    where = format_key_path(parts) + (f" (line {line})" if line else "")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; the README lists the keys)"
    elif err["type"] == "missing":
        msg = "required key is missing"
    extra = len(exc.errors()) - 1
    return CapsimError(msg + (f" (and {extra} more error(s))" if extra else ""), source=source, where=where)
