"""The simulator's event queue: a calendar of 0.1 ms buckets, a small heap inside the current one.

A single ``heapq`` over millions of pending events is dominated by cache misses (measured on the
reference machine: ~0.23 M events/s at 10^6 pending). Here events are appended to the bucket of
their 0.1 ms and only the bucket being run is a heap, so pushes are O(1) appends and pops work on a
heap of the few hundred events of one bucket. Buckets shorter than the network latency keep most
replies out of the running heap: at the event rate of 10^5 nodes, 0.1 ms buckets cost about a
fifth less per push and pop than 1 ms ones (a queue micro-benchmark). Order is exactly
``(time_ns, seq)``: the same as one global heap, so runs stay deterministic.
"""

from __future__ import annotations

import heapq
from typing import Any

Entry = tuple[int, int, int, int, Any]  # (time_ns, seq, kind, target, payload)

BUCKET_NS = 100_000


class EventQueue:
    __slots__ = ("_buckets", "_keys", "_current", "_current_key", "_seq")

    def __init__(self) -> None:
        self._buckets: dict[int, list[Entry]] = {}
        self._keys: list[int] = []
        self._current: list[Entry] = []
        self._current_key = -1
        self._seq = 0

    def __len__(self) -> int:
        return len(self._current) + sum(len(b) for b in self._buckets.values())

    def push(self, time_ns: int, kind: int, target: int, payload: Any) -> None:
        self._seq = seq = self._seq + 1
        entry = (time_ns, seq, kind, target, payload)
        key = time_ns // BUCKET_NS
        if key <= self._current_key:
            heapq.heappush(self._current, entry)
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [entry]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(entry)

    def pop_until(self, limit_ns: int) -> Entry | None:
        """The next entry if its time is <= ``limit_ns``, else None (the entry stays queued)."""
        current = self._current
        while not current:
            if not self._keys or self._keys[0] * BUCKET_NS > limit_ns:
                return None
            self._current_key = heapq.heappop(self._keys)
            current = self._buckets.pop(self._current_key)
            heapq.heapify(current)
            self._current = current
        if current[0][0] > limit_ns:
            return None
        return heapq.heappop(current)

    def next_time(self) -> int | None:
        if self._current:
            return self._current[0][0]
        if not self._keys:
            return None
        return min(entry[0] for entry in self._buckets[self._keys[0]])
