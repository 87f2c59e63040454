"""``status``: one picture of a deployment, merged from every worker's snapshot.

Definitions (all from the nodes' own state, nothing guessed by the runtime):

- *alive*: nodes running and answering through their worker, not declared failed;
- *failed*: nodes some live node holds a :class:`~hierclust.core.types.Failure` notice for (and no
  later :class:`~hierclust.core.types.Alive`), unless that failure was planned;
- *left*: the same, for a planned departure (the node was in maintenance or drained when its
  leader declared it: not a fault);
- *suspect*: the rest: not answering (killed, worker gone) and not declared failed yet;
- *maintenance* / *drained*: nodes in that admin mode (newest :class:`~hierclust.core.types.Admin`
  notice covering them, among all the notices the live nodes hold), whatever their state;
- a group is *led* when exactly one live node leads it with a valid lease, and *quorate* when
  that leader's lease (a majority of fresh acks) holds.
"""

from __future__ import annotations

from typing import Any

from hierclust.core.types import ADMIN_MODES, MAINTENANCE
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


def aggregate(
    topology: Topology, snapshots: list[dict[str, Any]], errors: list[str] | None = None
) -> dict[str, Any]:
    nodes: dict[int, dict[str, Any]] = {}
    lag_ms = 0
    for snap in snapshots:
        lag_ms = max(lag_ms, int(snap.get("lag_ms", 0)))
        for n in snap.get("nodes", []):
            nodes[int(n["rank"])] = n
    running = {r for r, n in nodes.items() if n.get("running")}
    failed_inc: dict[int, int] = {}
    planned: set[tuple[int, int]] = set()
    for r in running:
        for entry in nodes[r].get("failed", []):
            node, inc = int(entry[0]), int(entry[1])
            failed_inc[node] = max(failed_inc.get(node, 0), inc)
            if len(entry) > 2 and entry[2]:
                planned.add((node, inc))
    down = {
        r
        for r, inc in failed_inc.items()
        if not (r in running and nodes[r].get("incarnation", 0) > inc)
    }
    left = {r for r in down if (r, failed_inc[r]) in planned}
    failed = down - left
    suspect = set(range(topology.num_nodes)) - running - down
    alive = running - down
    modes = admin_modes(snapshots)
    in_mode = {
        name: sorted(r for r, m in modes.items() if m == value)
        for value, name in enumerate(ADMIN_MODES)
        if value >= MAINTENANCE
    }
    dropped: dict[str, int] = {}
    sent = received = 0
    for n in nodes.values():
        d = n.get("datagrams", {})
        sent += d.get("sent", 0)
        received += d.get("received", 0)
        for key, value in d.items():
            if key.startswith("dropped_") and value:
                reason = key.removeprefix("dropped_")
                dropped[reason] = dropped.get(reason, 0) + value
    details = [
        group_detail(topology, g, nodes, running, failed, left, modes) for g in topology.by_index
    ]
    names = topology.node_name
    return {
        "cluster": topology.name,
        "nodes": topology.num_nodes,
        "alive": len(alive),
        "suspect": len(suspect),
        "failed": len(failed),
        "left": len(left),
        "maintenance": len(in_mode["maintenance"]),
        "drained": len(in_mode["drained"]),
        "groups": len(topology.by_index),
        "groups_led": sum(1 for d in details if d["led"]),
        "groups_quorate": sum(1 for d in details if d["quorate"]),
        "datagrams_dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "datagrams_sent": sent,
        "datagrams_received": received,
        "loop_lag_ms": lag_ms,
        "failed_nodes": [names(r) for r in sorted(failed)],
        "left_nodes": [names(r) for r in sorted(left)],
        "maintenance_nodes": [names(r) for r in in_mode["maintenance"]],
        "drained_nodes": [names(r) for r in in_mode["drained"]],
        "suspect_nodes": [names(r) for r in sorted(suspect)],
        "group_details": details,
        "errors": errors or [],
    }


def group_detail(
    topology: Topology,
    group: Group,
    nodes: dict[int, dict[str, Any]],
    running: set[int],
    failed: set[int],
    left: set[int] | None = None,
    modes: dict[int, int] | None = None,
) -> dict[str, Any]:
    gi = group.index
    leaders: list[int] = []
    term = 0
    views: dict[int, int] = {}
    quorate = False
    for r in running:
        for g in nodes[r].get("groups", []):
            if g["group"] != gi:
                continue
            term = max(term, int(g["term"]))
            if g["leading"] and g["lease"]:
                leaders.append(r)
                quorate = bool(g["quorate"])
            if g["leader"] is not None:
                views[g["leader"]] = views.get(g["leader"], 0) + 1
    leader: int | None = leaders[0] if len(leaders) == 1 else None
    if leader is None and views:
        leader = max(views, key=lambda k: views[k])
    members = group.ranks if group.is_leaf else range(0)
    left = left or set()
    modes = modes or {}
    down = failed | left
    return {
        "name": group.name,
        "index": gi,
        "tier": group.tier,
        "parent": group.parent,
        "leader": None if leader is None else topology.node_name(leader),
        "led": len(leaders) == 1,
        "term": term,
        "votes": group.votes,
        "quorum": group.quorum,
        "quorate": len(leaders) == 1 and quorate,
        "failed_members": [topology.node_name(r) for r in members if r in failed],
        "left_members": [topology.node_name(r) for r in members if r in left],
        "admin_members": {
            topology.node_name(r): ADMIN_MODES[modes[r]] for r in members if modes.get(r, 0)
        },
        "members_alive": sum(1 for r in members if r in running and r not in down)
        if group.is_leaf
        else None,
    }


def subtree_names(topology: Topology, group: str) -> set[str]:
    return {g.name for g in topology.subtree(topology.group(group))}
