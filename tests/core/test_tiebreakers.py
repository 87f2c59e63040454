"""Witness and disk tie-breakers: unit transcripts, then an even split decided in a 4-node group."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hierclust.core.disk import LeaseDisk, LeaseRecord
from hierclust.core.messages import TieRelease, TieRenew, TieRenewAck, TieVote, TieVoteResp
from hierclust.core.types import (
    ElectionStarted,
    LeaderChanged,
    Received,
    Send,
    SetTimer,
    TimerFired,
    VoteGranted,
)
from hierclust.core.witness import Witness
from tests.core.link import MS, Link, topo_toml


def replies(effects: Sequence[object]) -> dict[int, bool]:
    return {
        e.dst: e.msg.granted
        for e in effects
        if isinstance(e, Send) and isinstance(e.msg, TieVoteResp)
    }


def test_witness_grants_the_larger_side_first() -> None:
    w = Witness(0, window_ms=20)
    first = w.step(0, Received(5, TieVote(0, 3, 2, False)))
    assert [type(e) for e in first] == [SetTimer]
    w.step(1 * MS, Received(1, TieVote(0, 3, 1, False)))
    decided = w.step(20 * MS, TimerFired(("w", 0)))
    assert replies(decided) == {5: True, 1: False}


def test_witness_breaks_a_tie_by_lowest_node_id_and_votes_once_per_term() -> None:
    w = Witness(0, window_ms=20)
    w.step(0, Received(7, TieVote(0, 4, 2, False)))
    w.step(1 * MS, Received(2, TieVote(0, 4, 2, False)))
    assert replies(w.step(20 * MS, TimerFired(("w", 0)))) == {7: False, 2: True}
    assert replies(w.step(30 * MS, Received(7, TieVote(0, 4, 3, False)))) == {7: False}
    assert replies(w.step(31 * MS, Received(2, TieVote(0, 4, 2, False)))) == {2: True}


def test_witness_refuses_others_while_its_holder_renews() -> None:
    w = Witness(0, window_ms=20, hold_ms=800)
    w.step(0, Received(2, TieVote(0, 1, 2, False)))
    w.step(20 * MS, TimerFired(("w", 0)))
    ok = w.step(500 * MS, Received(2, TieRenew(0, 1, 123)))
    assert ok == [Send(2, TieRenewAck(0, 1, 123, True))]
    assert replies(w.step(900 * MS, Received(3, TieVote(0, 2, 2, False)))) == {3: False}
    assert replies(w.step(901 * MS, Received(3, TieVote(0, 2, 2, True)))) == {3: False}
    # once the holder stops renewing, a higher term may have it
    w.step(1400 * MS, Received(3, TieVote(0, 2, 2, False)))
    assert replies(w.step(1420 * MS, TimerFired(("w", 0)))) == {3: True}


def test_witness_released_by_its_holder_grants_the_successor_at_once() -> None:
    w = Witness(0, window_ms=20, hold_ms=800)
    w.step(0, Received(2, TieVote(0, 1, 2, False)))
    w.step(20 * MS, TimerFired(("w", 0)))
    w.step(500 * MS, Received(2, TieRenew(0, 1, 1)))
    # a release from anyone but the holder, or for another term, changes nothing
    assert w.step(501 * MS, Received(3, TieRelease(0, 1))) == []
    assert w.step(502 * MS, Received(2, TieRelease(0, 0))) == []
    assert replies(w.step(503 * MS, Received(3, TieVote(0, 2, 2, False)))) == {3: False}
    # the holder handed its group over: the successor gets the vote within the hold
    w.step(510 * MS, Received(2, TieRelease(0, 1)))
    assert w.durable() == (1, -1)
    w.step(511 * MS, Received(3, TieVote(0, 2, 2, False)))
    assert replies(w.step(531 * MS, TimerFired(("w", 0)))) == {3: True}
    # a renewal of the old holder still in flight finds no hold, and term 1 is never granted again
    assert w.step(532 * MS, Received(2, TieRenew(0, 1, 2))) == [
        Send(2, TieRenewAck(0, 1, 2, False))
    ]
    assert replies(w.step(533 * MS, Received(4, TieVote(0, 1, 2, False)))) == {4: False}


def test_witness_restored_from_its_file_never_grants_its_term_again_nor_a_lower_one() -> None:
    w = Witness(0, window_ms=20, hold_ms=800)
    w.restore(10_000 * MS, 5, 2)  # term 5 went to node 2 before the restart
    assert replies(w.step(10_001 * MS, Received(3, TieVote(0, 5, 2, False)))) == {3: False}
    assert replies(w.step(10_002 * MS, Received(3, TieVote(0, 4, 2, False)))) == {3: False}
    assert replies(w.step(10_003 * MS, Received(2, TieVote(0, 5, 2, False)))) == {2: True}
    # the holder keeps its hold for hold_ms from the restart: it may have renewed just before
    assert replies(w.step(10_799 * MS, Received(3, TieVote(0, 6, 2, False)))) == {3: False}
    assert w.step(10_800 * MS, Received(3, TieVote(0, 6, 2, False))) == [
        SetTimer(("w", 0), 10_820 * MS)
    ]
    assert replies(w.step(10_820 * MS, TimerFired(("w", 0)))) == {3: True}
    assert w.durable() == (6, 3)


def test_witness_rolled_back_after_a_failed_write_answers_nothing_from_memory() -> None:
    w = Witness(0, window_ms=20)
    saved = w.saved()
    w.step(0, Received(2, TieVote(0, 3, 2, False)))
    assert replies(w.step(20 * MS, TimerFired(("w", 0)))) == {2: True}
    assert w.durable() == (3, 2)  # the host could not write this: it rolls back, sends nothing
    w.rollback(saved)
    assert w.durable() == (0, -1)
    # the same candidate asks again: no grant from memory, a new round (a new write) instead
    again = w.step(30 * MS, Received(2, TieVote(0, 3, 2, False)))
    assert again == [SetTimer(("w", 0), 50 * MS)]
    # a renewal that would adopt a leader rolls back the same way
    saved = w.saved()
    assert w.step(31 * MS, Received(4, TieRenew(0, 7, 1))) == [Send(4, TieRenewAck(0, 7, 1, True))]
    assert w.durable() == (7, 4)
    w.rollback(saved)
    assert w.durable() == (0, -1)
    assert replies(w.step(50 * MS, TimerFired(("w", 0)))) == {2: True}


def test_disk_lease_is_first_come_first_served_and_fenced_by_term() -> None:
    d = LeaseDisk(0, hold_ms=800)
    assert replies(d.step(0, Received(2, TieVote(0, 1, 2, False)))) == {2: True}
    assert replies(d.step(1 * MS, Received(3, TieVote(0, 2, 2, False)))) == {3: False}
    assert d.step(500 * MS, Received(2, TieRenew(0, 1, 9))) == [Send(2, TieRenewAck(0, 1, 9, True))]
    assert d.step(501 * MS, Received(3, TieRenew(0, 2, 9))) == [
        Send(3, TieRenewAck(0, 2, 9, False))
    ]
    # node 3 has seen the renewed record stand still since 501 ms of its clock
    assert replies(d.step(1301 * MS, Received(3, TieVote(0, 1, 2, False)))) == {3: False}  # stale
    assert replies(d.step(1302 * MS, Received(3, TieVote(0, 2, 2, False)))) == {3: True}
    assert d.record == LeaseRecord(term=2, holder=3, renewals=3)


def test_disk_lease_released_by_its_holder_is_free_at_once() -> None:
    d = LeaseDisk(0, hold_ms=800)
    assert replies(d.step(0, Received(2, TieVote(0, 1, 2, False)))) == {2: True}
    assert d.step(1 * MS, Received(3, TieRelease(0, 1))) == []  # not the holder: nothing
    assert d.record == LeaseRecord(term=1, holder=2, renewals=1)
    assert d.step(2 * MS, Received(2, TieRelease(0, 1))) == []
    assert d.record == LeaseRecord(term=1, holder=-1, renewals=2)
    assert replies(d.step(3 * MS, Received(3, TieVote(0, 2, 2, False)))) == {3: True}
    assert d.record == LeaseRecord(term=2, holder=3, renewals=3)
    assert d.step(4 * MS, Received(2, TieRenew(0, 1, 5))) == [Send(2, TieRenewAck(0, 1, 5, False))]


def test_disk_lease_holds_no_time_a_reader_waits_for_the_counter_to_stand_still() -> None:
    d = LeaseDisk(0, hold_ms=800)
    assert replies(d.step(5 * MS, Received(1, TieVote(0, 4, 2, False)))) == {1: True}
    assert d.record == LeaseRecord(term=4, holder=1, renewals=1)
    # node 2's clock has nothing to do with node 1's: only its own intervals count
    t = 10**15
    assert replies(d.step(t, Received(2, TieVote(0, 5, 2, True)))) == {2: False}  # first look
    assert replies(d.step(t + 799 * MS, Received(2, TieVote(0, 5, 2, False)))) == {2: False}
    assert replies(d.step(t + 800 * MS, Received(2, TieVote(0, 5, 2, True)))) == {2: True}
    assert d.record == LeaseRecord(term=4, holder=1, renewals=1)  # a pre-vote writes nothing
    assert replies(d.step(t + 801 * MS, Received(2, TieVote(0, 5, 2, False)))) == {2: True}
    assert d.record == LeaseRecord(term=5, holder=2, renewals=2)
    # the old holder is fenced out now, renewal or vote
    assert d.step(6 * MS, Received(1, TieRenew(0, 4, 6))) == [Send(1, TieRenewAck(0, 4, 6, False))]


def test_disk_lease_stays_with_a_holder_that_renews_however_slow_its_clock() -> None:
    d = LeaseDisk(0, hold_ms=800)
    d.step(0, Received(1, TieVote(0, 1, 2, False)))
    refused = 0
    for i in range(1, 100):  # 10 s: node 1 renews every 200 ms, node 2 asks every 100 ms
        if i % 2 == 0:
            # node 1's clock runs at a tenth of the true rate: the record has no use for it
            ack = d.step(i * 10 * MS, Received(1, TieRenew(0, 1, i)))
            assert ack == [Send(1, TieRenewAck(0, 1, i, True))]
        refused += replies(d.step(i * 100 * MS, Received(2, TieVote(0, 2, 2, False)))) == {2: False}
    assert refused == 99
    assert d.record == LeaseRecord(term=1, holder=1, renewals=50)
    # node 1 stops renewing (last at 9.8 s): node 2 gets it hold_ms after it saw that renewal
    assert replies(d.step(10_599 * MS, Received(2, TieVote(0, 2, 2, False)))) == {2: False}
    assert replies(d.step(10_600 * MS, Received(2, TieVote(0, 2, 2, False)))) == {2: True}
    assert d.holder == 2


def four_with(kind: str) -> Link:
    tb = (
        '{kind = "witness", address = "127.0.0.1:7999"}'
        if kind == "witness"
        else '{kind = "disk", path = "/shared/w4.lease"}'
    )
    topology = topo_toml(
        f'[cluster]\nname = "w4"\n[group.w4]\nnodes = "cn[1-4]"\ntiebreaker = {tb}\n'
    )
    link = Link(topology)
    link.add_tiebreaker(0, kind)
    link.start_all()
    link.run_until(2000 * MS)
    return link


@pytest.mark.parametrize("kind", ["witness", "disk"])
def test_even_split_keeps_the_leader_that_holds_the_tiebreaker(kind: str) -> None:
    link = four_with(kind)
    assert link.leaders(0) == [0]
    cut = link.now
    link.partition({0, 1}, {2, 3})
    for _ in range(3000):
        link.run_for(1 * MS)
        assert link.lease_holders(0) == [0]
    assert not link.of(ElectionStarted, since=cut)  # the other half cannot even pass pre-vote
    assert not link.of(VoteGranted, since=cut)
    link.heal()
    link.run_for(1000 * MS)
    assert [n.leader_of(0) for n in link.nodes.values()] == [0, 0, 0, 0]


@pytest.mark.parametrize("kind", ["witness", "disk"])
def test_even_split_after_a_leader_crash_goes_to_the_side_the_tiebreaker_picks(kind: str) -> None:
    link = four_with(kind)
    cut = link.now
    link.crash(0)
    link.partition({1}, {2, 3})
    for _ in range(3000):
        link.run_for(1 * MS)
        assert len(link.lease_holders(0)) <= 1
    assert link.leaders(0) == [2]
    assert [r.rank for r in link.of(LeaderChanged, since=cut) if r.event.leader == 2] == [2, 3]
    assert not link.nodes[1].quorate(0, link.now)
