"""One node's own view (``members --from``, ``quorum --from``) from hand-written node views (what
``NodeDriver.view`` answers); no process runs. The seed topology: scotland sc[01-05] and england
en[01-21] under uk, us ue/uw[01-07], apac ap[1-3]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hierclust.core.types import DRAINED, MAINTENANCE
from hierclust.runtime.view import STATES, members_as_seen, quorum_as_seen, states_as_seen
from hierclust.topology import Topology, load

REPO = Path(__file__).resolve().parents[2]


def seed() -> Topology:
    return load(REPO / "topologies" / "seed.toml")


def entry(topology: Topology, group: str, leader: int | None, **fields: Any) -> dict[str, Any]:
    g = topology.group(group)
    base = {"group": g.index, "leader": leader, "term": 4, "leading": False, "lease": False}
    base.update(quorate=True, view_id=1)
    if not g.is_leaf:
        base["holders"] = [topology.slots(g)[s].first_rank for s in range(len(g.children))]
    return {**base, **fields}


def en01_view(topology: Topology, **fields: Any) -> dict[str, Any]:
    """en01 (rank 5) leads england.t0.0, england and uk, and follows ue01 in company; it holds
    Scotland cut off (and sc01, uk's scotland slot holder, failed), ue03 failed, ue04 left
    (planned), ap2 back as incarnation 3, ue05 in maintenance and ue06 drained."""
    scotland = topology.group("scotland")
    view = {
        "rank": 5,
        "name": "en01",
        "running": True,
        "incarnation": 2,
        "in_primary": True,
        "groups": [
            entry(topology, "england.t0.0", 5, leading=True, lease=True),
            entry(topology, "england", 5, leading=True, lease=True),
            entry(topology, "uk", 5, leading=True, lease=True, holders=[0, 5]),
            entry(topology, "company", 26, holders=[5, 26, 40]),
        ],
        "failed": [[28, 1, False], [29, 1, True], [0, 1, False]],
        "unreachable": [[scotland.index, 0, 5]],
        "admin": [[30, 2, MAINTENANCE, 10, 5], [31, 1, DRAINED, 12, 7]],
        "incarnations": [[28, 1], [29, 1], [0, 1], [41, 3]],
    }
    return {**view, **fields}


def rows_by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def test_states_are_the_viewing_nodes_own_notices_and_cut_off_subtrees() -> None:
    topology = seed()
    states = states_as_seen(topology, en01_view(topology))
    assert {topology.node_name(r) for r, s in states.items() if s == "unreachable"} == {
        f"sc0{i}" for i in range(1, 6)
    }
    assert states[0] == "unreachable", "a cut-off slot holder declared failed is unreachable"
    assert (states[28], states[29]) == ("failed", "left")
    assert set(states.values()) <= set(STATES)
    assert sum(1 for s in states.values() if s == "alive") == 43 - 5 - 2


def test_the_viewing_node_is_alive_even_inside_a_subtree_it_holds_cut_off() -> None:
    """Just after a heal a node of the cut-off site can learn its own site's stale notice."""
    topology = seed()
    view = en01_view(topology, rank=0, name="sc01", incarnation=2)
    assert states_as_seen(topology, view)[0] == "alive"


def test_members_as_seen_rows() -> None:
    topology = seed()
    rows = rows_by_name(members_as_seen(topology, en01_view(topology)))
    assert list(rows["en01"]) == ["name", "rank", "group", "state", "mode", "incarnation", "leads"]
    assert rows["en01"]["leads"] == ["uk", "england", "england.t0.0"]
    assert rows["en01"]["incarnation"] == 2, "its own"
    assert rows["ap2"]["incarnation"] == 3 and rows["en02"]["incarnation"] is None
    assert (rows["ue05"]["mode"], rows["ue06"]["mode"], rows["ue07"]["mode"]) == (
        "maintenance",
        "drained",
        "active",
    )
    assert rows["sc03"]["group"] == "scotland" and rows["en09"]["group"] == "england.t0.1"
    # company's roster: ue01 holds us's slot, ap1 apac's; en01 holds company quorate under ue01;
    # sc01 holds scotland's slot in uk's roster but is unreachable: it leads nothing
    assert rows["ue01"]["leads"] == ["company", "us"]
    assert rows["ap1"]["leads"] == ["apac"]
    assert rows["sc01"]["leads"] == [] and rows["sc01"]["state"] == "unreachable"


def test_a_group_the_viewing_node_does_not_hold_quorate_shows_no_leader() -> None:
    topology = seed()
    view = en01_view(topology)
    view["groups"][3] = entry(topology, "company", 26, quorate=False, holders=[5, 26, 40])
    rows = rows_by_name(members_as_seen(topology, view))
    assert rows["ue01"]["leads"] == ["us"], "company not quorate as en01 holds it"


def test_members_as_seen_of_a_subtree() -> None:
    topology = seed()
    rows = members_as_seen(topology, en01_view(topology), topology.group("apac").ranks)
    assert [row["name"] for row in rows] == ["ap1", "ap2", "ap3"]


def test_quorum_as_seen_is_the_nodes_own_answer() -> None:
    topology = seed()
    sc02 = {
        "rank": 1,
        "incarnation": 1,
        "in_primary": False,
        "groups": [entry(topology, "scotland", 0)],
    }
    answer = quorum_as_seen(topology, sc02)
    assert answer["from"] == "sc02" and answer["in_primary"] is False
    assert answer["group_quorum"] == {
        "scotland": {
            "tier": 0,
            "quorate": True,
            "leader": "sc01",
            "leading": False,
            "term": 4,
            "votes": 5,
            "quorum": 3,
        }
    }
    sc01 = quorum_as_seen(
        topology,
        {
            "rank": 0,
            "incarnation": 1,
            "in_primary": False,
            "groups": [
                entry(topology, "scotland", 0, leading=True, lease=True),
                entry(topology, "uk", None, quorate=False, holders=[0, -1]),
            ],
        },
    )
    assert (sc01["groups"], sc01["groups_quorate"]) == (2, 1)
    assert sc01["group_quorum"]["uk"]["leader"] is None
    assert not sc01["group_quorum"]["uk"]["quorate"]
