"""The chaos checker on made-up histories: each property must be able to fail.

Instants are milliseconds on the box's clock (``at_ns``), as the runner hands them over after
taking each host's clock offset off. Ranks 0-1 live on host 0, 2-3 on host 1, 4-5 on host 2.
"""

from __future__ import annotations

from typing import Any

import pytest

from hierclust.bench.chaos_check import History, Model, check
from hierclust.bench.chaos_plan import DELAYS_MS, KINDS, GroupInfo, layout, plan

MS = 1_000_000
MODEL = Model(
    rank_host={0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2},
    node_hosts=[0, 1, 2],
    primary_window_ns=2_000 * MS,
)


def lease(t_ms: int, rank: int, group: int, term: int, held: bool, until_ms: int) -> dict[str, Any]:
    return {
        "at_ns": t_ms * MS,
        "event": "LeaseChanged",
        "rank": rank,
        "group": group,
        "term": term,
        "held": held,
        "until_at_ns": until_ms * MS,
    }


def primary(t_ms: int, rank: int, on: bool, until_ms: int | None = None) -> dict[str, Any]:
    return {
        "at_ns": t_ms * MS,
        "event": "PrimaryChanged",
        "rank": rank,
        "in_primary": on,
        "until_at_ns": None if until_ms is None else until_ms * MS,
    }


def learned(t_ms: int, rank: int, kind: str, node: int, incarnation: int) -> dict[str, Any]:
    return {
        "at_ns": t_ms * MS,
        "event": "NoticeLearned",
        "rank": rank,
        "notice": {"kind": kind, "node": node, "incarnation": incarnation},
    }


def history(records: list[dict[str, Any]], **kw: Any) -> History:
    return History(records=records, start_ns=0, end_ns=60_000 * MS, **kw)


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return [f["kind"] for f in found]


def test_leases_one_after_the_other_are_clean() -> None:
    records = [
        lease(1000, 0, 3, 1, True, 1600),
        lease(1200, 0, 3, 1, True, 1800),  # a renewal report
        lease(2000, 0, 3, 1, False, 1800),  # ran out
        lease(2600, 2, 3, 2, True, 3200),
    ]
    assert check(history(records), MODEL)["violations"] == []


def test_two_leaders_with_overlapping_leases_are_a_violation() -> None:
    records = [
        lease(1000, 0, 3, 1, True, 1600),
        lease(1200, 0, 3, 1, True, 1800),
        lease(1700, 2, 3, 2, True, 2300),  # 100 ms before rank 0's lease ends
    ]
    found = check(history(records), MODEL)["violations"]
    assert kinds(found) == ["two-leases"]
    assert found[0]["ranks"] == [0, 2] and found[0]["t_s"] == 1.7


def test_a_killed_leaders_lease_still_counts_until_it_ends() -> None:
    """A kill -9 of its host does not end the lease early: it stands until its end."""
    records = [lease(1000, 0, 3, 1, True, 1800), lease(1500, 2, 3, 2, True, 2100)]
    found = check(history(records, deaths={0: [1100 * MS]}), MODEL)["violations"]
    assert kinds(found) == ["two-leases"]
    # the same take after the end of the dead leader's lease is fine
    records[1] = lease(1900, 2, 3, 2, True, 2500)
    assert check(history(records, deaths={0: [1100 * MS]}), MODEL)["violations"] == []


def test_a_step_down_ends_the_lease_at_that_instant() -> None:
    records = [
        lease(1000, 0, 3, 1, True, 1800),
        lease(1300, 0, 3, 1, False, 1800),  # a higher term: it stops at once
        lease(1400, 2, 3, 2, True, 2000),
    ]
    assert check(history(records), MODEL)["violations"] == []


def test_a_token_that_goes_down_is_a_violation() -> None:
    records = [
        lease(1000, 0, 3, 5, True, 1600),
        lease(1700, 0, 3, 5, False, 1600),
        lease(2500, 2, 3, 4, True, 3100),  # a later lease under a smaller term
    ]
    assert kinds(check(history(records), MODEL)["violations"]) == ["fencing-token"]
    records[2] = lease(2500, 2, 3, 5, True, 3100)  # the same term, another holder
    assert kinds(check(history(records), MODEL)["violations"]) == ["fencing-token"]


