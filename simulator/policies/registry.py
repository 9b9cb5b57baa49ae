"""Policies by name: `scheduler: {policy: NAME, ...options}`. A user's own policy registers with
`@register_policy("name")` in their notebook or package and is then usable by naming it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from simulator.errors import CapsimError
from simulator.policies.base import Policy

POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str):
    def decorator(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return decorator


def policy_class(name: str, source: str | None = None) -> type[Policy]:
    _load_builtin()
    if name not in POLICIES:
        raise CapsimError(f"unknown policy {name!r}; known policies: {', '.join(sorted(POLICIES))}",
                          source=source, where="scheduler.policy")
    return POLICIES[name]


def validate_options(cls: type[Policy], options: dict[str, Any], source: str = "<scenario>"):
    try:
        return cls.Options.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = "scheduler." + ".".join(str(p) for p in err["loc"])
        msg = "unknown option for policy " + repr(cls.name) if err["type"] == "extra_forbidden" else err["msg"]
        raise CapsimError(msg, source=source, where=path) from None


def _load_builtin() -> None:
    # Importing the modules runs their @register_policy decorators.
    from simulator.policies import builtin  # noqa: F401
