"""The Serf comparison compares like with like: synthetic Serf log lines and reports, no Serf.

Each test pins one way the comparison could misreport: a failure logged before the kill taken
for a notice, a ratio over an incomplete notification, false positives counted from different
starting points, and a steady window opened while join gossip still inflates Serf's rate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hierclust.bench.report import REPORT_FIELDS, serf_ratios
from hierclust.bench.serf import (
    AFTER_KILL_S,
    AgentLog,
    all_see_all_alive,
    false_failures,
    notified_at,
    wait_rate_settled,
)
from hierclust.cli import app

NAMES = ["s0", "s1", "s2", "s3"]


def line(event: str, member: str) -> bytes:
    """A line as ``serf agent -log-level=info`` prints it."""
    return f"    2026/12/03 10:42:20 [INFO] serf: {event}: {member} 127.0.0.1".encode()


def joined_logs(t_ns: int = 10) -> dict[str, AgentLog]:
    logs = {name: AgentLog() for name in NAMES}
    for log in logs.values():
        for member in NAMES:
            log.feed(line("EventMemberJoin", member), t_ns)
    return logs


# 1. a failure of the victim's name logged before the kill is not a notice of the kill
def test_only_failures_stamped_at_or_after_the_kill_notify() -> None:
    logs = joined_logs()
    t_kill = 1_000
    # s1 declared s3 failed during a slow join (and saw it rejoin); s2 did so too, then again
    # after the kill; s0 only after the kill, exactly at the kill stamp
    logs["s1"].feed(line("EventMemberFailed", "s3"), 200)
    logs["s1"].feed(line("EventMemberJoin", "s3"), 300)
    logs["s2"].feed(line("EventMemberFailed", "s3"), 400)
    logs["s2"].feed(line("EventMemberFailed", "s3"), 2_500)
    logs["s0"].feed(line("EventMemberFailed", "s3"), t_kill)
    assert notified_at(logs, "s3", t_kill) == {"s0": t_kill, "s2": 2_500}
    assert notified_at(logs, "s3", 0) == {"s0": t_kill, "s1": 200, "s2": 400}


# 2. no notify_max_ratio unless both sides notified every survivor
def test_ratio_needs_every_survivor_notified_on_both_sides() -> None:
    hier = {"notify_max_ms": 800.0, "msgs_per_node_per_s": 10.0, "notified": 99, "survivors": 99}
    serf = {"notify_max_ms": 9600.0, "msgs_per_node_per_s": 2.5, "notified": 99, "survivors": 99}
    assert serf_ratios(hier, serf) == {"notify_max_ratio": 12.0, "datagrams_ratio": 4.0}

    short = serf_ratios({**hier, "notified": 98}, serf)
    assert short["notify_max_ratio"] is None and short["datagrams_ratio"] == 4.0
    assert short["ratio_invalid"] == "hierclust notified 98 of 99 survivors"

    both = serf_ratios({**hier, "notified": 90}, {**serf, "notified": 97})
    assert both["notify_max_ratio"] is None
    assert both["ratio_invalid"] == (
        "hierclust notified 90 of 99 survivors; serf notified 97 of 99 survivors"
    )

    # medians can hide a short run: given the runs, every run must be complete
    runs = [dict(serf), {**serf, "notified": 60}, dict(serf)]
    by_run = serf_ratios(hier, serf, hierclust_runs=[hier], serf_runs=runs)
    assert by_run["notify_max_ratio"] is None
    assert by_run["ratio_invalid"] == "serf notified 60 of 99 survivors (run 2 of 3)"


def fake_report(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(REPORT_FIELDS)
    base.update(
        mode="udp", nodes=20, victim="cn06", victim_role="leaf", notified=19, survivors=19,
        notify_max_ms=800.0, msgs_per_node_per_s=10.0, seed=7, version="0.1.0",
    )  # fmt: skip
    base.update(fields)
    return base


def test_vs_serf_waits_as_long_for_hierclust_and_reports_an_invalid_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: dict[str, float] = {}

    def udp_runs(topology: Any, path: Any, kill: str, repeats: int, seed: int, **kw: Any) -> Any:
        waits["hierclust"] = kw["after_s"]
        return [fake_report(notified=17)]

    def serf_run(nodes: int, victim: int, role: str, seed: int, **kw: Any) -> dict[str, Any]:
        waits["serf"] = kw.get("after_s", AFTER_KILL_S)
        return fake_report(
            mode="serf", victim=f"s{victim}", notify_max_ms=9000.0, msgs_per_node_per_s=5.0,
            serf={"notify_ms": [9000.0], "settle_s": 3.0},
        )  # fmt: skip

    monkeypatch.setattr("hierclust.bench.udp.udp_runs", udp_runs)
    monkeypatch.setattr("hierclust.bench.serf.serf_run", serf_run)
    monkeypatch.setattr("hierclust.bench.serf.skip_reason", lambda: None)
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app,
        ["bench", "--mode", "udp", "--nodes", "20", "--fanout", "5", "--vs", "serf",
         "--no-budget", "--base-port", "30000", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert waits["hierclust"] >= waits["serf"] >= 60.0
    summary = json.loads(out.read_text())["summary"]
    assert summary["notify_max_ratio"] is None
    assert summary["ratio_invalid"] == "hierclust notified 17 of 19 survivors"
    assert summary["datagrams_ratio"] == 2.0
    assert "notify_max_ratio: none, hierclust notified 17 of 19" in result.output


# 3. false positives from convergence: every agent sees every member alive
def test_convergence_means_everyone_sees_everyone_alive() -> None:
    logs = {name: AgentLog() for name in NAMES}
    for name, log in logs.items():
        for member in NAMES:
            if (name, member) != ("s2", "s0"):
                log.feed(line("EventMemberJoin", member), 10)
    assert all_see_all_alive(logs) == 3
    logs["s2"].feed(line("EventMemberJoin", "s0"), 20)
    assert all_see_all_alive(logs) == 4
    # a member that joined and was then declared failed is not seen alive
    logs["s1"].feed(line("EventMemberFailed", "s3"), 30)
    assert all_see_all_alive(logs) == 3
    logs["s1"].feed(line("EventMemberJoin", "s3"), 40)
    assert all_see_all_alive(logs) == 4


def test_false_positives_count_only_from_convergence() -> None:
    logs = joined_logs()
    converged_ns = 100
    logs["s1"].feed(line("EventMemberFailed", "s2"), 50)  # during the join: not counted
    logs["s1"].feed(line("EventMemberJoin", "s2"), 60)
    logs["s0"].feed(line("EventMemberFailed", "s1"), 500)  # after convergence: counted
    logs["s2"].feed(line("EventMemberFailed", "s1"), 510)  # the same member once
    logs["s0"].feed(line("EventMemberFailed", "s3"), 600)  # the victim: never a false one
    assert false_failures(logs, "s3", converged_ns) == 1
    assert false_failures(logs, "s3", 0) == 2


# 4. the steady window opens after Serf's datagram rate has settled
class FakeCounter:
    """A namespace datagram counter advancing by ``deltas`` per 1 s of virtual time."""

    def __init__(self, deltas: list[int]) -> None:
        self.deltas = deltas
        self.value = 0
        self.now_s = 0.0

    def read(self) -> int:
        return self.value

    def sleep(self, seconds: float) -> None:
        step = self.deltas[min(int(self.now_s), len(self.deltas) - 1)]
        self.now_s += seconds
        self.value += step


# the datagrams per second of 100 Serf agents after convergence, as measured on this box
JOIN_PLATEAU = [1700, 1700, 1548, 228, 200, 200, 200, 200, 200, 201, 200]


def test_rate_settles_after_join_gossip_dies_down() -> None:
    counter = FakeCounter(JOIN_PLATEAU)
    settled, deltas = wait_rate_settled(counter.read, sleep=counter.sleep, max_s=60)
    # five seconds within 10 % of each other: seconds 5 to 9 (the 228 of second 4 is 12 % off)
    assert settled == 9.0 and counter.now_s == 9.0
    assert deltas == JOIN_PLATEAU[:9]


def test_two_agreeing_seconds_on_the_join_plateau_are_not_settled() -> None:
    """The plateau trap: two equal seconds of join gossip, eight times the steady rate."""
    counter = FakeCounter(JOIN_PLATEAU)
    settled, _ = wait_rate_settled(counter.read, sleep=counter.sleep, samples=2)
    assert settled == 2.0  # what a two-sample rule would take as settled
    counter = FakeCounter(JOIN_PLATEAU)
    settled, deltas = wait_rate_settled(counter.read, sleep=counter.sleep)
    assert settled is not None and settled > 3 and max(deltas[-5:]) <= 200


def test_rate_that_never_settles_is_bounded_and_reported() -> None:
    counter = FakeCounter([100, 200] * 50)
    settled, deltas = wait_rate_settled(counter.read, sleep=counter.sleep, max_s=8)
    assert settled is None and counter.now_s == 8.0 and len(deltas) == 8
    unreadable, none = wait_rate_settled(lambda: None, sleep=counter.sleep)
    assert unreadable is None and none == []


def test_a_serf_run_that_never_converged_is_counted_and_voids_the_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def udp_runs(topology: Any, path: Any, kill: str, repeats: int, seed: int, **kw: Any) -> Any:
        return [fake_report()]

    def serf_run(nodes: int, victim: int, role: str, seed: int, **kw: Any) -> dict[str, Any]:
        return fake_report(
            mode="serf", victim=None, notified=0, notify_max_ms=None, notify_p50_ms=None,
            notify_p99_ms=None, detect_ms=None, msgs_per_node_per_s=None, false_positives=3,
            serf={"converged": False, "converged_agents": 12, "notify_ms": []},
        )  # fmt: skip

    monkeypatch.setattr("hierclust.bench.udp.udp_runs", udp_runs)
    monkeypatch.setattr("hierclust.bench.serf.serf_run", serf_run)
    monkeypatch.setattr("hierclust.bench.serf.skip_reason", lambda: None)
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app,
        ["bench", "--mode", "udp", "--nodes", "20", "--fanout", "5", "--vs", "serf",
         "--base-port", "30000", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["serf"]["converged_runs"] == "0 of 1"
    assert summary["serf"]["false_positives"] == 3
    assert summary["notify_max_ratio"] is None
    assert summary["ratio_invalid"] == "serf notified 0 of 19 survivors"
    assert "skipped" in summary["equal_budget"]
