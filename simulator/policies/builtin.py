"""Imports every built-in policy so that its registration runs; `BUILTIN` names them all."""

from simulator.policies import (  # noqa: F401
    backfill,
    edf,
    elastic,
    fifo,
    gavel,
    gittins,
    quota,
    replay,
    shortest,
    themis,
    tiresias,
)
from simulator.policies.registry import POLICIES

# The names of the built-in policies, read from the registry: those registered by this package's
# modules (not a user's or a test's own). Tests and benchmarks iterate this, not a list of their own.
BUILTIN: tuple[str, ...] = tuple(sorted(name for name, cls in POLICIES.items()
                                        if cls.__module__.startswith("simulator.policies.")))
