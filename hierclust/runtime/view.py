"""One node's own view of the cluster: what ``members --from NODE`` and ``quorum --from NODE`` show.

Where :mod:`hierclust.runtime.status` merges every worker's snapshot (and knows what only the
runtime knows: which nodes run), this module reads the view of one node
(:meth:`~hierclust.runtime.driver.NodeDriver.view`) and nothing else: what that node's notices,
groups and leases say, i.e. what a program on that node would be told.

- a node's *state*: ``unreachable`` while the viewing node holds a subtree containing it cut off
  (the newest :class:`~hierclust.core.types.Subtree` notice of that group it holds says so);
  else ``failed`` (``left`` when planned) while it holds a
  :class:`~hierclust.core.types.Failure` notice of it and no later
  :class:`~hierclust.core.types.Alive`; else ``alive``. Never ``suspect``: a leader's suspicion
  of a silent member lasts one probe and the core does not publish it. The viewing node is
  alive itself;
- *mode*: the newest admin notice the viewing node holds covering the node;
- *incarnation*: the viewing node's own; for another node the newest incarnation its notices
  name (None when none does);
- *leads*: for each group the viewing node sits in and holds quorate, the leader it follows (or
  itself); for each slot of its upper groups, the slot's holder as its rosters say (the leader of
  that child group). A leader it holds failed, left or unreachable leads nothing;
- *quorum*: per group it sits in, whether it holds the group quorate (a leader: its own lease; a
  member: the lease its leader's acks report), the leader it follows and the term;
  *in_primary* is the node's own answer: every group up to the root quorate.
"""

from __future__ import annotations

from typing import Any

from hierclust.core.types import ADMIN_MODES
from hierclust.runtime.status import admin_modes
from hierclust.topology import Topology

STATES = ("alive", "suspect", "failed", "left", "unreachable")
"""Every state a member can be shown in, here and in the merged view."""


def states_as_seen(topology: Topology, view: dict[str, Any]) -> dict[int, str]:
    """Rank -> state, for every rank, as the node of ``view`` holds it."""
    me = int(view["rank"])
    states = dict.fromkeys(range(topology.num_nodes), "alive")
    for rank, _inc, planned in view.get("failed", []):
        states[int(rank)] = "left" if planned else "failed"
    for _group, first, count in view.get("unreachable", []):
        for rank in range(int(first), int(first) + int(count)):
            states[rank] = "unreachable"
    states[me] = "alive"
    return states


def leaders_as_seen(
    topology: Topology, view: dict[str, Any], states: dict[int, str]
) -> dict[int, list[str]]:
    """Rank -> the names of the groups it leads as the node of ``view`` sees it."""
    leaders: dict[int, int] = {}  # group index -> leader
    own = {int(g["group"]) for g in view.get("groups", [])}
    for g in view.get("groups", []):
        gi = int(g["group"])
        if g.get("leader") is not None and g.get("quorate"):
            leaders[gi] = int(g["leader"])
        for slot, holder in enumerate(g.get("holders", [])):
            child = topology.slots(topology.by_index[gi])[slot].index
            if holder >= 0 and child not in own:
                leaders.setdefault(child, int(holder))
    leads: dict[int, list[str]] = {}
    for gi in sorted(leaders):
        rank = leaders[gi]
        if states.get(rank) == "alive":
            leads.setdefault(rank, []).append(topology.by_index[gi].name)
    return leads


def members_as_seen(
    topology: Topology, view: dict[str, Any], ranks: range | None = None
) -> list[dict[str, Any]]:
    """One row per rank of ``ranks`` (default: all), as the node of ``view`` sees it:
    ``name, rank, group, state, mode, incarnation, leads``."""
    me = int(view["rank"])
    states = states_as_seen(topology, view)
    modes = admin_modes([{"admin": view.get("admin", [])}])
    incarnations = {int(r): int(inc) for r, inc in view.get("incarnations", [])}
    incarnations[me] = int(view["incarnation"])
    leads = leaders_as_seen(topology, view, states)
    rows = []
    for rank in ranks if ranks is not None else range(topology.num_nodes):
        rows.append(
            {
                "name": topology.node_name(rank),
                "rank": rank,
                "group": topology.leaf_of(rank).name,
                "state": states[rank],
                "mode": ADMIN_MODES[modes.get(rank, 0)],
                "incarnation": incarnations.get(rank),
                "leads": leads.get(rank, []),
            }
        )
    return rows


def quorum_as_seen(topology: Topology, view: dict[str, Any]) -> dict[str, Any]:
    """The quorum of every group the node of ``view`` sits in (leaf first), as it holds it, and
    its own answer to "am I in the primary component?"."""
    names = topology.node_name
    groups: dict[str, dict[str, Any]] = {}
    for g in view.get("groups", []):
        group = topology.by_index[int(g["group"])]
        leader = g.get("leader")
        groups[group.name] = {
            "tier": group.tier,
            "quorate": bool(g.get("quorate")),
            "leader": None if leader is None else names(int(leader)),
            "leading": bool(g.get("leading")),
            "term": int(g.get("term", 0)),
            "votes": group.votes,
            "quorum": group.quorum,
        }
    return {
        "from": names(int(view["rank"])),
        "in_primary": bool(view.get("in_primary")),
        "groups": len(groups),
        "groups_quorate": sum(1 for g in groups.values() if g["quorate"]),
        "group_quorum": groups,
    }
