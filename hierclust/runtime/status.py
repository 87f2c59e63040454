"""``status``: one picture of a deployment, merged from every worker's snapshot.

Definitions (all from the nodes' own state, nothing guessed by the runtime). The picture is the
primary component's: when some running node is in the primary component (every group on its path
to the root quorate), only those nodes' notices count (the *viewers*); when none is, every running
node's do.

- *unreachable*: nodes in a subtree that some viewer holds cut off: the newest
  :class:`~hierclust.core.types.Subtree` notice of that group it holds says ``reachable=False``
  (the leader of the parent group emptied the group's slot after ``slot_grace_ms`` with no leader
  of the group coming to fill it). Nothing else the viewers hold about such a node is current, so
  this comes before *failed* and *left* (a cut-off slot holder is also declared failed, which it
  refutes when it is back); only a node *stopped on an error* is failed all the same;
- *alive*: nodes running and answering through their worker, not unreachable, not declared failed
  or left;
- *failed*: nodes some viewer holds a :class:`~hierclust.core.types.Failure` notice for (and
  no later :class:`~hierclust.core.types.Alive`), unless that failure was planned; and nodes
  *stopped on an error*: their worker reports that an exception in their step or its effects
  stopped them (fail-stop; snapshot ``stop_event`` ``Failed``), at once and whatever the notices
  say, with the reason (``stopped_on_error``: node name -> reason);
- *left*: the same, for a planned departure (the node was in maintenance or drained when its
  leader declared it: not a fault);
- *suspect*: the rest: not answering (killed, worker gone) and not declared failed yet;
- *storage faults*: running nodes that cannot write their state file (a read-only or full
  state directory: snapshot ``storage``); they count as alive (they are members, and their peers
  do not declare them) but vote for no one and stand for no election until a write succeeds
  (``storage_faults``: node name -> reason);
- *maintenance* / *drained*: nodes in that admin mode (newest :class:`~hierclust.core.types.Admin`
  notice covering them, among all the notices the live nodes hold), whatever their state;
- a group is *led* when exactly one running node leads it with a valid lease and that leader is
  alive (a failed or unreachable leader leads nothing the primary component can use), and
  *quorate* when it is led and that leader's lease (a majority of fresh acks) holds;
- a group's *votes present*: its alive members (leaf group) or its led child groups (slots), plus
  its tie-breaker when the group is quorate without enough of those (the leader then holds the
  tie-breaker's vote; otherwise whether the tie-breaker answers is not known here).

``aggregate(..., group=NAME)`` counts the subtree of NAME only: its nodes and its groups.
"""

from __future__ import annotations

from typing import Any

from hierclust.core.types import ADMIN_MODES, MAINTENANCE
from hierclust.runtime.events import FAILED
from hierclust.topology import Group, Topology


def admin_modes(snapshots: list[dict[str, Any]]) -> dict[int, int]:
    """Rank -> admin mode, for every rank an admin notice held by a live node covers (the newest
    notice by ``(seq, issuer)`` wins)."""
    notices = {tuple(a) for snap in snapshots for a in snap.get("admin", [])}
    best: dict[int, tuple[int, int, int]] = {}
    for first, count, mode, seq, issuer in notices:
        for rank in range(first, first + count):
            if rank not in best or (seq, issuer) > best[rank][:2]:
                best[rank] = (seq, issuer, mode)
    return {rank: mode for rank, (_, _, mode) in best.items()}


def unreachable_ranks(views: list[dict[str, Any]]) -> tuple[set[int], set[int]]:
    """The ranks and the group indexes that some node of ``views`` (node snapshots) holds cut
    off (its ``unreachable`` entries, ``[group, first, count]``)."""
    ranks: set[int] = set()
    groups: set[int] = set()
    for view in views:
        for group, first, count in view.get("unreachable", []):
            groups.add(int(group))
            ranks.update(range(int(first), int(first) + int(count)))
    return ranks, groups


