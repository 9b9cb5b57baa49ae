"""A queue kept sorted by a per-job key, so a pass walks it in order without re-sorting.

A plain Python list with `bisect` is used instead of a heap: inserts and removals are a C-speed memmove
(fast for the queue lengths a cluster sees) and, unlike a heap, the list can be walked in order up to a
depth bound without popping.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator


class SortedQueue:
    def __init__(self):
        self._keys: list[tuple] = []  # (key..., job.index): the index breaks ties and identifies the job
        self._key_of: dict[int, tuple] = {}
        self._jobs: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, index: int) -> bool:
        return index in self._key_of

    def add(self, job, key: tuple) -> None:
        entry = (*key, job.index)
        self._key_of[job.index] = entry
        self._jobs[job.index] = job
        insort(self._keys, entry)

    def remove(self, job) -> None:
        entry = self._key_of.pop(job.index, None)
        if entry is None:
            return
        del self._jobs[job.index]
        del self._keys[bisect_left(self._keys, entry)]

    def first(self):
        return self._jobs[self._keys[0][-1]] if self._keys else None

    def last(self):
        return self._jobs[self._keys[-1][-1]] if self._keys else None

    def key(self, job) -> tuple | None:
        return self._key_of.get(job.index)

    def __iter__(self) -> Iterator:
        jobs = self._jobs
        for entry in list(self._keys):  # a copy: the caller may remove jobs while walking
            yield jobs[entry[-1]]

    def reversed(self) -> Iterator:
        jobs = self._jobs
        for entry in reversed(list(self._keys)):
            yield jobs[entry[-1]]

    def after(self, entry: tuple | None) -> Iterator:
        """Jobs strictly after `entry` (a value of `key`; None: from the start), without copying:
        the queue must not change during the walk."""
        keys, jobs = self._keys, self._jobs
        i = 0 if entry is None else bisect_right(keys, entry)
        while i < len(keys):
            yield jobs[keys[i][-1]]
            i += 1
