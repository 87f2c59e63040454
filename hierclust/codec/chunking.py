"""Split a large payload (a state sync, a notice backlog) into messages that each fit a datagram."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from hierclust.codec.errors import EncodeError

T = TypeVar("T")
M = TypeVar("M")


def chunk_items(
    items: Sequence[T],
    build: Callable[[tuple[T, ...]], M],
    fits: Callable[[M], bool],
    *,
    max_items: int | None = None,
) -> list[M]:
    """Messages ``build(chunk)`` over consecutive chunks of ``items``, each as large as ``fits``
    allows (and at most ``max_items`` long); in order, covering every item exactly once.

    ``fits`` is usually :meth:`hierclust.codec.Codec.fits`. An empty ``items`` gives one message
    with an empty chunk (a sync that says "nothing"). Raises :class:`EncodeError` when a single
    item does not fit on its own. Costs O(log chunk) encodings per chunk.
    """
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    if not items:
        empty = build(())
        if not fits(empty):
            raise EncodeError("even an empty chunk does not fit in a datagram")
        return [empty]
    limit = len(items) if max_items is None else max_items
    out: list[M] = []
    start = 0
    while start < len(items):
        room = min(limit, len(items) - start)
        best = build(tuple(items[start : start + 1]))
        if not fits(best):
            raise EncodeError(f"item {start} alone does not fit a datagram: {items[start]!r:.60}")
        good, bad = 1, room + 1  # build(good items) fits; build(bad items) does not (or too many)
        probe = 2
        while probe <= room:  # gallop up, then bisect
            candidate = build(tuple(items[start : start + probe]))
            if not fits(candidate):
                bad = probe
                break
            good, best = probe, candidate
            probe *= 2
        else:
            if good < room:
                candidate = build(tuple(items[start : start + room]))
                if fits(candidate):
                    good, best = room, candidate
                else:
                    bad = room
        while bad - good > 1:
            middle = (good + bad) // 2
            candidate = build(tuple(items[start : start + middle]))
            if fits(candidate):
                good, best = middle, candidate
            else:
                bad = middle
        out.append(best)
        start += good
    return out
