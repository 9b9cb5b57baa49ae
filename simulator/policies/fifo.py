"""First in, first out with strict head-of-line blocking: a job waits until every earlier job started."""

from __future__ import annotations

from simulator.policies.base import Policy
from simulator.policies.registry import register_policy


@register_policy("fifo")
class Fifo(Policy):
    blocking = True
    in_order = True
