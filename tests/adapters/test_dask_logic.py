"""The Dask adapter's pure decisions: which worker is which node, and which workers an event
removes (hierclust/adapters/dask.py)."""

from __future__ import annotations

from typing import Any

from hierclust.adapters.dask import (
    STIMULUS_PREFIX,
    NodeMatcher,
    WorkerRef,
    lost_nodes,
    plan_removals,
    plan_resync,
    stimulus_id,
)
from hierclust.api.types import (
    LeaderChanged,
    Member,
    NodeAlive,
    NodeFailed,
    NodeLeft,
    PrimaryChanged,
    SubtreeReachable,
    SubtreeUnreachable,
)
from hierclust.topology import Topology, from_dict, generate_document


def topology(hosts: dict[str, str]) -> Topology:
    """cn1..cn6 in two leaf groups; ``hosts`` gives some nodes a host of their own (the others
    share 127.0.0.1)."""
    document: dict[str, Any] = generate_document(6, 3, base_port=7000, name="t")
    document["node"] = {name: {"host": host, "port": 7000} for name, host in hosts.items()}
    return from_dict(document, source="test")


TOPOLOGY = topology({"cn1": "10.0.0.1", "cn2": "10.0.0.2", "cn3": "10.0.0.3", "cn4": "10.0.0.4"})
"""cn1-cn4 each on an IP of its own; cn5 and cn6 both on 127.0.0.1."""


def worker(name: str, host: str, port: int = 40000) -> WorkerRef:
    return WorkerRef(f"tcp://{host}:{port}", name, host)


def failed(node: str, cursor: str = "7") -> NodeFailed:
    return NodeFailed(
        cursor=cursor,
        observer="cn1",
        t_ns=1,
        node=node,
        rank=0,
        incarnation=1,
        group="t-1",
        detected_by="cn1",
    )


def member(name: str, state: Any) -> Member:
    return Member(
        name=name, rank=0, group="g", tier=0, state=state, mode="active", incarnation=1, leads=()
    )


def test_a_worker_named_after_a_node_is_that_node_wherever_it_runs() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    assert matcher.node_of(worker("cn2", "10.0.0.9")) == "cn2"
    assert matcher.node_of(worker("cn5", "127.0.0.1")) == "cn5"
    # the name wins over the IP: a worker named cn3 on cn4's IP is cn3's
    assert matcher.node_of(worker("cn3", "10.0.0.4")) == "cn3"


def test_an_unnamed_worker_is_the_node_whose_ip_it_has_when_no_other_node_has_it() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    assert matcher.node_of(worker("tcp://10.0.0.4:40000", "10.0.0.4")) == "cn4"
    assert matcher.node_of(worker("3", "10.0.0.2")) == "cn2"
    assert matcher.node_of(worker("x", "10.9.9.9")) is None


def test_an_ip_shared_by_several_nodes_names_nobody() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    assert matcher.shared_hosts == {"127.0.0.1"}
    assert matcher.node_of(worker("somebody", "127.0.0.1")) is None


def test_only_failures_departures_and_cut_off_subtrees_name_lost_nodes() -> None:
    assert lost_nodes(failed("cn3")) == ("cn3",)
    left = NodeLeft(
        cursor="1", observer="a", t_ns=0, node="cn4", rank=3, incarnation=1, group="g",
        detected_by="cn1",
    )  # fmt: skip
    assert lost_nodes(left) == ("cn4",)
    cut = SubtreeUnreachable(
        cursor="2", observer="a", t_ns=0, group="t-2", nodes=("cn4", "cn5"), hostlist="cn[4-5]"
    )
    assert lost_nodes(cut) == ("cn4", "cn5")
    quiet = [
        NodeAlive(cursor="3", observer="a", t_ns=0, node="cn3", rank=2, incarnation=2),
        SubtreeReachable(cursor="4", observer="a", t_ns=0, group="g", nodes=("cn4",), hostlist=""),
        LeaderChanged(cursor="5", observer="a", t_ns=0, group="g", leader=None, term=3),
        PrimaryChanged(cursor="6", observer="a", t_ns=0, in_primary=False),
    ]
    assert [lost_nodes(e) for e in quiet] == [(), (), (), ()]


def test_a_failure_removes_the_failed_nodes_workers_only() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    workers = [
        worker("cn2", "10.0.0.2"),
        worker("tcp://10.0.0.2:41000", "10.0.0.2", 41000),  # unnamed, second worker on cn2's IP
        worker("cn3", "10.0.0.3"),
        worker("other", "127.0.0.1"),
    ]
    plan = plan_removals(failed("cn2", cursor="c9"), workers, matcher, in_primary=True)
    assert [r.address for r in plan] == ["tcp://10.0.0.2:40000", "tcp://10.0.0.2:41000"]
    assert {r.node for r in plan} == {"cn2"}
    assert {r.stimulus_id for r in plan} == {f"{STIMULUS_PREFIX}-NodeFailed-c9"}
    assert "cn2 failed" in plan[0].reason and "cn1" in plan[0].reason


def test_a_cut_off_subtree_removes_every_worker_inside_it() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    workers = [worker(f"cn{i}", "127.0.0.1", 40000 + i) for i in range(1, 7)]
    cut = SubtreeUnreachable(
        cursor="k", observer="cn1", t_ns=0, group="t-2", nodes=("cn4", "cn5", "cn6"),
        hostlist="cn[4-6]",
    )  # fmt: skip
    plan = plan_removals(cut, workers, matcher, in_primary=True)
    assert [r.node for r in plan] == ["cn4", "cn5", "cn6"]
    assert "t-2" in plan[0].reason and "unreachable" in plan[0].reason


def test_outside_the_primary_component_nothing_is_removed() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    workers = [worker("cn2", "10.0.0.2")]
    assert plan_removals(failed("cn2"), workers, matcher, in_primary=False) == []
    assert len(plan_removals(failed("cn2"), workers, matcher, in_primary=True)) == 1


def test_events_that_name_no_lost_node_remove_nothing() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    alive = NodeAlive(cursor="3", observer="a", t_ns=0, node="cn2", rank=1, incarnation=2)
    assert plan_removals(alive, [worker("cn2", "10.0.0.2")], matcher, in_primary=True) == []


def test_resync_removes_the_workers_of_members_held_failed_left_or_unreachable() -> None:
    matcher = NodeMatcher(TOPOLOGY)
    members = [
        member("cn1", "alive"),
        member("cn2", "failed"),
        member("cn3", "suspect"),
        member("cn4", "left"),
        member("cn5", "unreachable"),
    ]
    workers = [worker(f"cn{i}", "127.0.0.1", 40000 + i) for i in range(1, 7)]
    plan = plan_resync(members, workers, matcher, tag="x")
    assert [r.node for r in plan] == ["cn2", "cn4", "cn5"]
    assert {r.stimulus_id for r in plan} == {f"{STIMULUS_PREFIX}-resync-x"}


def test_the_stimulus_id_names_the_event_and_its_cursor() -> None:
    assert stimulus_id(failed("cn2", cursor="42:7")) == "hierclust-NodeFailed-42:7"
