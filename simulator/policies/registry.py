"""Policies by name: `scheduler: {policy: NAME, ...options}`. A user's own policy registers with
`@register_policy("name")` in their notebook or package and is then usable by naming it, or is named
by reference, `policy: "mypackage.policies:MyPolicy"`, which any process can import: worker processes
and Ray workers resolve the reference themselves, where a name registered in a notebook is unknown."""

from __future__ import annotations

import importlib
from typing import Any

from simulator.errors import CapsimError
from simulator.policies.base import Policy

POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str):
    def decorator(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return decorator


def policy_reference(cls: type[Policy]) -> str:
    """The "module:Class" reference of a policy class, for a scenario that other processes will run."""
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise CapsimError(f"expected a Policy subclass, got {cls!r}", where="policy")
    return f"{cls.__module__}:{cls.__qualname__}"


def policy_class(name: str, source: str | None = None) -> type[Policy]:
    if ":" in name:
        return _resolve_reference(name, source)
    _load_builtin()
    if name not in POLICIES:
        raise CapsimError(f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}",
                          source=source, where="scheduler.policy")
    return POLICIES[name]


def validate_options(cls: type[Policy], options: dict[str, Any], source: str = "<scenario>"):
    """The policy's Options, or one CapsimError naming scheduler.<key path> (see option_checks.py)."""
    from simulator.policies.option_checks import checked_options

    return checked_options(cls, options, source)


def _resolve_reference(ref: str, source: str | None) -> type[Policy]:
    module_name, _, qualname = ref.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise CapsimError(f"cannot import module {module_name!r} of policy {ref!r}: {exc}", source=source,
                          where="scheduler.policy") from None
    except AttributeError:
        hint = (" (a class defined in a notebook or script exists only in that process: put it in a module "
                "the workers can import)") if module_name == "__main__" else ""
        raise CapsimError(f"module {module_name!r} has no {qualname!r}{hint}", source=source,
                          where="scheduler.policy") from None
    if not (isinstance(obj, type) and issubclass(obj, Policy)):
        raise CapsimError(f"{ref!r} is not a Policy subclass", source=source, where="scheduler.policy")
    return obj


def _load_builtin() -> None:
    # Importing the modules runs their @register_policy decorators.
    from simulator.policies import builtin  # noqa: F401
