"""Replay window: accept each ``(src, incarnation, seq)`` at most once, in bounded memory.

Per source the window keeps its incarnation, the highest sequence number accepted and a bitmap of
the ``width`` numbers at and below it (bit ``i`` = ``highest - i`` seen). A datagram is

- ``stale_incarnation`` when its incarnation is below the one tracked for its source;
- ``replayed`` when its seq is already marked, or so far below ``highest`` that the bitmap no
  longer covers it (too old to tell, so refused);
- accepted otherwise: a higher incarnation starts a fresh window, a higher seq slides it.

Sequence numbers count every datagram a sender sends, to any destination, so a receiver sees gaps;
the width (256 by default, a Python int) tolerates reordering while a leader fans out to a whole
group. At most ``max_sources`` sources are tracked; the least recently accepted one is forgotten
first. Only authenticated datagrams reach the window, so only key holders can fill it, and with the
default cap a node never talks to enough peers (64 per group, 8 tiers) to evict one. A forgotten
source, or a receiver that restarted, accepts that source's next datagram whatever its seq: the
window guards against replays during a receiver's lifetime, not across its restarts.

:meth:`check` does not change anything, :meth:`accept` records: the codec checks first and records
only once the whole datagram has been decoded, so a datagram that is dropped later leaves no trace.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum

DEFAULT_WIDTH = 256
DEFAULT_MAX_SOURCES = 4096


class Verdict(Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    STALE_INCARNATION = "stale_incarnation"


class _Track:
    __slots__ = ("bitmap", "highest", "incarnation")

    def __init__(self, incarnation: int, seq: int) -> None:
        self.incarnation = incarnation
        self.highest = seq
        self.bitmap = 1


class ReplayWindow:
    """Sliding window of sequence numbers per source, keyed by the source's incarnation."""

    __slots__ = ("_mask", "_tracks", "max_sources", "width")

    def __init__(self, *, width: int = DEFAULT_WIDTH, max_sources: int = DEFAULT_MAX_SOURCES):
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        if max_sources < 1:
            raise ValueError(f"max_sources must be at least 1, got {max_sources}")
        self.width = width
        self.max_sources = max_sources
        self._mask = (1 << width) - 1
        self._tracks: OrderedDict[int, _Track] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, src: object) -> bool:
        return src in self._tracks

    def incarnation_of(self, src: int) -> int | None:
        track = self._tracks.get(src)
        return None if track is None else track.incarnation

    def check(self, src: int, incarnation: int, seq: int) -> Verdict:
        track = self._tracks.get(src)
        if track is None or incarnation > track.incarnation:
            return Verdict.FRESH
        if incarnation < track.incarnation:
            return Verdict.STALE_INCARNATION
        if seq > track.highest:
            return Verdict.FRESH
        offset = track.highest - seq
        if offset >= self.width or (track.bitmap >> offset) & 1:
            return Verdict.REPLAYED
        return Verdict.FRESH

    def accept(self, src: int, incarnation: int, seq: int) -> None:
        """Record a datagram :meth:`check` called fresh."""
        track = self._tracks.get(src)
        if track is None or incarnation > track.incarnation:
            if track is None and len(self._tracks) >= self.max_sources:
                self._tracks.popitem(last=False)
            self._tracks[src] = _Track(incarnation, seq)
        elif seq > track.highest:
            shift = seq - track.highest
            track.bitmap = ((track.bitmap << shift) | 1) & self._mask if shift < self.width else 1
            track.highest = seq
        else:
            track.bitmap |= 1 << (track.highest - seq)
        self._tracks.move_to_end(src)
