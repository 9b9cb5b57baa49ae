"""A pool whose own placement state (a torus's chips, shared GPUs' room) must follow its nodes going
down and coming up and the pool entering and leaving service."""

from __future__ import annotations

from simulator.cluster.pool import Pool


class NodeSyncedPool(Pool):
    """Calls `_sync(node)` after each node goes down or comes up, and for every node when the pool is
    installed or retired."""

    def _sync(self, node: int) -> None:
        raise NotImplementedError

    def take_down(self, node: int) -> None:
        super().take_down(node)
        self._sync(node)

    def bring_up(self, node: int) -> None:
        super().bring_up(node)
        self._sync(node)

    def install(self) -> None:
        super().install()
        for node in range(self.nodes):
            self._sync(node)

    def retire(self) -> None:
        super().retire()
        for node in range(self.nodes):
            self._sync(node)
