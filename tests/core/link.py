"""A tiny deterministic in-memory driver for core tests: a heap of (time, seq, event).

Sends arrive after a fixed latency, timers fire at their time (one pending timer per key, a later
SetTimer replaces it), Persist is carried out by storing the state. Every effect and event is
recorded with its virtual time so tests can assert observable facts.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hierclust.core.disk import LeaseDisk
from hierclust.core.node import Node
from hierclust.core.state import PersistentState
from hierclust.core.types import (
    CancelTimer,
    Effect,
    Emit,
    Input,
    Persist,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
    witness_group,
)
from hierclust.core.witness import Witness
from hierclust.topology import from_dict, generate_document, loads
from hierclust.topology.model import Topology
from hierclust.tuning import Tuning

MS = 1_000_000


def topo(nodes: int, fanout: int) -> Topology:
    """Balanced groups of ``fanout`` (the layout these transcripts were written for)."""
    return from_dict(generate_document(nodes, fanout, sizes="balanced"))


def topo_toml(text: str) -> Topology:
    return loads(text)


@dataclass
class Record:
    at: int
    rank: int
    event: Any


@dataclass
class Link:
    topology: Topology
    latency_ns: int = 100_000
    seed: int = 1
    tuning: Tuning | None = None
    now: int = 0
    nodes: dict[int, Node] = field(default_factory=dict)
    tiebreakers: dict[int, Witness | LeaseDisk] = field(default_factory=dict)
    persisted: dict[int, PersistentState] = field(default_factory=dict)
    events: list[Record] = field(default_factory=list)
    effects: list[Record] = field(default_factory=list)
    blocked: set[tuple[int, int]] = field(default_factory=set)
    drop_if: Callable[[int, int, Any], bool] | None = None
    sends: int = 0
    _heap: list[tuple[int, int, int, Any]] = field(default_factory=list)
    _seq: int = 0
    _timers: dict[tuple[int, Any], int] = field(default_factory=dict)

    # -- setup -------------------------------------------------------------------------------
    def start_all(self, at: int = 0) -> None:
        for rank in range(self.topology.num_nodes):
            self.start(rank, at)

    def start(
        self,
        rank: int,
        at: int | None = None,
        *,
        persisted: PersistentState | None = None,
        amnesiac: bool = False,
    ) -> Node:
        node = Node(
            self.topology,
            rank,
            rng=random.Random(self.seed * 1_000_003 + rank),
            persisted=persisted,
            tuning=self.tuning,
            amnesiac=amnesiac,
        )
        self.nodes[rank] = node
        self._push(self.now if at is None else at, rank, Start())
        return node

    def add_tiebreaker(self, group: int, kind: str = "witness") -> None:
        hold = (self.tuning or self.topology.by_index[group].tuning).election_timeout_ms
        self.tiebreakers[group] = (
            Witness(group, hold_ms=hold) if kind == "witness" else LeaseDisk(group, hold_ms=hold)
        )

    def crash(self, rank: int) -> None:
        del self.nodes[rank]

    def restart(self, rank: int, *, with_state: bool = True) -> Node:
        if not with_state:
            return self.start(rank, amnesiac=True)
        return self.start(rank, persisted=self.persisted.get(rank))

    def partition(self, *sides: Iterable[int]) -> None:
        """Block every pair of nodes on different sides (witnesses stay reachable)."""
        groups = [set(s) for s in sides]
        for i, a in enumerate(groups):
            for j, b in enumerate(groups):
                if i != j:
                    self.blocked.update((x, y) for x in a for y in b)

    def heal(self) -> None:
        self.blocked.clear()

    # -- running -----------------------------------------------------------------------------
    def _push(self, at: int, rank: int, inp: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, rank, inp))

    def run_until(self, t: int) -> None:
        while self._heap and self._heap[0][0] <= t:
            at, _, rank, item = heapq.heappop(self._heap)
            self.now = at
            if isinstance(item, tuple) and item[0] == "timer":
                _, key, gen = item
                if self._timers.get((rank, key)) != gen:
                    continue
                del self._timers[(rank, key)]
                inp: Input = TimerFired(key)
            else:
                inp = item
            self.deliver(rank, inp)
        self.now = t

    def run_for(self, dt: int) -> None:
        self.run_until(self.now + dt)

    def deliver(self, rank: int, inp: Input) -> list[Effect]:
        if rank < 0:
            tb = self.tiebreakers.get(witness_group(rank))
            if tb is None:
                return []
            effects = tb.step(self.now, inp)
        else:
            node = self.nodes.get(rank)
            if node is None:
                return []
            effects = node.step(self.now, inp)
        self.apply(rank, effects)
        return effects

    def apply(self, rank: int, effects: list[Effect]) -> None:
        for eff in effects:
            self.effects.append(Record(self.now, rank, eff))
            if isinstance(eff, Send):
                self.sends += 1
                if (rank, eff.dst) in self.blocked:
                    continue
                if self.drop_if is not None and self.drop_if(rank, eff.dst, eff.msg):
                    continue
                self._push(self.now + self.latency_ns, eff.dst, Received(rank, eff.msg))
            elif isinstance(eff, SetTimer):
                self._seq += 1
                self._timers[(rank, eff.key)] = self._seq
                self._push(eff.at_ns, rank, ("timer", eff.key, self._seq))
            elif isinstance(eff, CancelTimer):
                self._timers.pop((rank, eff.key), None)
            elif isinstance(eff, Persist):
                self.persisted[rank] = eff.state
            elif isinstance(eff, Emit):
                self.events.append(Record(self.now, rank, eff.event))

    # -- observations ------------------------------------------------------------------------
    def of(self, kind: type, *, since: int = 0) -> list[Record]:
        return [r for r in self.events if isinstance(r.event, kind) and r.at >= since]

    def leaders(self, group: int) -> list[int]:
        return [r for r, n in self.nodes.items() if n.is_leader(group)]

    def lease_holders(self, group: int) -> list[int]:
        return [r for r, n in self.nodes.items() if n.lease_valid(group, self.now)]


def three_slot_root(seed: int = 1) -> tuple[Link, int, int, list[int]]:
    """Nine nodes in three leaf groups under a root group of three slots, settled: the link,
    the root group, its leader and the two other slot holders."""
    link = Link(topo(9, 3), seed=seed)
    link.start_all()
    link.run_for(5_000 * MS)
    root = link.topology.root.index
    (leader,) = link.leaders(root)
    holders = [r for r, n in link.nodes.items() if n.term(root) > 0 and r != leader]
    assert len(holders) == 2, holders
    return link, root, leader, holders