class States:
    """Every rank's state (alive, unreachable, failed, left, suspect) from the merged
    snapshots."""

    def __init__(self, topology: Topology, nodes: dict[int, dict[str, Any]]) -> None:
        self.nodes = nodes
        self.running = {r for r, n in nodes.items() if n.get("running")}
        self.stopped_on_error: dict[int, str] = {
            r: str(n.get("stop_reason") or "")
            for r, n in nodes.items()
            if not n.get("running") and n.get("stop_event") == FAILED
        }
        in_primary = {r for r in self.running if nodes[r].get("in_primary")}
        self.primary = bool(in_primary)
        viewers = in_primary if self.primary else self.running
        cut, self.unreachable_groups = unreachable_ranks([nodes[r] for r in sorted(viewers)])
        failed_inc: dict[int, int] = {}
        planned: set[tuple[int, int]] = set()
        for r in viewers:
            for entry in nodes[r].get("failed", []):
                node, inc = int(entry[0]), int(entry[1])
                failed_inc[node] = max(failed_inc.get(node, 0), inc)
                if len(entry) > 2 and entry[2]:
                    planned.add((node, inc))
        down = {
            r
            for r, inc in failed_inc.items()
            if not (r in self.running and nodes[r].get("incarnation", 0) > inc)
        }
        self.unreachable = cut - set(self.stopped_on_error)
        down -= self.unreachable
        down |= set(self.stopped_on_error)
        self.left = {r for r in down if (r, failed_inc.get(r)) in planned} - set(
            self.stopped_on_error
        )
        self.failed = down - self.left
        self.alive = self.running - down - self.unreachable
        self.suspect = set(range(topology.num_nodes)) - self.running - down - self.unreachable

    def of(self, rank: int) -> str:
        for name, members in (
            ("alive", self.alive),
            ("unreachable", self.unreachable),
            ("failed", self.failed),
            ("left", self.left),
        ):
            if rank in members:
                return name
        return "suspect"


