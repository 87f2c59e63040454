"""The immutable topology: a tree of groups over nodes identified by rank.

Theory of operation
-------------------
Nodes are numbered by *rank* ``0..N-1`` in depth-first order of the group tree, so every group --
a leaf group or a whole subtree -- covers one contiguous rank range ``[first_rank, end_rank)``.
That is what keeps a million nodes cheap: names are ranges (:class:`NodeNames`), the leaf group of a
node is a binary search over leaf boundaries, and the protocol core and simulator can use plain
integers for node ids. Rank is also the stable election order: within a group, lower rank stands
first.

Tiers count from the leaves: a leaf group is tier 0 and a group is one tier above its highest
child, so the root's tier + 1 is the depth. The group tree is a networkx ``DiGraph`` (edges parent
-> child) for queries and drawing; hot-path lookups use the plain tuples on :class:`Group`.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import networkx as nx

from hierclust.topology.names import NodeNames
from hierclust.tuning import Tuning


@dataclass(frozen=True, slots=True, order=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TieBreaker:
    """One extra vote for a group: a witness daemon at ``address`` or a lease file at ``path``."""

    kind: Literal["witness", "disk"]
    address: Address | None = None
    path: str | None = None

    def describe(self) -> str:
        return f"witness {self.address}" if self.kind == "witness" else f"disk {self.path}"


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    index: int
    tier: int
    parent: str | None
    children: tuple[str, ...]
    first_rank: int
    end_rank: int
    tuning: Tuning
    tiebreaker: TieBreaker | None
    generated: bool

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def size(self) -> int:
        """Configured members: nodes of a leaf group, slots (child groups) otherwise."""
        return self.end_rank - self.first_rank if self.is_leaf else len(self.children)

    @property
    def votes(self) -> int:
        return self.size + (1 if self.tiebreaker is not None else 0)

    @property
    def quorum(self) -> int:
        """Strict majority of the configured votes."""
        return self.votes // 2 + 1

    @property
    def ranks(self) -> range:
        """Every node under this group (its members when it is a leaf group)."""
        return range(self.first_rank, self.end_rank)


@dataclass(frozen=True, slots=True)
class Addressing:
    """Node addresses: ``base_port`` + offset on ``host``, or nodes spread over ``hosts``."""

    host: str = "127.0.0.1"
    base_port: int | None = None
    hosts: tuple[str, ...] = ()
    overrides: Mapping[int, Address] | None = None

    def per_host(self, total: int) -> int:
        return -(-total // len(self.hosts)) if self.hosts else total

    def computed(self, rank: int, total: int) -> Address | None:
        if self.base_port is None:
            return None
        if not self.hosts:
            return Address(self.host, self.base_port + rank)
        per = self.per_host(total)
        return Address(self.hosts[rank // per], self.base_port + rank % per)

    def computed_owner(self, address: Address, total: int) -> int | None:
        """The rank whose computed address is ``address``, if any."""
        if self.base_port is None:
            return None
        offset = address.port - self.base_port
        if not self.hosts:
            ok = address.host == self.host and 0 <= offset < total
            return offset if ok else None
        per = self.per_host(total)
        if address.host not in self.hosts or not 0 <= offset < per:
            return None
        rank = self.hosts.index(address.host) * per + offset
        return rank if rank < total else None


class Topology:
    """A validated cluster layout. Build it with :func:`hierclust.topology.load` or ``loads``."""

    def __init__(
        self,
        *,
        name: str,
        source: str,
        tuning: Tuning,
        names: NodeNames,
        groups: dict[str, Group],
        root: str,
        addressing: Addressing,
        secret_file: str | None,
        warnings: tuple[str, ...],
    ) -> None:
        self.name = name
        self.source = source
        self.tuning = tuning
        self.names = names
        self.groups: Mapping[str, Group] = groups
        self.root = groups[root]
        self.addressing = addressing
        self.secret_file = secret_file
        self.warnings = warnings
        self.by_index: tuple[Group, ...] = tuple(groups.values())
        leaves = sorted((g for g in self.by_index if g.is_leaf), key=lambda g: g.first_rank)
        self._leaves: tuple[Group, ...] = tuple(leaves)
        self._leaf_starts = [g.first_rank for g in leaves]
        self._graph: nx.DiGraph[str] | None = None

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return len(self.names)

    @property
    def depth(self) -> int:
        """Number of tiers, leaf tier included."""
        return self.root.tier + 1

    def tiers(self) -> list[int]:
        """Groups per tier, tier 0 first."""
        counts = Counter(g.tier for g in self.by_index)
        return [counts[t] for t in range(self.depth)]

    @property
    def leaves(self) -> tuple[Group, ...]:
        return self._leaves

    # -- nodes ---------------------------------------------------------------------------------
    def node_name(self, rank: int) -> str:
        return self.names[rank]

    def rank(self, name: str) -> int:
        """Rank of a node name; ``KeyError`` with a readable message when unknown."""
        found = self.names.rank(name)
        if found is None:
            raise KeyError(f"no node named {name!r} in {self.source}")
        return found

    def leaf_of(self, rank: int) -> Group:
        if not 0 <= rank < self.num_nodes:
            raise IndexError(f"rank {rank} outside 0..{self.num_nodes - 1}")
        return self._leaves[bisect.bisect_right(self._leaf_starts, rank) - 1]

    def path(self, rank: int) -> tuple[Group, ...]:
        """Groups a node may sit in, leaf first: it joins each one above while it leads below."""
        chain = [self.leaf_of(rank)]
        while chain[-1].parent is not None:
            chain.append(self.groups[chain[-1].parent])
        return tuple(chain)

    def address(self, rank: int) -> Address | None:
        overrides = self.addressing.overrides
        if overrides and rank in overrides:
            return overrides[rank]
        return self.addressing.computed(rank, self.num_nodes)

    # -- groups --------------------------------------------------------------------------------
    def group(self, name: str) -> Group:
        try:
            return self.groups[name]
        except KeyError:
            raise KeyError(f"no group named {name!r} in {self.source}") from None

    def slots(self, group: Group) -> tuple[Group, ...]:
        """Child groups whose leaders fill ``group``'s slots, in slot order."""
        return tuple(self.groups[c] for c in group.children)

    def members(self, group: Group) -> range:
        """Ranks of a leaf group's members."""
        if not group.is_leaf:
            raise ValueError(f"group {group.name} holds slots, not nodes; use slots()")
        return group.ranks

    def hostlist(self, group: Group) -> str:
        """Every node under ``group`` as a compact hostlist."""
        return self.names.fold(group.first_rank, group.end_rank)

    def subtree(self, group: Group) -> Iterator[Group]:
        """``group`` and everything below it, depth-first in slot order."""
        stack = [group]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(self.groups[c] for c in reversed(current.children))

    @property
    def graph(self) -> nx.DiGraph[str]:
        """The group tree as a networkx DiGraph (parent -> child), built on first use."""
        if self._graph is None:
            graph: nx.DiGraph[str] = nx.DiGraph()
            for g in self.by_index:
                graph.add_node(g.name, tier=g.tier, size=g.size)
                if g.parent is not None:
                    graph.add_edge(g.parent, g.name)
            self._graph = graph
        return self._graph

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.source,
            "nodes": self.num_nodes,
            "groups": len(self.by_index),
            "depth": self.depth,
            "tiers": self.tiers(),
            "root": self.root.name,
            "addressed": self.address(0) is not None if self.num_nodes else False,
            "warnings": list(self.warnings),
        }
