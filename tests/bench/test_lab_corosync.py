"""hierclust and Corosync on lab hosts: a partition measured on real hierclust agents, and
Corosync's membership seen to change when a host is cut off.

Both need a lab (root, network and time namespaces, nftables); the Corosync test needs Debian's
corosync (``.ci/run`` installs it). Namespaces ``hco<pid>-...`` on 10.222.0 (no other test module
uses them). The parsing helpers are tested without a lab.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hierclust.bench.corosync import (
    CorosyncLab,
    HostLog,
    first_state,
    parse_quorumtool,
    skip_reason,
    state_at,
)
from hierclust.bench.partition import partition_runs
from hierclust.cli import app
from hierclust.runtime.netns import unavailable
from tests.runtime.netns_lab import netns_lab

TAG = "hco"
SUBNET = "10.222.0"
NO_LAB = unavailable()
lab_only = pytest.mark.skipif(NO_LAB is not None, reason=str(NO_LAB))

QUORUMTOOL = """\
Quorum information
------------------
Date:             Thu Dec  3 11:32:07 2026
Quorum provider:  corosync_votequorum
Nodes:            3
Node ID:          2
Ring ID:          1.9
Quorate:          No

Votequorum information
----------------------
Expected votes:   8
Highest expected: 8
Total votes:      3
Quorum:           5 Activity blocked
Flags:

Membership information
----------------------
    Nodeid      Votes Name
         1          1 h1
         2          1 h2 (local)
         3          1 h3
"""


def test_quorumtool_output_is_read() -> None:
    status = parse_quorumtool(QUORUMTOOL)
    assert status["quorate"] is False and status["blocked"] is True
    assert status["members"] == [1, 2, 3] and status["ring_id"] == "1.9"


def test_the_log_gives_each_hosts_membership_and_quorum_over_time() -> None:
    log = HostLog()
    log.feed(b"notice  [QUORUM] Members[3]: 1 2 3", 10)
    log.feed(b"notice  [QUORUM] This node is within the primary component and will", 11)
    log.feed(b"notice  [QUORUM] Members[2]: 1 2", 50)
    log.feed(b"notice  [QUORUM] This node is within the non-primary component and will NOT", 60)
    assert state_at(log, 20) == (frozenset({1, 2, 3}), True)
    assert state_at(log, 55) == (frozenset({1, 2}), True)
    assert first_state(log, 20, lambda m: 3 not in m, None) == 50
    assert first_state(log, 20, lambda m: 3 not in m, False) == 60
    assert first_state(log, 61, lambda m: 3 in m, None) is None


def test_bad_partition_input_exits_2() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "partition", "--nodes", "8", "--minority", "5"])
    assert result.exit_code == 2 and "--minority: 1..4" in result.stderr
    result = runner.invoke(app, ["bench", "--mode", "sim", "--nodes", "8", "--vs", "corosync"])
    assert result.exit_code == 2 and "--mode udp" in result.stderr
    result = runner.invoke(app, ["bench", "partition", "--tuning", "lease_ms=900"])
    assert result.exit_code == 2 and "defaults.lease_ms: must be below" in result.stderr


@lab_only
@pytest.mark.timeout(90)
def test_a_minority_cut_off_stops_the_majority_decides_and_the_heal_is_quick() -> None:
    """Eight hierclust agents on eight lab hosts (clocks days apart), three cut off: the three
    leave the primary component, the five keep it and hold the three unreachable, and after the
    heal everyone is one again, each within a few seconds (default timings)."""
    (run,), corosync = partition_runs(8, 3, prefix=TAG, subnet=SUBNET, after_s=20.0)
    print(json.dumps(run))
    assert corosync == []
    assert run["primary_side"] == "majority"
    detail = run["hierclust"]
    assert sorted(detail["stopped_ms"]) == ["cn1", "cn2", "cn3"], detail
    assert sorted(detail["decided_ms"]) == ["cn4", "cn5", "cn6", "cn7", "cn8"], detail
    assert len(detail["healed_ms"]) == 8, detail
    assert 0 < run["minority_stopped_ms"] < 3000, run
    assert 0 < run["majority_decided_ms"] < 6000, run
    assert 0 < run["heal_ms"] < 3000, run
    assert detail["in_primary_during_cut"] == ["cn4", "cn5", "cn6", "cn7", "cn8"]


@lab_only
@pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))
@pytest.mark.timeout(90)
def test_corosync_membership_follows_a_host_cut_off(tmp_path: Path) -> None:
    """Three Corosync instances on three lab hosts form one quorate membership; the third host
    cut off, both others deliver a membership without it and stay quorate (two votes of three),
    and the polled ``corosync-quorumtool`` says the same; the cut-off host loses quorum."""
    with netns_lab(TAG, 3, SUBNET) as lab, CorosyncLab(lab, tmp_path) as cs:
        cs.start()
        cs.wait_formed(timeout_s=40)
        assert cs.totem(0)["token"] >= 3000, "the default token (3000 ms, more with 3 nodes)"
        cut_ns = time.monotonic_ns()
        lab.cut([2])
        got = cs.wait_state([0, 1], lambda m: m == {1, 2}, True, cut_ns, 40, "dropped h3")
        alone = cs.wait_state([2], lambda m: m == {3}, False, cut_ns, 10, "h3 alone")
        assert set(got) == {0, 1}, cs.logs()
        assert set(alone) == {2}, cs.logs()
        for host in (0, 1):
            status = cs.status(host)
            assert status["quorate"] and sorted(status["members"]) == [1, 2], status
        status = cs.status(2)
        assert status["quorate"] is False and status["members"] == [3], status
        lab.heal()


def test_the_ratio_needs_every_survivor_notified_on_both_sides() -> None:
    from hierclust.cli.bench_corosync import corosync_ratios

    hier = [{"notify_max_ms": 500.0, "notified": 15, "survivors": 15}]
    coro = [{"notify_max_ms": 26000.0, "notified": 15, "survivors": 15}]
    assert corosync_ratios(hier, coro) == {"notify_max_ratio": 52.0}
    short = [{"notify_max_ms": 26000.0, "notified": 14, "survivors": 15}]
    got = corosync_ratios(hier, short)
    assert got["notify_max_ratio"] is None
    assert got["ratio_invalid"] == "corosync notified 14 of 15 survivors"


@lab_only
@pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))
@pytest.mark.timeout(120)
def test_a_host_lost_is_measured_on_both_sides() -> None:
    """``bench --vs corosync`` at three lab hosts: the same victim host on both sides, every
    survivor notified on each, Corosync no sooner than its token timeout, and the lab left
    empty (lab_kill_runs fails otherwise)."""
    from hierclust.bench.labkill import lab_kill_runs

    (hier,), (coro,) = lab_kill_runs(3, 3, "leaf", 1, 7, prefix=TAG, subnet=SUBNET, steady_s=1.0)
    print(json.dumps({"hierclust": hier, "corosync": coro}))
    assert hier["lab"]["victim_host"] == coro["corosync"]["victim_host"]
    assert hier["notified"] == hier["survivors"] == 2, hier
    assert coro["notified"] == coro["survivors"] == 2, coro
    assert hier["false_positives"] == coro["false_positives"] == 0
    token = coro["corosync"]["totem_ms"]["token"]
    assert coro["notify_max_ms"] >= token, "Corosync reacts after its token timeout, not before"
    assert 0 < hier["notify_max_ms"] < 3000 < coro["notify_max_ms"]
    assert all(
        s["quorate"] and s["members"] == 2 for s in coro["corosync"]["polled_after"].values()
    )