def aggregate(
    topology: Topology,
    snapshots: list[dict[str, Any]],
    errors: list[str] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """The status summary of the whole cluster, or of ``group``'s subtree (``KeyError`` if
    there is no such group)."""
    nodes: dict[int, dict[str, Any]] = {}
    lag_ms = 0
    for snap in snapshots:
        lag_ms = max(lag_ms, int(snap.get("lag_ms", 0)))
        for n in snap.get("nodes", []):
            nodes[int(n["rank"])] = n
    states = States(topology, nodes)
    top = topology.root if group is None else topology.group(group)
    scope = set(top.ranks)
    groups = list(topology.subtree(top)) if group is not None else list(topology.by_index)
    modes = admin_modes(snapshots)
    in_mode = {
        name: sorted(r for r, m in modes.items() if m == value and r in scope)
        for value, name in enumerate(ADMIN_MODES)
        if value >= MAINTENANCE
    }
    dropped: dict[str, int] = {}
    sent = received = 0
    for r, n in nodes.items():
        if r not in scope:
            continue
        d = n.get("datagrams", {})
        sent += d.get("sent", 0)
        received += d.get("received", 0)
        for key, value in d.items():
            if key.startswith("dropped_") and value:
                reason = key.removeprefix("dropped_")
                dropped[reason] = dropped.get(reason, 0) + value
    details = group_details(topology, states, modes)
    shown = [details[g.index] for g in sorted(groups, key=lambda g: g.index)]
    names = topology.node_name

    def within(ranks: set[int]) -> list[int]:
        return sorted(ranks & scope)

    return {
        "cluster": topology.name,
        "group": group,
        "nodes": len(scope),
        "alive": len(within(states.alive)),
        "unreachable": len(within(states.unreachable)),
        "suspect": len(within(states.suspect)),
        "failed": len(within(states.failed)),
        "left": len(within(states.left)),
        "maintenance": len(in_mode["maintenance"]),
        "drained": len(in_mode["drained"]),
        "primary": states.primary,
        "groups": len(shown),
        "groups_led": sum(1 for d in shown if d["led"]),
        "groups_quorate": sum(1 for d in shown if d["quorate"]),
        "datagrams_dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "datagrams_sent": sent,
        "datagrams_received": received,
        "loop_lag_ms": lag_ms,
        "failed_nodes": [names(r) for r in within(states.failed)],
        "left_nodes": [names(r) for r in within(states.left)],
        "unreachable_nodes": [names(r) for r in within(states.unreachable)],
        "unreachable_groups": [
            topology.by_index[g].name
            for g in sorted(states.unreachable_groups)
            if overlaps(topology.by_index[g], top)
        ],
        "maintenance_nodes": [names(r) for r in in_mode["maintenance"]],
        "drained_nodes": [names(r) for r in in_mode["drained"]],
        "suspect_nodes": [names(r) for r in within(states.suspect)],
        "stopped_on_error": {
            names(r): states.stopped_on_error[r] for r in within(set(states.stopped_on_error))
        },
        "storage_faults": {
            names(r): str(nodes[r]["storage"].get("reason", "cannot persist"))
            for r in sorted(scope & states.running)
            if nodes[r].get("storage")
        },
        "group_details": shown,
        "errors": errors or [],
    }


def overlaps(a: Group, b: Group) -> bool:
    """The subtrees of ``a`` and ``b`` share a node (one holds the other)."""
    return a.first_rank < b.end_rank and b.first_rank < a.end_rank


def group_details(
    topology: Topology, states: States, modes: dict[int, int]
) -> dict[int, dict[str, Any]]:
    """Group index -> its status entry; children's leaders first, as they are a group's votes."""
    leading = {g.index: group_leader(g, states) for g in topology.by_index}
    led = {gi: entry["led"] for gi, entry in leading.items()}
    details: dict[int, dict[str, Any]] = {}
    for g in topology.by_index:
        entry = leading[g.index]
        if g.is_leaf:
            present = sum(1 for r in g.ranks if r in states.alive)
        else:
            present = sum(1 for child in topology.slots(g) if led[child.index])
        if g.tiebreaker is not None and entry["quorate"] and present < g.quorum:
            present += 1
        members = g.ranks if g.is_leaf else range(0)
        names = topology.node_name
        details[g.index] = {
            "name": g.name,
            "index": g.index,
            "tier": g.tier,
            "parent": g.parent,
            "leader": None if entry["leader"] is None else names(entry["leader"]),
            "leader_state": entry["leader_state"],
            "led": entry["led"],
            "term": entry["term"],
            "votes": g.votes,
            "votes_present": present,
            "quorum": g.quorum,
            "quorate": entry["quorate"],
            "failed_members": [names(r) for r in members if r in states.failed],
            "left_members": [names(r) for r in members if r in states.left],
            "unreachable_members": [names(r) for r in members if r in states.unreachable],
            "admin_members": {names(r): ADMIN_MODES[modes[r]] for r in members if modes.get(r, 0)},
            "members_alive": sum(1 for r in members if r in states.alive) if g.is_leaf else None,
        }
    return details


def group_leader(group: Group, states: States) -> dict[str, Any]:
    """Who leads ``group`` (the one lease holder, else the leader most members follow), in which
    state, and whether that counts as led and quorate."""
    gi = group.index
    holders: list[int] = []
    term = 0
    views: dict[int, int] = {}
    quorate = False
    for r in states.running:
        for g in states.nodes[r].get("groups", []):
            if g["group"] != gi:
                continue
            term = max(term, int(g["term"]))
            if g["leading"] and g["lease"]:
                holders.append(r)
                quorate = bool(g["quorate"])
            if g["leader"] is not None:
                views[g["leader"]] = views.get(g["leader"], 0) + 1
    leader: int | None = holders[0] if len(holders) == 1 else None
    if leader is None and views:
        leader = max(views, key=lambda k: views[k])
    led = len(holders) == 1 and leader in states.alive
    return {
        "leader": leader,
        "leader_state": None if leader is None else states.of(leader),
        "led": led,
        "term": term,
        "quorate": led and quorate,
    }


def subtree_names(topology: Topology, group: str) -> set[str]:
    return {g.name for g in topology.subtree(topology.group(group))}
