"""What the web page shows, computed from what ``hierclust status`` and ``hierclust events`` read.

Pure: the inputs are the topology, the workers' status snapshots and event-log records (dicts);
the outputs are JSON-ready dicts. The counts are :func:`hierclust.runtime.status.aggregate`'s
(its docstring defines alive, suspect, failed, unreachable, left, led and quorate), so the page
and ``hierclust status`` never disagree; this module only regroups them per group and per tier
and answers searches.

The *spread* of a failure notice (:class:`SpreadLog`) is read from the ``NoticeLearned`` records
of the event logs: which node learned it, through which group, how long after the origin. Every
record's ``t_ns`` is the ``CLOCK_MONOTONIC`` of the host whose workers wrote it; the logs of one
state directory are written on one host, so their stamps share one clock and can be subtracted.
Stamps from two hosts are never compared (docs/architecture.md §4 "Time"): the spread is of the
nodes whose logs are in this state directory.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hierclust.runtime.status import aggregate
from hierclust.topology import Topology
from hierclust.topology.names import HostlistError, expand_nodeset

COUNTED = ("failed", "suspect", "unreachable", "left", "maintenance", "drained")
"""The per-group counts the page shows (alive is the rest)."""
MAX_GROUPS_PER_TIER = 400
"""Groups listed per tier; beyond this a tier lists its groups in trouble first, then a
sample, and says how many it holds (a million nodes make some 70,000 groups)."""
MAX_SEARCH = 4096
"""Nodes one search may name: the answer is a table, not a dump of the cluster."""
SPREADS_KEPT = 8
"""Failure notices whose spread is kept in memory (the last one is replayed)."""
MS = 1_000_000


class SearchError(ValueError):
    """A search the page cannot answer: not a nodeset, a node not in the topology, too many."""


def _ranks(topology: Topology, names: Iterable[str]) -> list[int]:
    found = (topology.names.rank(name) for name in names)
    return sorted(r for r in found if r is not None)


def _count(ranks: list[int], first: int, end: int) -> int:
    """How many of the sorted ``ranks`` fall in ``[first, end)``."""
    return bisect_left(ranks, end) - bisect_left(ranks, first)


def page_state(
    topology: Topology, snapshots: list[dict[str, Any]], errors: list[str] | None = None
) -> dict[str, Any]:
    """The whole picture: totals, every tier (top first) and its groups with their leader,
    term, quorum and counts of failed, suspect, unreachable, left, maintenance and drained
    nodes (counted over the group's subtree)."""
    summary = aggregate(topology, snapshots, errors)
    by_state = {key: _ranks(topology, summary[f"{key}_nodes"]) for key in COUNTED}
    cut_off = set(summary["unreachable_groups"])
    tiers: dict[int, list[dict[str, Any]]] = {}
    for d in summary["group_details"]:
        g = topology.by_index[d["index"]]
        counts = {key: _count(by_state[key], g.first_rank, g.end_rank) for key in COUNTED}
        trouble = (
            not d["quorate"]
            or counts["failed"] + counts["suspect"] + counts["unreachable"] > 0
            or g.name in cut_off
        )
        tiers.setdefault(g.tier, []).append(
            {
                "name": g.name,
                "tier": g.tier,
                "parent": g.parent,
                "leaf": g.is_leaf,
                "nodes": g.end_rank - g.first_rank,
                "leader": d["leader"],
                "leader_state": d["leader_state"],
                "led": d["led"],
                "term": d["term"],
                "quorate": d["quorate"],
                "votes": d["votes"],
                "votes_present": d["votes_present"],
                "quorum": d["quorum"],
                "counts": counts,
                "cut_off": g.name in cut_off,
                "trouble": trouble,
            }
        )
    listed = []
    for tier in sorted(tiers, reverse=True):
        groups = tiers[tier]
        shown = groups
        if len(groups) > MAX_GROUPS_PER_TIER:
            shown = sorted(groups, key=lambda e: not e["trouble"])[:MAX_GROUPS_PER_TIER]
        for entry in shown:
            entry["hostlist"] = topology.hostlist(topology.group(entry["name"]))
        listed.append({"tier": tier, "groups": len(groups), "shown": shown})
    totals = {
        key: summary[key]
        for key in (
            "nodes",
            "alive",
            "suspect",
            "failed",
            "unreachable",
            "left",
            "maintenance",
            "drained",
            "groups",
            "groups_led",
            "groups_quorate",
            "primary",
            "datagrams_dropped",
        )
    }
    return {
        "cluster": topology.name,
        "totals": totals,
        "tiers": listed,
        "failed_nodes": summary["failed_nodes"][:MAX_SEARCH],
        "unreachable_groups": summary["unreachable_groups"],
        "stopped_on_error": summary["stopped_on_error"],
        "errors": summary["errors"],
    }


def search(topology: Topology, snapshots: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Every node of ``query`` (a node, a nodeset in hostlist syntax such as ``dn[01-05,09]``,
    or a group name: its subtree) with its state, admin mode, leaf group and the groups it
    leads; :class:`SearchError` naming the problem for anything else."""
    text = query.strip()
    if not text:
        raise SearchError("empty search: type a node (dn07), a nodeset (dn[01-05]) or a group")
    if text in topology.groups:
        group = topology.group(text)
        ranks = list(group.ranks)[:MAX_SEARCH]
    else:
        ranks = nodeset_ranks(topology, text)
    summary = aggregate(topology, snapshots)
    state_of: dict[str, str] = {}
    for state in ("suspect", "unreachable", "left", "failed"):
        state_of.update(dict.fromkeys(summary[f"{state}_nodes"], state))
    mode_of = dict.fromkeys(summary["maintenance_nodes"], "maintenance")
    mode_of.update(dict.fromkeys(summary["drained_nodes"], "drained"))
    leads: dict[str, list[str]] = {}
    for d in summary["group_details"]:
        if d["led"] and d["leader"]:
            leads.setdefault(d["leader"], []).append(d["name"])
    rows = []
    for rank in ranks:
        name = topology.node_name(rank)
        rows.append(
            {
                "node": name,
                "rank": rank,
                "state": state_of.get(name, "alive"),
                "mode": mode_of.get(name, "active"),
                "group": topology.leaf_of(rank).name,
                "leads": leads.get(name, []),
            }
        )
    return rows


def nodeset_ranks(topology: Topology, text: str) -> list[int]:
    from ClusterShell.NodeSet import NodeSet

    try:
        size = len(NodeSet(text))
    except Exception:  # not a nodeset: expand_nodeset says how to write one
        size = 0
    if size > MAX_SEARCH:
        raise SearchError(f"{text}: {size:,} nodes; a search names at most {MAX_SEARCH:,}")
    try:
        names = expand_nodeset(text)
    except HostlistError as exc:
        raise SearchError(f"{text}: {exc}") from None
    ranks = []
    unknown = []
    for name in names:
        rank = topology.names.rank(name)
        if rank is None:
            unknown.append(name)
        else:
            ranks.append(rank)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise SearchError(
            f"{shown}: no node of that name in {topology.name} "
            f"(nodes: {topology.hostlist(topology.root)})"
        )
    return ranks


@dataclass
class Notice:
    """One failure notice being learned: ``rank -> (t_ns, via group index or None)``."""

    victim: int
    incarnation: int
    planned: bool
    first_ns: int
    learned: dict[int, tuple[int, int | None]] = field(default_factory=dict)


class SpreadLog:
    """The spread of the last failure notices, fed event-log records in the order read.

    Only ``NoticeLearned`` records of kind ``failed`` or ``left`` and the runtime's ``Crashed``
    records are kept: at most :data:`SPREADS_KEPT` notices, one entry per learning node."""

    def __init__(self) -> None:
        self.notices: dict[tuple[int, int], Notice] = {}
        self.crashed: dict[int, int] = {}
        self.changed = False

    def feed(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            kind = record.get("event")
            t_ns = record.get("t_ns")
            if not isinstance(t_ns, int) or "rank" not in record:
                continue
            if kind == "Crashed":
                self.crashed[int(record["rank"])] = t_ns
                continue
            if kind != "NoticeLearned":
                continue
            notice = record.get("notice") or {}
            if notice.get("kind") not in ("failed", "left"):
                continue
            key = (int(notice["node"]), int(notice.get("incarnation", 0)))
            entry = self.notices.get(key)
            if entry is None:
                entry = Notice(key[0], key[1], notice.get("kind") == "left", t_ns)
                self.notices[key] = entry
                if len(self.notices) > SPREADS_KEPT:
                    oldest = min(self.notices, key=lambda k: self.notices[k].first_ns)
                    del self.notices[oldest]
            rank = int(record["rank"])
            if rank not in entry.learned:
                via = record.get("via")
                entry.learned[rank] = (t_ns, None if via is None else int(via))
                entry.first_ns = min(entry.first_ns, t_ns)
                self.changed = True

    def last(self, topology: Topology) -> dict[str, Any] | None:
        """The spread of the newest failure notice, or None when none is logged."""
        if not self.notices:
            return None
        entry = max(self.notices.values(), key=lambda n: n.first_ns)
        return spread(topology, entry, self.crashed.get(entry.victim))


def spread(topology: Topology, notice: Notice, crashed_ns: int | None) -> dict[str, Any]:
    """A notice's spread as the page replays it.

    Times are milliseconds after the *origin*: the victim's ``Crashed`` record when its worker
    logged one shortly before the first node learned the notice (a kill through the control
    socket), else that first learning (the detection: a process killed with SIGKILL logs
    nothing)."""
    detected = [(t, r) for r, (t, via) in notice.learned.items() if via is None]
    first_ns = min((t for t, _ in detected), default=notice.first_ns)
    origin_ns, origin = first_ns, "detection"
    if crashed_ns is not None and 0 <= first_ns - crashed_ns <= 60_000 * MS:
        origin_ns, origin = crashed_ns, "crash"
    names = topology.node_name
    by_index = topology.by_index
    rows = []
    for rank, (t_ns, via) in sorted(notice.learned.items(), key=lambda kv: kv[1][0]):
        group = by_index[via] if via is not None and 0 <= via < len(by_index) else None
        rows.append(
            {
                "node": names(rank) if 0 <= rank < topology.num_nodes else str(rank),
                "ms": round((t_ns - origin_ns) / MS, 1),
                "via": None if group is None else group.name,
                "via_tier": None if group is None else group.tier,
                "group": topology.leaf_of(rank).name if 0 <= rank < topology.num_nodes else None,
            }
        )
    detector = min(detected)[1] if detected else None
    return {
        "victim": names(notice.victim),
        "incarnation": notice.incarnation,
        "kind": "left" if notice.planned else "failed",
        "origin": origin,
        "detected_by": None if detector is None else names(detector),
        "detect_ms": round((first_ns - origin_ns) / MS, 1),
        "learned": rows,
        "notified": len(rows),
        "nodes": topology.num_nodes,
        "clock": "CLOCK_MONOTONIC of the host that runs this state directory's workers",
    }
