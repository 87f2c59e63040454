"""Quorum arithmetic: tiny pure functions, tested on their own."""

from __future__ import annotations

from collections.abc import Iterable


def majority(votes: int) -> int:
    """Strict majority of ``votes`` configured votes."""
    return votes // 2 + 1


def quorate(live_votes: int, votes: int) -> bool:
    return live_votes >= majority(votes)


def popcount(mask: int) -> int:
    return mask.bit_count()


def lease_base(echoes: Iterable[int], needed: int) -> int | None:
    """The newest instant that at least ``needed`` of ``echoes`` are at or after, or None.

    A leader's lease runs from this instant: that many voters promised not to vote for anyone
    else until their echo plus the election timeout.
    """
    ordered = sorted(echoes, reverse=True)
    if needed <= 0 or len(ordered) < needed:
        return None
    return ordered[needed - 1]
