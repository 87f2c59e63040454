"""Read and validate topology files (TOML); see docs/topology.md for the format.

Every problem raises :class:`TopologyError` naming the file and the key path (``group.uk.parent``),
so the CLI can print one line and exit 2. Unknown keys are errors: a typo must never be ignored.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from hierclust.topology.errors import TopologyError
from hierclust.topology.model import Address, Addressing, Group, TieBreaker, Topology
from hierclust.topology.names import HostlistError, NodeNames, Piece, Run, parse_hostlist
from hierclust.tuning import (
    MAX_GROUP_SIZE,
    MAX_TIER_DEPTH,
    MAX_TOPOLOGY_FILE_BYTES,
    Tuning,
)

_GROUP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_TOP_KEYS = {"cluster", "defaults", "tiers", "addresses", "group", "node"}
_CLUSTER_KEYS = {"name", "secret_file"}
_ADDRESS_KEYS = {"host", "base_port", "hosts"}
_GROUP_KEYS = {"parent", "nodes", "fanout", "sizes", "tiebreaker", "tuning"}
SIZES = ("balanced", "odd")
"""How a generated subtree cuts its nodes into groups (``sizes =``; see :func:`chunk_spans`)."""
_NODE_KEYS = {"host", "port"}
_TIEBREAKER_KEYS = {"kind", "address", "path"}


def load(path: str | Path) -> Topology:
    """Load and validate a topology file."""
    source = str(path)
    file = Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise TopologyError(source, "", "no such file; pass the path of a .toml topology") from None
    except OSError as exc:
        raise TopologyError(source, "", f"cannot read: {exc.strerror}") from None
    if size > MAX_TOPOLOGY_FILE_BYTES:
        raise TopologyError(
            source,
            "",
            f"file is {size:,} bytes, over the {MAX_TOPOLOGY_FILE_BYTES:,}-byte limit; "
            "describe large node sets with ranges (cn[0001-9999]) instead of lists",
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(source, "", f"cannot read as UTF-8 text: {exc}") from None
    return loads(text, source=source)


def loads(text: str, source: str = "<string>") -> Topology:
    """Parse and validate topology TOML text; ``source`` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(source, "", f"not valid TOML: {exc}") from None
    return from_dict(document, source=source)


def from_dict(document: Mapping[str, Any], source: str = "<dict>") -> Topology:
    return _Builder(source, document).build()


# ------------------------------------------------------------------------------------------------


