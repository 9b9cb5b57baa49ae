"""Imports every built-in policy so that its registration runs."""

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
