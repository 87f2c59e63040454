"""``status`` aggregation from worker snapshots: the primary component's view, votes present,
subtree counts. Snapshots are written by hand (what workers answer), no process runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hierclust.runtime.status import aggregate
from hierclust.topology import Topology, load

REPO = Path(__file__).resolve().parents[2]


def demo() -> Topology:
    return load(REPO / "topologies" / "demo.toml")  # racks a, b, c of 21 nodes; 7 per leaf


def leader_of(topology: Topology, group: int) -> int:
    """Leaf groups are led by their first member, slot groups by their first child's leader."""
    g = topology.by_index[group]
    return g.first_rank if g.is_leaf else leader_of(topology, topology.slots(g)[0].index)


def snapshots(
    topology: Topology,
    cut: set[int] = frozenset(),  # type: ignore[assignment]
    failed: dict[int, bool] | None = None,
    no_primary: bool = False,
    unreachable: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """One worker's snapshot: every node running; groups led as in :func:`leader_of`; nodes in
    ``cut`` outside the primary component; every primary node holding the ``failed`` notices
    (rank -> planned) and the subtrees of the groups named in ``unreachable`` cut off."""
    nodes: dict[int, dict[str, Any]] = {
        r: {
            "rank": r,
            "name": topology.node_name(r),
            "running": True,
            "incarnation": 1,
            "in_primary": not no_primary and r not in cut,
            "groups": [],
            "failed": [],
            "unreachable": [],
        }
        for r in range(topology.num_nodes)
    }
    for g in topology.by_index:
        leader = leader_of(topology, g.index)
        members = (
            g.ranks if g.is_leaf else [leader_of(topology, c.index) for c in topology.slots(g)]
        )
        for r in members:
            nodes[r]["groups"].append(
                {"group": g.index, "leader": leader, "term": 1, "leading": r == leader,
                 "lease": r == leader, "quorate": True}
            )  # fmt: skip
    held = [topology.group(name) for name in unreachable]
    for node in nodes.values():
        if node["in_primary"]:
            node["failed"] = [[f, 1, planned] for f, planned in (failed or {}).items()]
            node["unreachable"] = [[g.index, g.first_rank, g.end_rank - g.first_rank] for g in held]
    return [{"ranks": list(nodes), "nodes": list(nodes.values()), "admin": []}]


def by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in summary["group_details"]}


def test_all_well() -> None:
    topology = demo()
    summary = aggregate(topology, snapshots(topology))
    assert (summary["alive"], summary["unreachable"], summary["failed"]) == (63, 0, 0)
    assert summary["groups_led"] == summary["groups_quorate"] == 13 and summary["primary"]
    groups = by_name(summary)
    assert groups["demo"]["votes_present"] == groups["demo"]["votes"] == 3
    assert groups["demo"]["quorum"] == 2
    assert (groups["rack-a.t0.0"]["votes_present"], groups["rack-a.t0.0"]["quorum"]) == (7, 4)


def rack_c_cut_off(topology: Topology) -> list[dict[str, Any]]:
    """rack-c partitioned away, as the nodes report it once the root's leader emptied rack-c's
    slot: the primary component holds rack-c's subtree cut off and its slot holder dn43 failed
    (probed after the grace); rack-c's 21 nodes run on, led among themselves, outside."""
    rack_c = set(topology.group("rack-c").ranks)
    return snapshots(topology, cut=rack_c, failed={42: False}, unreachable=("rack-c",))


def test_a_cut_off_rack_is_unreachable_and_its_leaders_lead_nothing() -> None:
    topology = demo()
    summary = aggregate(topology, rack_c_cut_off(topology))
    assert (summary["alive"], summary["unreachable"], summary["failed"]) == (42, 21, 0)
    assert summary["unreachable_nodes"] == [f"dn{i}" for i in range(43, 64)]
    assert summary["unreachable_groups"] == ["rack-c"]
    assert summary["failed_nodes"] == [], "nothing the primary holds about rack-c is current"
    assert summary["groups_led"] == summary["groups_quorate"] == 9
    groups = by_name(summary)
    assert groups["demo"]["led"] and groups["demo"]["votes_present"] == 2
    for name, leader in (("rack-c", "dn43"), ("rack-c.t0.0", "dn43"), ("rack-c.t0.1", "dn50")):
        assert groups[name]["leader"] == leader
        assert groups[name]["leader_state"] == "unreachable"
        assert not groups[name]["led"] and not groups[name]["quorate"]
    assert groups["rack-c.t0.0"]["members_alive"] == 0
    assert groups["rack-c.t0.1"]["unreachable_members"] == [f"dn{i}" for i in range(50, 57)]


def test_a_rack_cut_away_is_alive_until_the_primary_holds_it_cut_off() -> None:
    """Between the partition and the root leader's notice (slot grace), the primary component
    has concluded nothing about rack-c: its nodes run, its groups are led by their leases."""
    topology = demo()
    rack_c = set(topology.group("rack-c").ranks)
    summary = aggregate(topology, snapshots(topology, cut=rack_c))
    assert (summary["alive"], summary["unreachable"], summary["groups_led"]) == (63, 0, 13)


