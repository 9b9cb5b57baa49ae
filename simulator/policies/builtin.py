"""Imports every built-in policy so that its registration runs."""

from simulator.policies import fifo  # noqa: F401
