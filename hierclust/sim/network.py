"""The simulated network: latency, loss, duplication, reordering and partitions.

All randomness comes from the ``random.Random`` handed in, so a seed fixes every delivery.
Reordering is not a separate knob: with ``jitter_ns`` > 0 two datagrams on one path can overtake
each other.

Partitions are rank ranges (every group covers a contiguous range of ranks), so cutting off a site
of a million-node topology is two integers, not a set of a million.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Partition:
    """Nodes are split into sides; datagrams between different sides are dropped.

    ``sides`` maps rank ranges ``(first, end)`` to a side number; ranks in no range are side 0.
    With ``one_way`` only datagrams *from* side 0 *to* another side are dropped (the others pass).
    """

    ranges: list[tuple[int, int, int]] = field(default_factory=list)  # (first, end, side)
    one_way: bool = False
    _starts: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.ranges.sort()
        self._starts = [r[0] for r in self.ranges]

    def side(self, rank: int) -> int:
        index = bisect.bisect_right(self._starts, rank) - 1
        if index >= 0:
            first, end, side = self.ranges[index]
            if first <= rank < end:
                return side
        return 0

    def blocks(self, src: int, dst: int) -> bool:
        a, b = self.side(src), self.side(dst)
        if a == b:
            return False
        return a == 0 if self.one_way else True


@dataclass(slots=True)
class Network:
    """Delivery model. Times are integer nanoseconds."""

    rng: random.Random
    latency_ns: int = 200_000
    jitter_ns: int = 300_000
    loss: float = 0.0
    duplicate: float = 0.0
    partition: Partition | None = None

    def blocked(self, src: int, dst: int) -> bool:
        return self.partition is not None and self.partition.blocks(src, dst)

    def deliveries(self, src: int, dst: int) -> tuple[int, ...]:
        """Delays of the copies of one datagram that arrive (empty when it is lost)."""
        if self.partition is not None and self.partition.blocks(src, dst):
            return ()
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            return ()
        delay = self.latency_ns + (int(rng.random() * self.jitter_ns) if self.jitter_ns else 0)
        if self.duplicate and rng.random() < self.duplicate:
            again = self.latency_ns + int(rng.random() * (self.jitter_ns + 1_000_000))
            return (delay, again)
        return (delay,)
