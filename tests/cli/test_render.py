"""What people read: the status tree, the demo report, event lines."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from hierclust.cli.demo import print_demo
from hierclust.cli.observe import event_line, status_tree
from hierclust.runtime.status import aggregate
from tests.runtime.test_status import demo, rack_c_cut_off, snapshots


def console80(width: int = 80) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)


def text_of(console: Console) -> str:
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def rendered(renderable: object) -> str:
    """As printed on a wide terminal (a tree's guides would cut wrapped lines)."""
    console = console80(width=200)
    console.print(renderable)
    return text_of(console)


def test_status_shows_votes_present_and_what_is_needed() -> None:
    topology = demo()
    text = rendered(status_tree(topology, aggregate(topology, snapshots(topology))))
    assert "demo tier 2: led dn01, term 1, quorate (3 of 3 votes, needs 2)" in text
    assert "rack-a.t0.0 tier 0: led dn01, term 1, quorate (7 of 7 votes, needs 4), 7 alive" in text


def test_status_of_a_cut_off_rack_never_shows_an_unreachable_leader_leading() -> None:
    topology = demo()
    summary = aggregate(topology, rack_c_cut_off(topology))
    text = rendered(status_tree(topology, summary))
    assert text.startswith("demo: 42/63 alive, 21 unreachable, 0 suspect, 0 failed")
    assert "9/13 led, 9 quorate" in text
    assert (
        "rack-c.t0.0 tier 0: no leader: dn43 is unreachable, term 1, no quorum (0 of 7 votes, "
        "needs 4), 0 alive, unreachable: dn[43-49]"
    ) in text
    assert "rack-c.t0.1 tier 0: no leader: dn50 is unreachable" in text
    assert "demo tier 2: led dn01, term 1, quorate (2 of 3 votes, needs 2)" in text
    assert "cut off from the primary component: rack-c dn[43-63]" in text
    assert not re.search(r"led dn(4[3-9]|5\d|6[0-3])\b", text), "a rack-c node shown leading"


def test_status_says_when_there_is_no_primary_component() -> None:
    topology = demo()
    summary = aggregate(topology, snapshots(topology, no_primary=True))
    text = rendered(status_tree(topology, summary))
    assert "13/13 led, 13 quorate; 0 datagrams dropped; no primary component" in text


def test_status_of_a_subtree_counts_the_subtree() -> None:
    topology = demo()
    summary = aggregate(topology, snapshots(topology), group="rack-b")
    text = rendered(status_tree(topology, summary))
    assert text.startswith("demo rack-b: 21/21 alive") and "4/4 led" in text
    assert "rack-a" not in text


def test_status_lists_the_nodes_that_stopped_on_an_error_with_the_reason() -> None:
    topology = demo()
    snaps = snapshots(topology)
    reason = "dn08: Persist to /var/lib/hc/nodes/dn08.json raised OSError: [Errno 28] No space"
    for node in snaps[0]["nodes"]:
        if node["rank"] == 7:
            node.update(running=False, stop_event="Failed", stop_reason=reason, groups=[])
    text = rendered(status_tree(topology, aggregate(topology, snaps)))
    assert text.startswith("demo: 62/63 alive, 0 unreachable, 0 suspect, 1 failed")
    assert "rack-a.t0.1 tier 0: no leader: dn08 is failed" in text
    assert f"stopped on an error: {reason}" in text


def demo_report(processes: int, left: int) -> dict[str, object]:
    kill = {
        "victim": "dn63", "victim_role": "leaf", "detected_by": "dn57", "detect_ms": 150.2,
        "notified": 62, "survivors": 62, "notify_p50_ms": 155.0, "notify_p99_ms": 157.1,
        "notify_max_ms": 157.4, "reelected": {}, "reelect_ms": None, "groups_disturbed": 0,
        "elections_elsewhere": 0,
        "timeline": [{"node": f"dn{i:02d}", "ms": 150.0 + i} for i in range(1, 7)],
    }  # fmt: skip
    return {
        "nodes": 63, "processes": processes, "all_led_ms": 2878.6, "msgs_per_node_per_s": 9.82,
        "bytes_per_datagram": 81.7, "kills": [kill], "left_running": left, "seconds": 6.6,
    }  # fmt: skip


def test_demo_report_counts_in_the_right_number_and_never_cuts_a_line() -> None:
    console = console80()
    print_demo(demo_report(processes=1, left=1), console)
    text = text_of(console)
    assert "63 agents in 1 process; every group led after 2878.6 ms" in text
    assert "stopped; 1 process left running; 6.6 s in all" in text
    assert "…" not in text
    assert "steady state 9.82 datagrams/node/s (81.7 B each)" in text, "one line, not wrapped"
    console = console80()
    print_demo(demo_report(processes=2, left=0), console)
    assert "in 2 processes;" in text_of(console)
    assert "0 processes left running" in text_of(console)


def test_event_line_is_wall_clock_node_event_fields() -> None:
    t_ns = 5_000_000_000
    wall = time.mktime((2024, 5, 6, 7, 8, 9, 0, 0, -1))
    offset = int(wall * 1e9) - t_ns + 123_000_000  # wall clock - monotonic clock
    record = {
        "t_ns": t_ns, "node": "dn07", "rank": 6, "event": "NoticeLearned", "via": 3,
        "notice": {"kind": "failed", "node": 42, "incarnation": 1},
    }  # fmt: skip
    assert event_line(record, offset) == (
        "07:08:09.123 dn07 NoticeLearned via=3 notice=failed rank 42 inc 1"
    )
    stopped = {"t_ns": t_ns, "node": "dn07", "rank": 6, "event": "Stopped", "reason": "stopped"}
    assert event_line(stopped, offset) == "07:08:09.123 dn07 Stopped reason=stopped"


def test_event_lines_name_a_cut_off_subtree() -> None:
    offset = 0
    named = {"group_name": "scotland", "nodes": "sc[01-05]"}
    flipped = {"t_ns": 0, "node": "en01", "rank": 5, "event": "SubtreeUnreachable", "group": 2,
               "first": 0, "count": 5, **named}  # fmt: skip
    assert event_line(flipped, offset).endswith(" en01 SubtreeUnreachable scotland sc[01-05]")
    back = {**flipped, "event": "SubtreeReachable"}
    assert event_line(back, offset).endswith(" en01 SubtreeReachable scotland sc[01-05]")
    notice = {"node": 0, "count": 5, "group": 2, "reachable": False, "seq": 17, "issuer": 5,
              "kind": "unreachable", **named}  # fmt: skip
    learned = {"t_ns": 0, "node": "ap1", "rank": 40, "event": "NoticeLearned", "via": 10,
               "notice": notice}  # fmt: skip
    assert event_line(learned, offset).endswith(
        " ap1 NoticeLearned via=10 notice=unreachable scotland sc[01-05] seq 17"
    )
    unnamed = {k: v for k, v in flipped.items() if k not in named}  # logged without a topology
    assert event_line(unnamed, offset).endswith(" SubtreeUnreachable group 2 ranks 0+5")


def test_storage_faults_are_one_line_per_node_then_folded_by_error() -> None:
    from hierclust.cli.observe import storage_lines

    def reason(i: int, error: str = "No space left on device (ENOSPC)") -> str:
        return f"cannot write /s/nodes/cn{i:02d}.json: {error}; votes for no one"

    few = {f"cn{i:02d}": reason(i) for i in (1, 2)}
    assert storage_lines(few) == [f"cn0{i} {reason(i)}" for i in (1, 2)]
    many = {f"cn{i:02d}": reason(i) for i in range(1, 7)}
    many["cn09"] = reason(9, "Read-only file system (EROFS)")
    assert storage_lines(many) == [
        "cn[01-06] (6 nodes) cannot write their state: No space left on device (ENOSPC); "
        "votes for no one",
        "cn09 (1 node) cannot write their state: Read-only file system (EROFS); votes for no one",
    ]
