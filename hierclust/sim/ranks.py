"""What the simulator keeps per rank besides the node object: flat columns, not an object each.

An object per rank (a slotted dataclass and its wall-clock int) costs about 150 bytes a node.
Here every rank has only entries in flat columns (``array('q')``: 8 bytes, no int object): its
incarnation, wall-clock offset and monotonic shift; its disk is one list slot. The clock state
that only a paused or skewed rank needs (:class:`ClockState`) exists only for the ranks
``Simulator.pause`` or ``Simulator.set_skew`` touched.

``Simulator.slots[rank]`` still reads and writes all of it as one :class:`NodeSlot` (the
scenarios, the fuzzer and the tests use it); the run loop uses the columns directly.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

NEVER = -(1 << 62)
"""An instant before every other (a fault that never happened ended then)."""


@dataclass(slots=True)
class ClockState:
    """A rank's clock and pause state, once it was paused or skewed.

    The local clock is continuous across skew changes: local = anchor_local + (t - anchor_true)
    * (1 + skew_ppm / 1e6). A rank without one runs at true rate: local = t + its shift."""

    anchor_local: int
    paused_until: int = NEVER
    skew_ppm: int = 0
    anchor_true: int = 0
    skewed: bool = False
    unskewed_ns: int = NEVER  # when a skew of this node's clock last ended


class Ranks:
    """The per-rank columns of one simulation."""

    __slots__ = ("incarnation", "wall", "shift", "disk", "clocks")

    def __init__(self, count: int) -> None:
        self.incarnation = array("q", [1]) * count
        self.wall = array("q", bytes(8 * count))  # the node's wall clock minus its monotonic
        self.shift = array("q", bytes(8 * count))  # the monotonic clock minus true time
        self.disk: list[Any] = [None] * count
        # ranks ever paused or skewed -> their clock state (the run loop looks only these up)
        self.clocks: dict[int, ClockState] = {}

    def clock(self, rank: int) -> ClockState:
        """``rank``'s clock state, created (at true rate, as it runs now) on first use."""
        state = self.clocks.get(rank)
        if state is None:
            state = self.clocks[rank] = ClockState(anchor_local=self.shift[rank])
        return state


class NodeSlot:
    """A read-write view of one rank's columns (made on access; cheap, holds no state)."""

    __slots__ = ("_ranks", "_rank")

    def __init__(self, ranks: Ranks, rank: int) -> None:
        self._ranks = ranks
        self._rank = rank

    @property
    def incarnation(self) -> int:
        return self._ranks.incarnation[self._rank]

    @incarnation.setter
    def incarnation(self, value: int) -> None:
        self._ranks.incarnation[self._rank] = value

    @property
    def disk(self) -> Any:
        return self._ranks.disk[self._rank]

    @disk.setter
    def disk(self, value: Any) -> None:
        self._ranks.disk[self._rank] = value

    @property
    def wall(self) -> int:
        return self._ranks.wall[self._rank]

    @wall.setter
    def wall(self, value: int) -> None:
        self._ranks.wall[self._rank] = value

    def _state(self) -> ClockState | None:
        return self._ranks.clocks.get(self._rank)

    @property
    def paused_until(self) -> int:
        state = self._state()
        return NEVER if state is None else state.paused_until

    @property
    def skew_ppm(self) -> int:
        state = self._state()
        return 0 if state is None else state.skew_ppm

    @property
    def skewed(self) -> bool:
        state = self._state()
        return state is not None and state.skewed

    @property
    def unskewed_ns(self) -> int:
        state = self._state()
        return NEVER if state is None else state.unskewed_ns


class SlotViews:
    """``Simulator.slots``: the sequence of every rank's :class:`NodeSlot`."""

    __slots__ = ("_ranks",)

    def __init__(self, ranks: Ranks) -> None:
        self._ranks = ranks

    def __len__(self) -> int:
        return len(self._ranks.disk)

    def __getitem__(self, rank: int) -> NodeSlot:
        if not 0 <= rank < len(self._ranks.disk):
            raise IndexError(f"no rank {rank}")
        return NodeSlot(self._ranks, rank)

    def __iter__(self) -> Iterator[NodeSlot]:
        for rank in range(len(self._ranks.disk)):
            yield NodeSlot(self._ranks, rank)