def test_only_the_primary_components_subtree_notices_count() -> None:
    """rack-c, cut off, holds rack-a cut off (as a leader there might): while a primary
    component exists, what it holds is the picture."""
    topology = demo()
    snaps = rack_c_cut_off(topology)
    rack_a = topology.group("rack-a")
    for node in snaps[0]["nodes"]:
        if not node["in_primary"]:
            node["unreachable"] = [[rack_a.index, rack_a.first_rank, 21]]
    summary = aggregate(topology, snaps)
    assert summary["unreachable_groups"] == ["rack-c"] and summary["unreachable"] == 21


def test_a_node_stopped_on_an_error_in_a_cut_off_subtree_is_failed() -> None:
    topology = demo()
    snaps = rack_c_cut_off(topology)
    stop(snaps, 49, "Failed", "dn50: step(Received Ack from dn51) raised KeyError: 3")
    summary = aggregate(topology, snaps)
    assert summary["failed_nodes"] == ["dn50"] and summary["unreachable"] == 20
    assert by_name(summary)["rack-c.t0.1"]["leader_state"] == "failed"


def test_group_counts_its_subtree_only() -> None:
    topology = demo()
    snaps = rack_c_cut_off(topology)
    c = aggregate(topology, snaps, group="rack-c")
    assert (c["group"], c["nodes"], c["groups"]) == ("rack-c", 21, 4)
    assert (c["alive"], c["unreachable"], c["failed"], c["groups_led"]) == (0, 21, 0, 0)
    assert c["unreachable_groups"] == ["rack-c"]
    assert [d["name"] for d in c["group_details"]] == [
        "rack-c", "rack-c.t0.0", "rack-c.t0.1", "rack-c.t0.2",
    ]  # fmt: skip
    assert aggregate(topology, snaps, group="rack-c.t0.1")["unreachable_groups"] == ["rack-c"]
    a = aggregate(topology, snaps, group="rack-a.t0.1")
    assert (a["nodes"], a["alive"], a["failed"], a["groups"], a["groups_led"]) == (7, 7, 0, 1, 1)
    assert a["failed_nodes"] == [] and a["unreachable_nodes"] == []
    assert a["unreachable_groups"] == []


def test_without_a_primary_component_every_running_nodes_notices_count() -> None:
    """While the root has no quorum (at boot, or after losing its leader) no node is in the
    primary component: running nodes count as alive and groups as led by their lease."""
    topology = demo()
    snaps = snapshots(topology, no_primary=True)
    summary = aggregate(topology, snaps)
    assert not summary["primary"]
    assert (summary["alive"], summary["unreachable"], summary["groups_led"]) == (63, 0, 13)
    leaf = topology.group("rack-b.t0.2")
    snaps[0]["nodes"][0]["unreachable"] = [[leaf.index, leaf.first_rank, 7]]
    summary = aggregate(topology, snaps)
    assert summary["unreachable_nodes"] == [f"dn{i}" for i in range(36, 43)]


def test_a_planned_departure_is_left_and_its_slot_is_not_counted() -> None:
    topology = demo()
    snaps = snapshots(topology, failed={7: True})  # dn08, leader of rack-a.t0.1, drained
    for node in snaps[0]["nodes"]:
        if node["rank"] == 7:
            node["running"] = False
    summary = aggregate(topology, snaps)
    groups = by_name(summary)
    assert summary["left_nodes"] == ["dn08"] and summary["failed"] == 0
    assert groups["rack-a.t0.1"]["leader_state"] == "left" and not groups["rack-a.t0.1"]["led"]
    assert groups["rack-a.t0.1"]["votes_present"] == 6
    assert groups["rack-a"]["votes_present"] == 2, "a slot counts when its group is led"


def stop(snaps: list[dict[str, Any]], rank: int, event: str, reason: str) -> None:
    """``rank`` as its worker reports it once stopped (no groups, no notices)."""
    for node in snaps[0]["nodes"]:
        if node["rank"] == rank:
            node.update(running=False, stop_event=event, stop_reason=reason, groups=[], failed=[])
            del node["incarnation"], node["in_primary"]


ERROR = "dn08: step(Received Ack from dn01) raised KeyError: 3"


def test_a_node_stopped_on_an_error_is_failed_at_once_with_its_reason() -> None:
    """dn08 (leader of rack-a.t0.1) stopped on an error and no notice about it is out yet: it is
    failed, not suspect, and its group has no leader; a killed node is still only suspect."""
    topology = demo()
    snaps = snapshots(topology)
    stop(snaps, 7, "Failed", ERROR)
    stop(snaps, 20, "Crashed", "killed")  # dn21
    summary = aggregate(topology, snaps)
    assert summary["failed_nodes"] == ["dn08"] and summary["suspect_nodes"] == ["dn21"]
    assert summary["stopped_on_error"] == {"dn08": ERROR}
    assert (summary["alive"], summary["failed"], summary["suspect"]) == (61, 1, 1)
    groups = by_name(summary)
    assert groups["rack-a.t0.1"]["leader_state"] == "failed" and not groups["rack-a.t0.1"]["led"]
    assert groups["rack-a.t0.1"]["failed_members"] == ["dn08"]
    assert aggregate(topology, snaps, group="rack-b")["stopped_on_error"] == {}


def test_an_error_is_a_fault_even_in_maintenance() -> None:
    """The notice says planned (dn08 was drained), but it stopped on an error: failed, not left."""
    topology = demo()
    snaps = snapshots(topology, failed={7: True})
    stop(snaps, 7, "Failed", ERROR)
    summary = aggregate(topology, snaps)
    assert summary["failed_nodes"] == ["dn08"] and summary["left_nodes"] == []
