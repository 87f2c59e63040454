"""The event log: every core event is written as one JSON line; subtree records name the subtree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hierclust.core.types import (
    LeaseChanged,
    NoticeLearned,
    Subtree,
    SubtreeReachable,
    SubtreeUnreachable,
)
from hierclust.runtime.events import LOG_LEASES_ENV, EventBus
from tests.runtime.test_view import seed


def logged(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_subtree_notices_and_flips_are_logged_with_the_subtrees_name(tmp_path: Path) -> None:
    """A node that learns a subtree notice logs it (an unserialisable notice here would stop
    the node: an Emit that raises is a fail-stop)."""
    topology = seed()
    scotland = topology.group("scotland")
    bus = EventBus(tmp_path / "events-w0.jsonl", topology)
    cut = Subtree(0, 5, scotland.index, False, 1_700_000_000_123, 5)
    bus.publish(40, "ap1", NoticeLearned(cut, 10), t_ns=1)
    bus.publish(40, "ap1", SubtreeUnreachable(scotland.index, 0, 5), t_ns=2)
    bus.publish(40, "ap1", SubtreeReachable(scotland.index, 0, 5), t_ns=3)
    bus.close()
    learned, flipped, back = logged(tmp_path / "events-w0.jsonl")
    assert learned["notice"] == {
        "node": 0,
        "count": 5,
        "group": scotland.index,
        "reachable": False,
        "seq": 1_700_000_000_123,
        "issuer": 5,
        "kind": "unreachable",
        "group_name": "scotland",
        "nodes": "sc[01-05]",
    }
    assert {k: flipped[k] for k in ("event", "group", "first", "count", "group_name", "nodes")} == {
        "event": "SubtreeUnreachable",
        "group": scotland.index,
        "first": 0,
        "count": 5,
        "group_name": "scotland",
        "nodes": "sc[01-05]",
    }
    assert back["event"] == "SubtreeReachable" and back["nodes"] == "sc[01-05]"


def test_without_a_topology_a_subtree_notice_is_logged_by_number(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "events-w0.jsonl")
    bus.publish(0, "cn1", NoticeLearned(Subtree(3, 3, 2, True, 9, 0), None), t_ns=1)
    bus.close()
    (record,) = logged(tmp_path / "events-w0.jsonl")
    assert record["notice"] == {
        "node": 3,
        "count": 3,
        "group": 2,
        "reachable": True,
        "seq": 9,
        "issuer": 0,
        "kind": "reachable",
    }


def test_lease_renewals_are_logged_only_when_asked(tmp_path: Path, monkeypatch: Any) -> None:
    """Taking, losing and a new term are always logged; every renewal report only with
    HIERCLUST_LOG_LEASES=1 (what the chaos checker reads to bound each lease)."""
    reports = [
        LeaseChanged(3, 1, True, 600),
        LeaseChanged(3, 1, True, 800),
        LeaseChanged(3, 1, True, 1000),
        LeaseChanged(3, 1, False, 1000),
    ]
    for every, expected in (("", [600, 1000]), ("1", [600, 800, 1000, 1000])):
        monkeypatch.setenv(LOG_LEASES_ENV, every)
        path = tmp_path / f"events-{every or 'no'}.jsonl"
        bus = EventBus(path)
        for i, report in enumerate(reports):
            bus.publish(4, "cn5", report, t_ns=i)
        bus.close()
        assert [r["until_ns"] for r in logged(path)] == expected
