"""What the page shows, from hand-written snapshots and event-log records: per-group counts,
the spread of the last failure notice and its origin, the event-log tail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hierclust.web.feed import EventFiles
from hierclust.web.model import SpreadLog, page_state
from tests.runtime.test_status import demo, snapshots

MS = 1_000_000


def learned(t_ms: float, rank: int, victim: int, via: int | None, inc: int = 1) -> dict[str, Any]:
    return {
        "t_ns": int(5_000_000 * MS + t_ms * MS),  # an arbitrary monotonic origin
        "node": f"dn{rank + 1:02d}",
        "rank": rank,
        "event": "NoticeLearned",
        "notice": {"kind": "failed", "node": victim, "incarnation": inc},
        "via": via,
    }


def test_cut_off_group_counts_its_nodes_unreachable() -> None:
    topology = demo()
    state = page_state(topology, snapshots(topology, unreachable=("rack-b.t0.1",)))
    groups = {g["name"]: g for t in state["tiers"] for g in t["shown"]}
    assert groups["rack-b.t0.1"]["cut_off"] and groups["rack-b.t0.1"]["counts"]["unreachable"] == 7
    assert groups["rack-b"]["counts"]["unreachable"] == 7 and groups["rack-b"]["trouble"]
    assert not groups["rack-a"]["trouble"] and groups["rack-a"]["counts"]["unreachable"] == 0
    assert state["unreachable_groups"] == ["rack-b.t0.1"]


def test_spread_of_the_last_failure_in_learning_order() -> None:
    topology = demo()
    log = SpreadLog()
    rack_a_leaf = topology.group("rack-a.t0.0").index
    rack_a = topology.group("rack-a").index
    # an older notice, then dn07 (rank 6) detected by dn01, spread through its group and up
    log.feed([learned(0, 30, victim=40, via=None, inc=2)])
    log.feed(
        [
            learned(900, 0, victim=6, via=None),
            learned(912, 2, victim=6, via=rack_a_leaf),
            learned(905, 1, victim=6, via=rack_a_leaf),
            learned(930, 7, victim=6, via=rack_a),
            learned(990, 7, victim=6, via=rack_a),  # a second copy: the first one counts
        ]
    )
    spread = log.last(topology)
    assert spread is not None
    assert (spread["victim"], spread["origin"], spread["detected_by"]) == (
        "dn07",
        "detection",
        "dn01",
    )
    assert [(r["node"], r["ms"], r["via"]) for r in spread["learned"]] == [
        ("dn01", 0.0, None),
        ("dn02", 5.0, "rack-a.t0.0"),
        ("dn03", 12.0, "rack-a.t0.0"),
        ("dn08", 30.0, "rack-a"),
    ]
    assert spread["learned"][3]["via_tier"] == 1 and spread["notified"] == 4


def test_spread_counts_from_the_crash_when_the_worker_logged_it() -> None:
    topology = demo()
    log = SpreadLog()
    crash = {"t_ns": 5_000_000 * MS + 100 * MS, "event": "Crashed", "node": "dn07", "rank": 6}
    log.feed([crash, learned(900, 0, victim=6, via=None)])
    spread = log.last(topology)
    assert spread is not None
    assert spread["origin"] == "crash" and spread["detect_ms"] == 800.0
    assert spread["learned"][0]["ms"] == 800.0


def test_event_files_return_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "events-w0.jsonl"
    first = json.dumps({"t_ns": 2, "event": "Booted"})
    path.write_text(first + "\n" + '{"t_ns": 3, "ev')
    files = EventFiles(tmp_path)
    assert [r["t_ns"] for r in files.read_new()] == [2]
    with open(path, "a") as handle:
        handle.write('ent": "Crashed"}\nnot json\n')
    assert files.read_new() == [{"t_ns": 3, "event": "Crashed"}]
    assert files.read_new() == []
    path.write_text(first + "\n")  # a new deployment wrote a shorter file: read from the start
    assert [r["event"] for r in files.read_new()] == ["Booted"]


def test_a_large_tier_lists_its_groups_in_trouble_first() -> None:
    from hierclust.topology import from_dict, generate_document
    from hierclust.web.model import MAX_GROUPS_PER_TIER

    topology = from_dict(generate_document(3000, 4, name="big"), source="big")
    last = topology.num_nodes - 1  # its leaf group comes last in the tier
    state = page_state(topology, snapshots(topology, failed={last: False}))
    leaves = state["tiers"][-1]
    assert leaves["tier"] == 0 and leaves["groups"] == len(topology.leaves) > MAX_GROUPS_PER_TIER
    assert len(leaves["shown"]) == MAX_GROUPS_PER_TIER
    first = leaves["shown"][0]
    assert first["name"] == topology.leaf_of(last).name and first["counts"]["failed"] == 1
    assert all(not g["trouble"] for g in leaves["shown"][1:])
    assert sum(t["groups"] for t in state["tiers"]) == len(topology.by_index)