def test_a_term_seen_going_down_within_a_life_is_a_violation() -> None:
    def leader(t: int, term: int) -> dict[str, Any]:
        return {
            "at_ns": t * MS,
            "event": "LeaderChanged",
            "rank": 4,
            "group": 1,
            "leader": 0,
            "term": term,
        }

    assert kinds(check(history([leader(100, 7), leader(900, 6)]), MODEL)["violations"]) == [
        "term-down"
    ]
    booted = {"at_ns": 500 * MS, "event": "Booted", "rank": 4, "incarnation": 2}
    found = check(history([leader(100, 7), booted, leader(900, 6)]), MODEL)["violations"]
    assert found == [], "a new life starts over"


def test_two_primary_components_are_a_violation() -> None:
    cut = frozenset({(0, 1), (1, 0), (0, 2), (2, 0)})  # host 0 alone
    records = [primary(100, 0, True), primary(100, 2, True), primary(100, 4, True)]
    found = check(history(records, cuts=[(5_000 * MS, cut)]), MODEL)["violations"]
    assert kinds(found) == ["two-primaries", "two-primaries"]
    assert {tuple(f["hosts"]) for f in found} == {(0, 1), (0, 2)}
    assert found[0]["t_s"] == 7.0, "the window after the cut is allowed"


def test_a_primary_that_leaves_within_the_window_is_fine() -> None:
    cut = frozenset({(0, 1), (1, 0), (0, 2), (2, 0)})
    records = [
        primary(100, 0, True),
        primary(100, 2, True),
        primary(100, 4, True),
        primary(7_500, 0, False, until_ms=6_500),  # its timer ran late; the deadline counts
    ]
    assert check(history(records, cuts=[(5_000 * MS, cut)]), MODEL)["violations"] == []
    # healed before the window ran out: nobody was cut apart for long
    heal = (6_000 * MS, frozenset[tuple[int, int]]())
    records[-1] = primary(30_000, 0, False)
    cuts = [(5_000 * MS, cut), heal]
    assert check(history(records, cuts=cuts), MODEL)["violations"] == []


def test_a_one_way_cut_leaves_hosts_apart_and_a_partial_cut_does_not() -> None:
    one_way = frozenset({(0, 1), (0, 2)})
    records = [primary(100, 0, True), primary(100, 2, True)]
    found = check(history(records, cuts=[(1_000 * MS, one_way)]), MODEL)["violations"]
    assert kinds(found) == ["two-primaries"]
    partial = frozenset({(0, 1), (1, 0)})  # 0 and 1 still meet through 2
    assert check(history(records, cuts=[(1_000 * MS, partial)]), MODEL)["violations"] == []


def kill_fault(victim: int, kill_ms: int, back_ms: int, bound_ms: int) -> dict[str, Any]:
    return {
        "index": 1,
        "kind": "kill-leader",
        "victims": [[victim, kill_ms * MS, back_ms * MS]],
        "faulted_ranks": [victim],
        "bound_ns": bound_ms * MS,
        "start_ns": kill_ms * MS,
        "end_ns": back_ms * MS,
    }


def observers_primary() -> list[dict[str, Any]]:
    return [primary(0, r, True) for r in range(6)]


def test_a_missed_failure_notice_is_a_liveness_failure() -> None:
    booted = {"at_ns": 0, "event": "Booted", "rank": 5, "incarnation": 3}
    told = [learned(2_000, r, "failed", 5, 3) for r in range(5) if r != 1]
    records = [booted, *observers_primary(), *told]
    faults = [kill_fault(5, 1_000, 20_000, 5_000)]
    found = check(history(records, faults=faults), MODEL)["liveness_failures"]
    assert kinds(found) == ["missed-notice"] and found[0]["ranks"] == [1, 5]
    # told too late, or about an older incarnation: still missed
    late = records + [learned(6_500, 1, "failed", 5, 3)]
    assert len(check(history(late, faults=faults), MODEL)["liveness_failures"]) == 1
    old = records + [learned(2_000, 1, "failed", 5, 2)]
    assert len(check(history(old, faults=faults), MODEL)["liveness_failures"]) == 1
    # told in time, or holding the victim's subtree cut off: fine
    ok = records + [learned(5_900, 1, "failed", 5, 3)]
    assert check(history(ok, faults=faults), MODEL)["liveness_failures"] == []
    cut = {"at_ns": 3_000 * MS, "event": "SubtreeUnreachable", "rank": 1, "first": 4, "count": 2}
    assert check(history(records + [cut], faults=faults), MODEL)["liveness_failures"] == []
    # back before the bound: nobody had to hear of it
    quick = [kill_fault(5, 1_000, 4_000, 5_000)]
    assert check(history(records, faults=quick), MODEL)["liveness_failures"] == []


