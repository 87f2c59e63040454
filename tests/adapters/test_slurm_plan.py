"""The Slurm adapter's decisions, without Slurm: members, events and Slurm's node states in,
``scontrol`` arguments out."""

from __future__ import annotations

import pytest

from hierclust.adapters.slurm_plan import (
    REASON_CUT_OFF,
    REASON_FAILED,
    REASON_LEFT,
    Action,
    Command,
    NameMapError,
    NodeNames,
    SlurmNode,
    applied,
    apply_events,
    hostlist,
    parse_nodes,
    plan,
    wants_of_members,
)
from hierclust.api.types import (
    EventsLost,
    Member,
    NodeAlive,
    NodeFailed,
    NodeLeft,
    SubtreeReachable,
    SubtreeUnreachable,
)

NAMES = [f"cn{i:02d}" for i in range(1, 9)]
EV = {"cursor": "e:1", "observer": "cn01", "t_ns": 0}


def member(name: str, state: str = "alive") -> Member:
    return Member(
        name=name,
        rank=NAMES.index(name),
        group="g",
        tier=0,
        state=state,  # type: ignore[arg-type]
        mode="active",
        incarnation=1,
        leads=(),
    )


def failed(node: str) -> NodeFailed:
    return NodeFailed(
        **EV, node=node, rank=NAMES.index(node), incarnation=1, group="g", detected_by="cn01"
    )


def alive(node: str) -> NodeAlive:
    return NodeAlive(**EV, node=node, rank=NAMES.index(node), incarnation=2)


def left(node: str) -> NodeLeft:
    return NodeLeft(
        **EV, node=node, rank=NAMES.index(node), incarnation=1, group="g", detected_by="cn01"
    )


def slurm(**states: str | tuple[str, str]) -> dict[str, SlurmNode]:
    """Every node IDLE unless named: ``cn03="DOWN"`` or ``cn03=("DOWN", "reason")``."""
    nodes = {n: SlurmNode(n, "IDLE") for n in NAMES}
    for name, s in states.items():
        state, reason = (s, "") if isinstance(s, str) else s
        nodes[name] = SlurmNode(name, state, reason)
    return nodes


def argvs(commands: list[Command]) -> list[list[str]]:
    return [c.args() for c in commands]


def decide(events: list, slurm_nodes: dict[str, SlurmNode], names: NodeNames | None = None):
    wants = wants_of_members(member(n) for n in NAMES)
    touched, resync = apply_events(wants, events)
    return plan(wants, slurm_nodes, names, only=touched), resync


def test_failures_are_batched_into_one_hostlist() -> None:
    commands, resync = decide([failed("cn03"), failed("cn04"), failed("cn07")], slurm())
    assert not resync
    assert argvs(commands) == [
        ["update", "NodeName=cn[03-04,07]", "State=DOWN", f"Reason={REASON_FAILED}"]
    ]


def test_an_unreachable_subtree_goes_down_with_its_group_in_the_reason() -> None:
    cut = SubtreeUnreachable(**EV, group="rack-b", nodes=("cn05", "cn06"), hostlist="cn[05-06]")
    commands, _ = decide([cut, failed("cn02")], slurm())
    assert argvs(commands) == [
        ["update", "NodeName=cn02", "State=DOWN", f"Reason={REASON_FAILED}"],
        [
            "update",
            "NodeName=cn[05-06]",
            "State=DOWN",
            "Reason=hierclust: unreachable (subtree rack-b cut off)",
        ],
    ]


def test_a_planned_departure_drains() -> None:
    commands, _ = decide([left("cn02")], slurm())
    assert argvs(commands) == [["update", "NodeName=cn02", "State=DRAIN", f"Reason={REASON_LEFT}"]]


def test_alive_resumes_only_what_hierclust_took_out() -> None:
    nodes = slurm(
        cn02=("DOWN", f"{REASON_FAILED} [root@2026-01-01T00:00:00]"),
        cn03=("DOWN", "bad DIMM [root@2026-01-01T00:00:00]"),
        cn04=("IDLE+DRAIN", REASON_LEFT),
        cn05=("DOWN*", "Not responding"),
    )
    commands, _ = decide([alive(n) for n in ("cn02", "cn03", "cn04", "cn05", "cn06")], nodes)
    assert argvs(commands) == [["update", "NodeName=cn[02,04]", "State=RESUME"]]


def test_an_operators_node_is_never_overridden() -> None:
    nodes = slurm(
        cn02=("IDLE+DRAIN", "reboot pending"),
        cn03=("DOWN", "bad DIMM"),
        cn04=("MIXED+DRAIN", REASON_LEFT),
    )
    commands, _ = decide([failed("cn02"), failed("cn03"), failed("cn04")], nodes)
    # cn04 was drained by hierclust: its failure takes it down; the operator's nodes stay
    assert argvs(commands) == [["update", "NodeName=cn04", "State=DOWN", f"Reason={REASON_FAILED}"]]


