"""Reading a YAML file the user gave us: one clear error naming the file when it cannot be read or parsed,
and naming the key path (and line) when its contents do not validate.

Every YAML capsim reads, the user's and its own data files, goes through one checked loader: safe YAML
(no Python objects), and before anything is built from it a document is refused, naming the line, when
a mapping repeats a key, when it nests deeper than MAX_DEPTH levels (counting what aliases insert), when
aliases would repeat more than MAX_ALIAS_NODES nodes (the "billion laughs": a few hundred bytes that
expand to gigabytes), when an alias refers to its own anchor, or when an integer is longer than
MAX_INT_CHARS characters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulator.errors import CapsimError

MAX_DEPTH = 100  # levels of nesting, aliases expanded (a scenario needs about 8)
MAX_ALIAS_NODES = 100_000  # nodes that aliases may add to the document as written
MAX_INT_CHARS = 40  # an integer longer than this (2^64 has 20 digits) is a mistake, and slow to read

_TAG_INT = "tag:yaml.org,2002:int"
_TAG_MERGE = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.MarkedYAMLError):
    """A document capsim will not build: a repeated key, nesting too deep, an alias bomb, a huge integer."""


def _construct_int(loader, node):
    if len(node.value) > MAX_INT_CHARS:
        raise YamlLimitError(None, None, f"an integer of {len(node.value):,} characters is too long "
                             f"(at most {MAX_INT_CHARS})", node.start_mark)
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


# libyaml's parser when PyYAML was built with it: ~6x faster, and it refuses nesting over 1,000 levels
# itself, where the pure-Python composer would recurse until RecursionError.
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):
    """PyYAML's safe loader with capsim's integer constructor: a subclass, so that registering it below
    leaves PyYAML's own SafeLoader (which other libraries share) unchanged."""


_Loader.add_constructor(_TAG_INT, _construct_int)


def _check_document(root: yaml.Node) -> None:
    """Refuse repeated keys, nesting deeper than MAX_DEPTH, aliases adding more than MAX_ALIAS_NODES nodes
    and recursive aliases. One pass over the composed nodes, each visited once: an aliased node is the
    same object wherever it is used, so its expanded size and depth are computed once and reused."""
    size: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded
    depth: dict[int, int] = {}  # id(node) -> levels below and including it, aliases expanded
    open_: set[int] = set()  # nodes whose children are being visited (an alias to one is recursive)
    added = 0  # nodes that aliases add to the document as written
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            open_.discard(key)
            if depth[key] > MAX_DEPTH:
                raise YamlLimitError(None, None, f"nesting deeper than {MAX_DEPTH} levels", node.start_mark)
            continue
        if key in open_:
            raise YamlLimitError(None, None, "an alias refers to the anchor it is inside (a recursive "
                                 "structure)", node.start_mark)
        if key in size:  # an alias: the anchored node again, with everything below it
            added += size[key]
            if added > MAX_ALIAS_NODES:
                raise YamlLimitError(None, None, f"aliases repeat the anchor here into more than "
                                     f"{MAX_ALIAS_NODES:,} nodes (an alias bomb?)", node.start_mark)
            continue
        if isinstance(node, yaml.MappingNode):
            _refuse_repeated_keys(node)
        open_.add(key)
        stack.append((node, True))
        # Children in reverse, so they are visited in document order (an anchor before its aliases).
        stack.extend((c, False) for c in reversed(children))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse_repeated_keys(node: yaml.MappingNode) -> None:
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _TAG_MERGE:
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise YamlLimitError(None, None, f"key {key.value!r} appears twice in one mapping (first on line "
                                 f"{first.start_mark.line + 1}); remove one", key.start_mark)


def load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of one YAML document and its composed nodes (for error lines; None when empty), read
    with the checks above. Raises yaml.YAMLError (YamlLimitError for what the checks refuse)."""
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:  # only without libyaml, which stops at 1,000 levels itself
            raise YamlLimitError(None, None, f"nesting deeper than {MAX_DEPTH} levels", None) from None
        if root is None:
            return None, None
        _check_document(root)
        return loader.construct_document(root), root
    finally:
        loader.dispose()


def load_data_yaml(text_or_file) -> Any:
    """A YAML file shipped with capsim (or added beside its data: hardware profiles, zoo models, stacks),
    read with the same checks as the user's files."""
    text = text_or_file if isinstance(text_or_file, str) else text_or_file.read()
    return load_yaml(text)[0]