def test_a_failed_event_is_a_crash() -> None:
    failed = {"at_ns": 10 * MS, "event": "Failed", "rank": 2, "node": "en01", "reason": "boom"}
    found = check(history([failed]), MODEL)["crashes"]
    assert kinds(found) == ["crash"] and "boom" in found[0]["detail"]


GROUPS = [GroupInfo("company", 2), GroupInfo("uk", 1), GroupInfo("scotland", 0)]


def test_the_schedule_is_seeded_bounded_and_keeps_its_assumptions() -> None:
    lay = layout(4, 25)
    first = plan(7, 30, lay, GROUPS, 600, 12.0)
    assert [f.as_json() for f in first] == [f.as_json() for f in plan(7, 30, lay, GROUPS, 600, 12)]
    assert [f.as_json() for f in first] != [f.as_json() for f in plan(8, 30, lay, GROUPS, 600, 12)]
    assert sum(f.duration_s + f.quiet_s for f in first) >= 30 * 60
    assert {f.kind for f in first} == set(KINDS)
    stepped_back: set[int] = set()
    for f in first:
        assert 0 <= f.duration_s <= 16.0 and 2.0 <= f.quiet_s <= 5.0, f.describe()
        if f.kind == "pause-host":
            assert f.duration_s >= 0.9, "longer than a lease"
        if f.kind in ("kill-leader", "crash-host", "cut-site"):
            assert f.duration_s >= 12.0, "held past the detection bound"
        if f.kind == "wall-step" and f.params["step_ms"] < 0:
            stepped_back.add(f.params["host"])
        if f.kind == "crash-host" and f.params["wipe"]:
            assert f.params["host"] not in stepped_back
        if f.kind == "loss":
            assert f.params["delay_ms"] in DELAYS_MS, "frames let through are held too"
            assert f.params["jitter_ms"] == f.params["delay_ms"] // 4
        if f.kind == "cut-minority":
            assert 2 * len(f.params["side"]) < lay.node_hosts
        if f.kind == "cut-majority":
            assert 2 * len(f.params["side"]) > lay.node_hosts
    assert any(
        f.kind == "wall-step" and f.params["host"] == lay.witness_host and f.params["step_ms"] < 0
        for f in plan(1, 30, lay, GROUPS, 600, 12)
    ), "the witness host's clock is stepped back too (its incarnation survives it)"


@pytest.mark.parametrize(
    ("sites", "nodes", "hosts", "message"),
    [(1, 25, None, "--sites"), (4, 2, None, "--nodes-per-site"), (4, 8, 9, "--hosts-per-site")],
)
def test_bad_sizes_name_the_option(sites: int, nodes: int, hosts: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        layout(sites, nodes, hosts)


def test_the_command_refuses_bad_options_and_a_box_without_namespaces(monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from hierclust.cli import app
    from hierclust.runtime import netns

    runner = CliRunner()
    done = runner.invoke(app, ["chaos", "--sites", "9", "--json"])
    assert done.exit_code == 2 and "--sites 9" in done.output
    done = runner.invoke(app, ["chaos", "--minutes", "0"])
    assert done.exit_code == 2 and "--minutes" in done.output
    monkeypatch.setattr(netns, "unavailable", lambda: "network namespaces need root")
    done = runner.invoke(app, ["chaos", "--minutes", "1", "--json"])
    assert done.exit_code == 2
    assert "cannot run here: network namespaces need root" in done.output
