"""Flat integer tables derived once per :class:`Topology` and shared by every node of it.

A million nodes share one :class:`Layout`; per-node state holds only indices into it.
"""

from __future__ import annotations

import weakref

from hierclust.core.timeouts import Timing
from hierclust.topology.model import Topology
from hierclust.tuning import Tuning

TIE_NONE = 0
TIE_WITNESS = 1
TIE_DISK = 2


class Layout:
    __slots__ = (
        "topology",
        "parent",
        "tier",
        "slot_in_parent",
        "leaf",
        "first",
        "size",
        "votes",
        "quorum",
        "tie",
        "children",
        "child_first",
        "child_end",
        "timing",
        "keys",
        "_paths",
        "__weakref__",
    )

    def __init__(self, topology: Topology, tuning: Tuning | None = None) -> None:
        groups = topology.by_index
        index = {g.name: g.index for g in groups}
        self.topology = topology
        self.parent: tuple[int, ...] = tuple(
            -1 if g.parent is None else index[g.parent] for g in groups
        )
        self.tier: tuple[int, ...] = tuple(g.tier for g in groups)
        slot_in_parent = [0] * len(groups)
        for g in groups:
            for pos, child in enumerate(g.children):
                slot_in_parent[index[child]] = pos
        self.slot_in_parent: tuple[int, ...] = tuple(slot_in_parent)
        self.leaf: tuple[bool, ...] = tuple(g.is_leaf for g in groups)
        self.first: tuple[int, ...] = tuple(g.first_rank for g in groups)
        self.size: tuple[int, ...] = tuple(g.size for g in groups)
        self.votes: tuple[int, ...] = tuple(g.votes for g in groups)
        self.quorum: tuple[int, ...] = tuple(g.quorum for g in groups)
        self.tie: tuple[int, ...] = tuple(
            TIE_NONE
            if g.tiebreaker is None
            else (TIE_WITNESS if g.tiebreaker.kind == "witness" else TIE_DISK)
            for g in groups
        )
        self.children: tuple[tuple[int, ...], ...] = tuple(
            tuple(index[c] for c in g.children) for g in groups
        )
        self.child_first: tuple[tuple[int, ...], ...] = tuple(
            tuple(topology.groups[c].first_rank for c in g.children) for g in groups
        )
        self.child_end: tuple[tuple[int, ...], ...] = tuple(
            tuple(topology.groups[c].end_rank for c in g.children) for g in groups
        )
        timings: dict[Tuning, Timing] = {}
        self.timing: tuple[Timing, ...] = tuple(
            timings.setdefault(tuning or g.tuning, Timing(tuning or g.tuning)) for g in groups
        )
        # timer keys per group, shared by every node (tick, candidacy, lease)
        self.keys: tuple[tuple[tuple[str, int], tuple[str, int], tuple[str, int]], ...] = tuple(
            (("t", g.index), ("c", g.index), ("l", g.index)) for g in groups
        )
        self._paths: dict[int, tuple[int, ...]] = {}

    def path(self, rank: int) -> tuple[int, ...]:
        """Group indices from ``rank``'s leaf group to the root (shared tuple per leaf group)."""
        leaf = self.topology.leaf_of(rank).index
        found = self._paths.get(leaf)
        if found is None:
            chain = [leaf]
            while self.parent[chain[-1]] >= 0:
                chain.append(self.parent[chain[-1]])
            found = self._paths[leaf] = tuple(chain)
        return found


_CACHE: weakref.WeakKeyDictionary[Topology, dict[Tuning | None, Layout]] = (
    weakref.WeakKeyDictionary()
)


def layout_of(topology: Topology, tuning: Tuning | None = None) -> Layout:
    """The shared layout of ``topology`` (with every group's tuning replaced by ``tuning``)."""
    per = _CACHE.get(topology)
    if per is None:
        per = _CACHE[topology] = {}
    found = per.get(tuning)
    if found is None:
        found = per[tuning] = Layout(topology, tuning)
    return found
