"""Pure parts of the benchmarks: report schema, medians, ratios, sizes, victims, counters."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from hierclust.bench.plots import cdf_points
from hierclust.bench.report import (
    REPORT_FIELDS,
    SchemaError,
    check_report,
    document,
    percentile,
    ratio,
    serf_ratios,
    summarize,
)
from hierclust.bench.serf import udp_and_lo_counters
from hierclust.bench.sweep import flatness, parse_sizes
from hierclust.bench.udp import (
    BenchError,
    EventTail,
    counters,
    false_positives,
    pick_victim,
    serf_budget_tuning,
)
from hierclust.topology import from_dict, generate_document
from hierclust.tuning import Tuning


def report(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(REPORT_FIELDS)
    base.update(mode="udp", nodes=20, notified=19, survivors=19, seed=1, version="0.1.0")
    base.update(fields)
    return base


def test_check_report_names_the_missing_or_mistyped_field() -> None:
    check_report(report(notify_max_ms=812.5))
    broken = report()
    del broken["reelect_ms"]
    with pytest.raises(SchemaError, match="reelect_ms"):
        check_report(broken)
    with pytest.raises(SchemaError, match="notified"):
        check_report(report(notified="19"))
    with pytest.raises(SchemaError, match="notify_p50_ms"):
        check_report(report(notify_p50_ms="fast"))


def test_summary_holds_medians_and_keeps_whole_numbers_whole() -> None:
    runs = [
        report(notify_max_ms=900.0, msgs_per_node_per_s=10.0, notified=19, seed=7),
        report(notify_max_ms=700.0, msgs_per_node_per_s=9.0, notified=18, seed=8),
        report(notify_max_ms=1000.0, msgs_per_node_per_s=11.0, notified=19, seed=9),
    ]
    summary = summarize(runs)
    assert summary["notify_max_ms"] == 900.0
    assert summary["msgs_per_node_per_s"] == 10.0
    assert summary["notified"] == 19 and isinstance(summary["notified"], int)
    assert summary["seed"] == 7 and summary["mode"] == "udp" and summary["repeats"] == 3
    assert summary["reelect_ms"] is None
    even = summarize(runs[:2])
    assert even["notify_max_ms"] == 800.0 and even["notified"] == 18.5


def test_document_is_runs_plus_summary_and_checks_each_run() -> None:
    runs = [report(notify_max_ms=5.0)]
    doc = document(runs, extra=1)
    assert doc["runs"] == runs and doc["summary"]["notify_max_ms"] == 5.0
    assert doc["summary"]["extra"] == 1
    with pytest.raises(SchemaError):
        document([{"mode": "udp"}])


def test_ratios_serf_over_hierclust_and_hierclust_over_serf() -> None:
    hier = {"notify_max_ms": 800.0, "msgs_per_node_per_s": 10.0, "notified": 9, "survivors": 9}
    serf = {"notify_max_ms": 9600.0, "msgs_per_node_per_s": 2.5, "notified": 9, "survivors": 9}
    assert serf_ratios(hier, serf) == {"notify_max_ratio": 12.0, "datagrams_ratio": 4.0}
    assert ratio(1, 3) == 0.333
    assert ratio(None, 3) is None and ratio(3, None) is None and ratio(3, 0) is None
    nothing = {"notify_max_ms": None, "msgs_per_node_per_s": None, "notified": 9, "survivors": 9}
    assert serf_ratios(hier, nothing) == {
        "notify_max_ratio": None,
        "datagrams_ratio": None,
    }


def test_percentile_and_cdf() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    xs, ys = cdf_points([30.0, 10.0, 20.0, 40.0])
    assert xs == [10.0, 20.0, 30.0, 40.0] and ys == [0.25, 0.5, 0.75, 1.0]


def test_sizes_and_flatness() -> None:
    assert parse_sizes("1000, 10k,1e5,1m") == [1000, 10_000, 100_000, 1_000_000]
    with pytest.raises(ValueError, match="not a number"):
        parse_sizes("10,lots")
    with pytest.raises(ValueError, match="at least 2"):
        parse_sizes("1")
    rows = [{"msgs_per_node_per_s": v} for v in (9.0, 10.0, 11.0)]
    assert flatness(rows) == 0.1
    assert flatness([]) is None


def test_serf_budget_tuning_is_consistent_and_scales() -> None:
    for heartbeat_ms in (60, 200, 899, 2500):
        tuning = serf_budget_tuning(heartbeat_ms)
        _tuned, problems = Tuning().replace_checked(tuning)
        assert problems == [], (heartbeat_ms, problems)
    assert serf_budget_tuning(1000)["suspect_after_ms"] == 4000


def topology_20() -> Any:
    return from_dict(generate_document(20, 5, base_port=30000), source="t")


def test_pick_victim_by_role() -> None:
    topology = topology_20()
    root = topology.root.index
    leaves = [g.index for g in topology.leaves]
    # rank 0 leads leaf 0 and the root; ranks 5, 10, 15 lead one leaf each
    leading = [[0, leaves[0]], [0, root], [5, leaves[1]], [10, leaves[2]], [15, leaves[3]]]
    rng = random.Random(1)
    rank, role, led = pick_victim(topology, leading, "root-leader", rng)
    assert (rank, role, led) == (0, "root-leader", sorted([leaves[0], root]))
    rank, role, led = pick_victim(topology, leading, "leader", rng)
    assert rank in (5, 10, 15) and role == "leader" and len(led) == 1
    rank, role, led = pick_victim(topology, leading, "leaf", rng)
    assert rank not in (0, 5, 10, 15) and role == "leaf" and led == []
    name = topology.node_name(5)
    assert pick_victim(topology, leading, name, rng)[:2] == (5, "leader")
    with pytest.raises(BenchError, match="root group has no leader"):
        pick_victim(topology, leading[2:], "root-leader", rng)
    with pytest.raises(BenchError):
        pick_victim(topology, leading, "nosuchnode", rng)


def test_false_positives_count_notices_about_live_nodes_only() -> None:
    def learned(t: int, node: int, inc: int = 1, kind: str = "failed") -> dict[str, Any]:
        notice = {"kind": kind, "node": node, "incarnation": inc}
        return {"t_ns": t, "event": "NoticeLearned", "rank": 3, "notice": notice}

    events = [
        learned(5, 7),  # before the window
        learned(20, 9),  # the victim: expected
        learned(30, 4),
        learned(31, 4),  # same notice again
        learned(40, 4, kind="alive"),
        {"t_ns": 50, "event": "LeaderChanged", "rank": 1},
    ]
    assert false_positives(events, {9}, 10) == (1, [4])
    assert false_positives(events, {9}, 0) == (2, [4, 7])


def test_counters_sum_running_nodes() -> None:
    snaps = [
        {"nodes": [{"running": True, "datagrams": {"sent": 5, "sent_bytes": 500}}]},
        {"nodes": [{"running": False, "datagrams": {"sent": 2, "sent_bytes": 100}}]},
    ]
    assert counters(snaps) == (7, 600, 1)


def test_event_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "events-w0.jsonl"
    log.write_text('{"event":"NoticeLearned","rank":1}\n')
    tail = EventTail(tmp_path)
    assert tail.lines() == []
    with open(log, "a") as f:
        f.write('{"event":"NoticeLearned","rank":2}\n{"event":"Booted","rank":3}\n{"event":"Lea')
    assert [e["rank"] for e in tail.lines()] == [2]
    with open(log, "a") as f:
        f.write('derChanged","rank":4,"leader":4,"group":0}\n')
    assert tail.lines() == [{"event": "LeaderChanged", "rank": 4, "leader": 4, "group": 0}]


def test_namespace_counters_parse_this_process() -> None:
    import os

    found = udp_and_lo_counters(os.getpid())
    assert found is not None and found[0] >= 0 and found[1] >= 0