def test_nothing_is_repeated_when_slurm_already_shows_it() -> None:
    nodes = slurm(cn03=("DOWN", REASON_FAILED), cn04=("DOWN*", "Not responding"))
    commands, _ = decide([failed("cn03"), failed("cn04"), alive("cn05")], nodes)
    assert commands == []


def test_a_plan_applied_then_replanned_is_empty() -> None:
    events = [failed("cn01"), left("cn02"), failed("cn05"), alive("cn05")]
    wants = wants_of_members(member(n) for n in NAMES)
    touched, _ = apply_events(wants, events)
    first = plan(wants, slurm(cn06=("DOWN", REASON_FAILED)))
    assert {c.action for c in first} == {Action.DOWN, Action.DRAIN, Action.UP}
    assert plan(wants, applied(slurm(cn06=("DOWN", REASON_FAILED)), first)) == []


def test_the_last_event_about_a_node_wins() -> None:
    commands, _ = decide([failed("cn03"), alive("cn03")], slurm())
    assert commands == []
    commands, _ = decide([alive("cn03"), failed("cn03")], slurm())
    assert [c.nodes for c in commands] == [("cn03",)]


def test_reachable_and_lost_events_ask_for_a_resync() -> None:
    back = SubtreeReachable(**EV, group="rack-b", nodes=("cn05",), hostlist="cn05")
    assert decide([back], slurm())[1]
    assert decide([EventsLost(**EV, count=3, reason="overflow")], slurm())[1]


def test_nodes_slurm_does_not_know_are_skipped() -> None:
    nodes = slurm()
    del nodes["cn03"]
    commands, _ = decide([failed("cn03"), failed("cn04")], nodes)
    assert argvs(commands) == [["update", "NodeName=cn04", "State=DOWN", f"Reason={REASON_FAILED}"]]


def test_reconcile_from_members() -> None:
    members = [member(n) for n in NAMES]
    members[2] = member("cn03", "failed")
    members[3] = member("cn04", "left")
    members[4] = member("cn05", "suspect")
    members[5] = member("cn06", "unreachable")
    wants = wants_of_members(members)
    nodes = slurm(cn01=("DOWN", REASON_FAILED), cn05=("DOWN", REASON_FAILED))
    assert argvs(plan(wants, nodes)) == [
        ["update", "NodeName=cn03", "State=DOWN", f"Reason={REASON_FAILED}"],
        ["update", "NodeName=cn06", "State=DOWN", f"Reason={REASON_CUT_OFF}"],
        ["update", "NodeName=cn04", "State=DRAIN", f"Reason={REASON_LEFT}"],
        ["update", "NodeName=cn[01,05]", "State=RESUME"],
    ]


def test_names_map_to_slurm_names() -> None:
    names = NodeNames.parse(["cn[01-08]=nid[001-008]"])
    nodes = {f"nid{i:03d}": SlurmNode(f"nid{i:03d}", "IDLE") for i in range(1, 9)}
    commands, _ = decide([failed("cn02"), failed("cn03")], nodes, names)
    assert argvs(commands) == [
        ["update", "NodeName=nid[002-003]", "State=DOWN", f"Reason={REASON_FAILED}"]
    ]


@pytest.mark.parametrize("rule", ["cn[01-02]", "=nid1", "cn[01-02]=nid[1-3]", "cn[01-02=nid[1-2]"])
def test_bad_name_maps_are_refused(rule: str) -> None:
    with pytest.raises(NameMapError, match="cn|nid|HIERCLUST"):
        NodeNames.parse([rule])


def test_hostlists_fold_one_axis_only() -> None:
    assert hostlist(["r1-n2", "r1-n1", "r2-n1", "r2-n2"]) == "r1-n[1-2],r2-n[1-2]"


def test_scontrol_show_node_is_parsed_with_reasons_that_hold_spaces() -> None:
    output = (
        "NodeName=cn01 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 NodeAddr=127.0.0.1 "
        "State=IDLE ThreadsPerCore=1 Partitions=lab ExtSensorsTemp=n/s\n"
        "NodeName=cn02 Arch=x86_64 State=DOWN+DRAIN ThreadsPerCore=1 "
        "Reason=hierclust: node failed [root@2026-12-03T09:05:16]\n"
        "NodeName=cn03 State=IDLE* Reason=Not responding [slurm@2026-12-03T09:05:16] "
        "Comment=(null)\n"
    )
    nodes = parse_nodes(output)
    assert nodes["cn01"] == SlurmNode("cn01", "IDLE", "")
    assert nodes["cn02"].reason == "hierclust: node failed [root@2026-12-03T09:05:16]"
    assert nodes["cn02"].ours and nodes["cn02"].down
    assert nodes["cn03"].reason == "Not responding [slurm@2026-12-03T09:05:16]"
    assert not nodes["cn03"].idle and nodes["cn01"].idle
