"""Rate-limited log lines for dropped datagrams: a flood costs counters, not disk.

At most one line per drop reason per ``interval_ns``; the next line says how many more of that
reason were suppressed in between. Time is passed in (``now_ns``), so the simulator and tests drive
it; the codec never reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hierclust.codec.wire import Dropped, DropReason

DEFAULT_INTERVAL_NS = 10_000_000_000
"""One line per reason per 10 s."""

_LOG = logging.getLogger("hierclust.codec")


class DropLogger:
    """Turns drops into log lines, at most one per reason per ``interval_ns``."""

    __slots__ = ("_emit", "_last_ns", "_prefix", "_suppressed", "interval_ns")

    def __init__(
        self,
        *,
        interval_ns: int = DEFAULT_INTERVAL_NS,
        emit: Callable[[str], None] | None = None,
        prefix: str = "",
    ) -> None:
        if interval_ns < 0:
            raise ValueError(f"interval_ns must not be negative, got {interval_ns}")
        self.interval_ns = interval_ns
        self._emit = emit if emit is not None else _LOG.warning
        self._prefix = f"{prefix}: " if prefix else ""
        self._last_ns: dict[DropReason, int] = {}
        self._suppressed: dict[DropReason, int] = {}

    def note(self, now_ns: int, dropped: Dropped, peer: object = None) -> str | None:
        """Account for one drop at ``now_ns``; returns the line if one was emitted."""
        reason = dropped.reason
        last = self._last_ns.get(reason)
        if last is not None and now_ns - last < self.interval_ns:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return None
        more = self._suppressed.pop(reason, 0)
        self._last_ns[reason] = now_ns
        origin = f" from {peer}" if peer is not None else ""
        line = f"{self._prefix}dropped datagram ({reason.value}){origin}: {dropped.detail}"
        if more:
            line += f" (+{more} more {reason.value} since the last line)"
        self._emit(line)
        return line

    def suppressed(self, reason: DropReason) -> int:
        """Drops of ``reason`` not yet mentioned in a line."""
        return self._suppressed.get(reason, 0)