def yaml_error(exc: yaml.YAMLError, source: str) -> CapsimError:
    """A parse error or a refused document as one CapsimError naming the file, line and column."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    return CapsimError(f"malformed YAML: {problem}" if not isinstance(exc, YamlLimitError) else problem,
                       source=source, where=where)


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed contents of `path`; `what` names the file's role in the error ("sweep file")."""
    path = Path(path)
    try:
        return load_yaml(path.read_text())[0]
    except OSError as exc:
        raise CapsimError(f"cannot read {what}: {exc.strerror}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise CapsimError(f"cannot read {what}: not UTF-8 text (byte {exc.start})", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise yaml_error(exc, str(path)) from None


# Discriminator tags appear in pydantic's error locations; a user never wrote them.
_TAGS = {"synthetic", "trace", "preset", "poisson", "diurnal", "constant", "exponential", "lognormal", "weibull",
         "empirical", "quantiles", "mixture"}
# So do the names pydantic gives a union's members: constrained-int, list[float], function-after[...], a
# model's class name.
_TYPE_TAGS = {"int", "float", "str", "bool", "none", "list", "dict", "tuple", "bytes", "any", "nullable"}


def _is_tag(part: Any) -> bool:
    if not isinstance(part, str):
        return False
    return (part in _TAGS or part in _TYPE_TAGS or part.startswith("constrained-") or "[" in part or "(" in part
            or part in _model_names())


def _model_names() -> set[str]:
    from pydantic import BaseModel

    seen, todo = set(), [BaseModel]
    while todo:  # by class, not by name: two modules' `_Spec` bases each lead to their own models
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return {c.__name__ for c in seen}


def _pairs(node: yaml.MappingNode):
    """A composed mapping's (key, value) nodes, with those of its `<<` merges, as the constructor reads them."""
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.tag == _TAG_MERGE:
            for m in v.value if isinstance(v, yaml.SequenceNode) else [v]:
                if isinstance(m, yaml.MappingNode):
                    yield from _pairs(m)
        else:
            yield k, v


def _key_path(loc: tuple, root: yaml.Node | None = None) -> tuple[list, int | None]:
    """The key path as the user wrote it, without pydantic's union and discriminator tags, and its line in
    the composed YAML `root` when there is one (else None): the key's own line, or its nearest parent's."""
    if root is None:
        return [p for p in loc if not _is_tag(p)], None
    parts, node, line = [], root, root.start_mark.line + 1
    for p in loc:
        if _is_tag(p):
            continue
        found = None
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in _pairs(node) if isinstance(k, yaml.ScalarNode) and k.value == str(p)),
                         None)
        if found is not None:
            parts.append(p)
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and 0 <= p < len(node.value):
            parts.append(p)
            node = node.value[p]
            line = node.start_mark.line + 1
        else:
            parts.append(p)  # a missing or unknown key: the user's (or the model's) name for it
            node = None
    return parts, line


def format_key_path(parts: list) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: dict) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = "Input should be a mapping of keys"  # not "... or instance of GpuChoice": a class the user never saw
    ctx = err.get("ctx") or {}
    if err["type"] == "union_tag_invalid":  # `kind`, `dist` or `process` names no known form
        return f"{ctx.get('discriminator')} must be one of {ctx.get('expected_tags')}, got {_shown(ctx.get('tag'))}"
    if err["type"] == "union_tag_not_found":
        return f"required key {ctx.get('discriminator')} is missing (it says which form this is)"
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; the README lists the keys)"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] in ("finite_number", "float_parsing", "int_parsing", "int_from_float", "float_type",
                       "int_type", "list_type", "dict_type", "model_type", "string_type", "bool_type", "bool_parsing",
                       "greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long",
                       "literal_error", "int_parsing_size"):
        return f"{msg}, got {_shown(err.get('input'))}"
    return msg


def validation_error(exc: ValidationError, source: str, root: yaml.Node | None = None) -> CapsimError:
    """A pydantic error as one CapsimError naming the file, the key path (and its line when the
    composed YAML `root` is given) and what was expected. Used for scenarios, presets and sweeps.

    Where a key accepts several forms (a number, or a mapping such as {choice, weights}), pydantic
    reports why each form failed; the one that got furthest into the value is the user's meaning (a
    mapping's bad entry, not "not a number"), and when none got further each form's complaint is given."""
    errors = exc.errors()
    paths = [_key_path(e["loc"], root) for e in errors]
    deepest = max(range(len(errors)), key=lambda i: (len(paths[i][0]), -i))
    parts, line = paths[deepest]
    where = format_key_path(parts) + (f" (line {line})" if line else "")
    same = [e for e, (p, _) in zip(errors, paths, strict=True) if p == parts]
    messages = list(dict.fromkeys(_message(e) for e in same))
    msg = messages[0] if len(messages) == 1 else "none of the accepted forms fits: " + "; or ".join(messages)
    # Other errors, not the other forms' complaints about this value or a parent of it.
    extra = sum(1 for p, _ in paths if p != parts and p != parts[:len(p)])
    return CapsimError(msg + (f" (and {extra} more error(s))" if extra else ""), source=source, where=where)