def _table(source: str, key: str, value: Any, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyError(source, key, f"expected a table, got {_kind(value)}")
    if allowed is not None:
        for child in value:
            if child not in allowed:
                raise TopologyError(
                    source,
                    f"{key}.{child}" if key else child,
                    f"unknown key; expected one of: {', '.join(sorted(allowed))}",
                )
    return value


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def _int(source: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TopologyError(source, key, f"expected a whole number, got {_kind(value)} {value!r}")
    if not lo <= value <= hi:
        raise TopologyError(source, key, f"expected {lo}..{hi}, got {value}")
    return value


def _str(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TopologyError(source, key, f"expected a non-empty string, got {_kind(value)}")
    return value


def _address(source: str, key: str, value: Any) -> Address:
    text = _str(source, key, value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TopologyError(source, key, f"expected HOST:PORT such as 127.0.0.1:7999, got {text!r}")
    return Address(host, int(port))


def _pieces(source: str, key: str, value: Any) -> list[Piece]:
    text = _str(source, key, value)
    try:
        return parse_hostlist(text)
    except HostlistError as exc:
        raise TopologyError(
            source, key, f"bad hostlist: {exc}; expected ClusterShell syntax such as cn[0001-1024]"
        ) from None


def _count(pieces: list[Piece]) -> int:
    return sum(p.count if isinstance(p, Run) else len(p) for p in pieces)


@dataclass
class _Spec:
    """One ``[group.NAME]`` table, checked but not yet placed in the tree."""

    name: str
    parent: str | None
    pieces: list[Piece] | None
    fanout: int | None
    tiebreaker: TieBreaker | None
    tuning: dict[str, Any]
    odd: bool = False
    children: list[str] = field(default_factory=list)


@dataclass
class _Draft:
    name: str
    parent: str | None
    children: list[str]
    first_rank: int
    end_rank: int
    tier: int
    tuning: Tuning
    tiebreaker: TieBreaker | None
    generated: bool
    owner: str = ""


class _Builder:
    def __init__(self, source: str, document: Mapping[str, Any]) -> None:
        self.source = source
        self.doc = _table(source, "", dict(document), _TOP_KEYS)
        self.names = NodeNames()
        self.drafts: dict[str, _Draft] = {}
        self.tier_tuning: dict[int, dict[str, Any]] = {}
        self.defaults = Tuning()
        self.specs: dict[str, _Spec] = {}

    def error(self, key: str, message: str) -> TopologyError:
        return TopologyError(self.source, key, message)

    def build(self) -> Topology:
        cluster = _table(self.source, "cluster", self.doc.get("cluster", {}), _CLUSTER_KEYS)
        if "name" not in cluster:
            raise self.error("cluster.name", 'missing; add [cluster] with name = "..."')
        name = _str(self.source, "cluster.name", cluster["name"])
        secret = cluster.get("secret_file")
        if secret is not None:
            secret = _str(self.source, "cluster.secret_file", secret)
        self.defaults = self._tuned(Tuning(), self.doc.get("defaults", {}), "defaults")
        self._read_tiers()
        specs = self._read_groups()
        self.specs = specs
        root = self._root(specs)
        self._place(specs, root)
        groups = self._finish(specs)
        if groups[root].tier + 1 > MAX_TIER_DEPTH:
            raise self.error(
                "group",
                f"tree is {groups[root].tier + 1} tiers deep, over the limit of {MAX_TIER_DEPTH}; "
                "raise fanout or flatten the nesting",
            )
        dupes = self.names.duplicates()
        if dupes:
            where = self._group_listing(specs, dupes[0])
            raise self.error(
                where,
                f"node {dupes[0]} is listed more than once"
                + (f" (also {', '.join(dupes[1:])})" if len(dupes) > 1 else "")
                + "; a node belongs to exactly one leaf group",
            )
        addressing = self._addressing(specs)
        warnings = self._warnings(groups)
        return Topology(
            name=name,
            source=self.source,
            tuning=self.defaults,
            names=self.names,
            groups=groups,
            root=root,
            addressing=addressing,
            secret_file=secret,
            warnings=tuple(warnings),
        )

    # -- tuning --------------------------------------------------------------------------------
    def _tuned(self, base: Tuning, overrides: Any, key: str) -> Tuning:
        table = _table(self.source, key, overrides, None)
        tuned, problems = base.replace_checked(table)
        if problems:
            sub, message = problems[0]
            raise self.error(f"{key}.{sub}", message)
        return tuned

    def _read_tiers(self) -> None:
        tiers = _table(self.source, "tiers", self.doc.get("tiers", {}), None)
        for tier_key, overrides in tiers.items():
            if not tier_key.isdigit() or int(tier_key) >= MAX_TIER_DEPTH:
                raise self.error(
                    f"tiers.{tier_key}",
                    f"expected a tier number 0..{MAX_TIER_DEPTH - 1} (0 = leaf groups)",
                )
            self._tuned(self.defaults, overrides, f"tiers.{tier_key}")
            self.tier_tuning[int(tier_key)] = overrides

    # -- groups --------------------------------------------------------------------------------
    def _read_groups(self) -> dict[str, _Spec]:
        raw = _table(self.source, "group", self.doc.get("group", {}), None)
        if not raw:
            raise self.error(
                "group",
                'no groups; add at least [group.NAME] with nodes = "cn[0001-0016]"',
            )
        specs: dict[str, _Spec] = {}
        for gname, body in raw.items():
            key = f"group.{gname}"
            if not _GROUP_NAME.match(gname):
                raise self.error(key, "group names use letters, digits, '_', '.', '-'")
            table = _table(self.source, key, body, _GROUP_KEYS)
            parent = table.get("parent")
            if parent is not None:
                parent = _str(self.source, f"{key}.parent", parent)
            pieces = (
                _pieces(self.source, f"{key}.nodes", table["nodes"]) if "nodes" in table else None
            )
            fanout = None
            if "fanout" in table:
                if pieces is None:
                    raise self.error(f"{key}.fanout", "fanout needs nodes = ... in the same group")
                fanout = _int(self.source, f"{key}.fanout", table["fanout"], 2, MAX_GROUP_SIZE)
            odd = False
            if "sizes" in table:
                if fanout is None:
                    raise self.error(f"{key}.sizes", "sizes needs nodes = ... and fanout = ...")
                sizes = table["sizes"]
                if sizes not in SIZES:
                    raise self.error(f"{key}.sizes", f'expected "balanced" or "odd", got {sizes!r}')
                odd = sizes == "odd"
            tiebreaker = None
            if "tiebreaker" in table:
                tiebreaker = self._tiebreaker(f"{key}.tiebreaker", table["tiebreaker"])
            tuning = _table(self.source, f"{key}.tuning", table.get("tuning", {}), None)
            specs[gname] = _Spec(gname, parent, pieces, fanout, tiebreaker, tuning, odd)
        for spec in specs.values():
            if spec.parent is None:
                continue
            if spec.parent not in specs:
                raise self.error(
                    f"group.{spec.name}.parent",
                    f"unknown parent {spec.parent!r}; defined groups: {_few(specs)}",
                )
            specs[spec.parent].children.append(spec.name)
        return specs

    def _tiebreaker(self, key: str, value: Any) -> TieBreaker:
        table = _table(self.source, key, value, _TIEBREAKER_KEYS)
        kind = table.get("kind")
        if kind == "witness":
            if "address" not in table:
                raise self.error(f"{key}.address", "a witness needs address = HOST:PORT")
            return TieBreaker(
                "witness", address=_address(self.source, f"{key}.address", table["address"])
            )
        if kind == "disk":
            if "path" not in table:
                raise self.error(f"{key}.path", "a disk tie-breaker needs path = a lease file")
            return TieBreaker("disk", path=_str(self.source, f"{key}.path", table["path"]))
        raise self.error(f"{key}.kind", f'expected "witness" or "disk", got {kind!r}')

    def _root(self, specs: dict[str, _Spec]) -> str:
        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(specs)
        graph.add_edges_from((s.parent, s.name) for s in specs.values() if s.parent is not None)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = [edge[0] for edge in nx.find_cycle(graph)]
            loop = " -> ".join([*cycle, cycle[0]])
            raise self.error(
                f"group.{cycle[0]}.parent", f"groups form a cycle ({loop}); the tree needs one root"
            )
        roots = [s.name for s in specs.values() if s.parent is None]
        if len(roots) != 1:
            raise self.error(
                f"group.{roots[1]}.parent",
                f"several groups have no parent ({', '.join(roots[:5])}); "
                "give all but the root a parent",
            )
        for spec in specs.values():
            key = f"group.{spec.name}"
            if spec.pieces is not None and spec.children:
                raise self.error(
                    f"{key}.nodes",
                    f"group holds nodes and also has child groups ({', '.join(spec.children)}); "
                    "move the nodes into a child group",
                )
            if spec.pieces is None and not spec.children:
                raise self.error(
                    key, 'empty group: give it nodes = "..." or make other groups name it as parent'
                )
            if len(spec.children) > MAX_GROUP_SIZE:
                raise self.error(
                    key,
                    f"{len(spec.children)} child groups, over the group-size limit of "
                    f"{MAX_GROUP_SIZE}; add a tier in between",
                )
            if spec.pieces is not None and spec.fanout is None:
                count = _count(spec.pieces)
                if count > MAX_GROUP_SIZE:
                    raise self.error(
                        f"{key}.nodes",
                        f"{count} nodes, over the group-size limit of {MAX_GROUP_SIZE}; "
                        "add fanout = 16 to split them into generated groups",
                    )
        return roots[0]

    def _place(self, specs: dict[str, _Spec], root: str) -> None:
        """Assign ranks depth-first and expand generated groups; fills ``self.drafts``."""
        # Iterative post-order: ranks are handed out as leaves are reached, left to right.
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            gname, done = stack.pop()
            spec = specs[gname]
            if spec.pieces is not None:
                self._expand(spec)
                continue
            if not done:
                stack.append((gname, True))
                stack.extend((c, False) for c in reversed(spec.children))
                continue
            kids = [self.drafts[c] for c in spec.children]
            self.drafts[gname] = _Draft(
                gname,
                spec.parent,
                list(spec.children),
                kids[0].first_rank,
                kids[-1].end_rank,
                1 + max(k.tier for k in kids),
                self.defaults,
                spec.tiebreaker,
                False,
            )

    def _expand(self, spec: _Spec) -> None:
        assert spec.pieces is not None
        first, end = self.names.extend(spec.pieces)
        fanout = spec.fanout or MAX_GROUP_SIZE
        # Level 0: chunks of consecutive ranks; each level above groups the one below, until one
        # level fits under the explicit group itself.
        spans = chunk_spans(first, end, fanout, odd=spec.odd)
        level: list[_Draft] = []
        tier = 0
        while len(spans) > 1:
            generated: list[_Draft] = []
            for i, (lo, hi) in enumerate(spans):
                gname = f"{spec.name}.t{tier}.{i}"
                if gname in self.specs:
                    raise self.error(
                        f"group.{gname}",
                        f"name clashes with a group generated from group.{spec.name}; rename it",
                    )
                children = level[lo:hi] if tier else []
                draft = _Draft(
                    gname,
                    None,
                    [c.name for c in children],
                    children[0].first_rank if tier else lo,
                    children[-1].end_rank if tier else hi,
                    tier,
                    self.defaults,
                    None,
                    True,
                    spec.name,
                )
                for child in children:
                    child.parent = gname
                generated.append(draft)
                self.drafts[gname] = draft
            level = generated
            spans = chunk_spans(0, len(level), fanout, odd=spec.odd)
            tier += 1
        for draft in level:
            draft.parent = spec.name
        self.drafts[spec.name] = _Draft(
            spec.name,
            spec.parent,
            [d.name for d in level],
            first,
            end,
            tier,
            self.defaults,
            spec.tiebreaker,
            False,
        )

    def _finish(self, specs: dict[str, _Spec]) -> dict[str, Group]:
        # Resolve tuning once per (tier, owning explicit group) so a million nodes share objects.
        per_tier: dict[int, Tuning] = {}

        def tier_base(tier: int) -> Tuning:
            if tier not in per_tier:
                base = self.defaults
                if tier in self.tier_tuning:
                    base = self._tuned(base, self.tier_tuning[tier], f"tiers.{tier}")
                per_tier[tier] = base
            return per_tier[tier]

        owner_overrides: dict[str, dict[str, Any]] = {
            s.name: s.tuning for s in specs.values() if s.tuning
        }
        groups: dict[str, Group] = {}
        order = self._preorder()
        for index, gname in enumerate(order):
            draft = self.drafts[gname]
            tuning = tier_base(draft.tier)
            owner = draft.owner or gname
            overrides = owner_overrides.get(owner)
            if overrides:
                tuning = self._tuned(tuning, overrides, f"group.{owner}.tuning")
            groups[gname] = Group(
                name=gname,
                index=index,
                tier=draft.tier,
                parent=draft.parent,
                children=tuple(draft.children),
                first_rank=draft.first_rank,
                end_rank=draft.end_rank,
                tuning=tuning,
                tiebreaker=draft.tiebreaker,
                generated=draft.generated,
            )
        return groups

    def _preorder(self) -> list[str]:
        roots = [d.name for d in self.drafts.values() if d.parent is None]
        order: list[str] = []
        stack = list(reversed(roots))
        while stack:
            gname = stack.pop()
            order.append(gname)
            stack.extend(reversed(self.drafts[gname].children))
        return order

    def _group_listing(self, specs: dict[str, _Spec], node: str) -> str:
        holders = [
            s.name for s in specs.values() if s.pieces is not None and _listed(s.pieces, node)
        ]
        if len(holders) > 1:
            return f"group.{holders[1]}.nodes"
        return f"group.{holders[0]}.nodes" if holders else "group"

    # -- addresses -----------------------------------------------------------------------------
    def _addressing(self, specs: dict[str, _Spec]) -> Addressing:
        table = _table(self.source, "addresses", self.doc.get("addresses", {}), _ADDRESS_KEYS)
        total = len(self.names)
        host = _str(self.source, "addresses.host", table.get("host", "127.0.0.1"))
        base_port = None
        hosts: tuple[str, ...] = ()
        if "hosts" in table:
            if "host" in table:
                raise self.error("addresses.hosts", "give either host or hosts, not both")
            pieces = _pieces(self.source, "addresses.hosts", table["hosts"])
            expanded = NodeNames()
            expanded.extend(pieces)
            hosts = tuple(expanded)
            if len(set(hosts)) != len(hosts):
                raise self.error("addresses.hosts", "a host is listed twice")
            if "base_port" not in table:
                raise self.error(
                    "addresses.base_port", "hosts needs base_port = first port per host"
                )
        if "base_port" in table:
            base_port = _int(self.source, "addresses.base_port", table["base_port"], 1, 65535)
            per = -(-total // len(hosts)) if hosts else total
            if base_port + per - 1 > 65535:
                raise self.error(
                    "addresses.base_port",
                    f"{per:,} nodes per host from port {base_port} run past 65535; "
                    "lower base_port or spread nodes over more hosts (addresses.hosts)",
                )
        addressing = Addressing(host=host, base_port=base_port, hosts=hosts)
        overrides = self._node_overrides(addressing)
        if overrides:
            addressing = Addressing(host, base_port, hosts, overrides)
        self._check_collisions(addressing, specs)
        return addressing

    def _node_overrides(self, addressing: Addressing) -> dict[int, Address]:
        nodes = _table(self.source, "node", self.doc.get("node", {}), None)
        overrides: dict[int, Address] = {}
        for nname, body in nodes.items():
            key = f"node.{nname}"
            table = _table(self.source, key, body, _NODE_KEYS)
            rank = self.names.rank(nname)
            if rank is None:
                raise self.error(key, "no such node in any group; list it in a group's nodes first")
            default = addressing.computed(rank, len(self.names))
            host = table.get("host", default.host if default else None)
            port = table.get("port", default.port if default else None)
            if host is None:
                raise self.error(
                    f"{key}.host", "needed: no [addresses] rule gives this node a host"
                )
            if port is None:
                raise self.error(
                    f"{key}.port", "needed: no [addresses] base_port gives this node a port"
                )
            overrides[rank] = Address(
                _str(self.source, f"{key}.host", host),
                _int(self.source, f"{key}.port", port, 1, 65535),
            )
        return overrides

    def _check_collisions(self, addressing: Addressing, specs: dict[str, _Spec]) -> None:
        claimed: dict[Address, str] = {}
        total = len(self.names)
        overrides = addressing.overrides or {}
        extra: list[tuple[str, Address]] = [
            (f"node.{self.names[rank]}", addr) for rank, addr in overrides.items()
        ]
        extra += [
            (f"group.{s.name}.tiebreaker.address", s.tiebreaker.address)
            for s in specs.values()
            if s.tiebreaker is not None and s.tiebreaker.address is not None
        ]
        for key, addr in extra:
            if addr in claimed:
                raise self.error(key, f"address {addr} is also used by {claimed[addr]}")
            owner = addressing.computed_owner(addr, total)
            if owner is not None and owner not in overrides:
                raise self.error(
                    key, f"address {addr} is also the computed address of node {self.names[owner]}"
                )
            claimed[addr] = key

    # -- warnings ------------------------------------------------------------------------------
    def _warnings(self, groups: dict[str, Group]) -> list[str]:
        even = [g.name for g in groups.values() if g.votes % 2 == 0]
        if not even:
            return []
        examples = ", ".join(even[:3]) + (", ..." if len(even) > 3 else "")
        return [
            f"{len(even)} group(s) have an even number of votes and no tie-breaker ({examples}): "
            "an even split leaves both halves without quorum; add tiebreaker = "
            '{kind = "witness", address = "HOST:PORT"} or make the group odd-sized '
            '(sizes = "odd" next to fanout does that for generated groups)'
        ]


def chunk_spans(first: int, end: int, fanout: int, *, odd: bool = False) -> list[tuple[int, int]]:
    """Cut ``[first, end)`` into consecutive chunks of at most ``fanout``.

    Balanced (the default): the fewest chunks, sizes within one of each other. ``odd``: every
    chunk odd-sized and at least 3, sizes within two of each other, with as few chunks as that
    allows. An odd group tolerates as many failures as the even group one larger and no split
    leaves both of its halves without quorum. Odd sizes are impossible for 2 or 4 items (kept
    whole or balanced), and a count that fits in one chunk stays one chunk, so with an even
    number of nodes the top group of the subtree is the one even group.
    """
    count = end - first
    if odd and count > fanout:
        widest = fanout if fanout % 2 else fanout - 1
        chunks = -(-count // widest)
        if (count - chunks) % 2:
            chunks += 1  # odd sizes add up to ``count`` only in a count of the same parity
        if 3 * chunks <= count:
            half, extra = divmod((count - chunks) // 2, chunks)
            return _spans(first, [2 * (half + (1 if i < extra else 0)) + 1 for i in range(chunks)])
    chunks = max(1, -(-count // fanout))
    size, extra = divmod(count, chunks)
    return _spans(first, [size + (1 if i < extra else 0) for i in range(chunks)])


def _spans(first: int, sizes: list[int]) -> list[tuple[int, int]]:
    spans = []
    lo = first
    for size in sizes:
        spans.append((lo, lo + size))
        lo += size
    return spans


def _listed(pieces: list[Piece], node: str) -> bool:
    probe = NodeNames()
    probe.extend(pieces)
    return probe.rank(node) is not None


def _few(specs: Mapping[str, Any]) -> str:
    names = list(specs)
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
