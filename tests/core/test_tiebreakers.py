"""Witness and disk tie-breakers: unit transcripts, then an even split decided in a 4-node group."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hierclust.core.disk import LeaseDisk
from hierclust.core.messages import TieRenew, TieRenewAck, TieVote, TieVoteResp
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


def test_disk_lease_is_first_come_first_served_and_fenced_by_term() -> None:
    d = LeaseDisk(0, hold_ms=800)
    assert replies(d.step(0, Received(2, TieVote(0, 1, 2, False)))) == {2: True}
    assert replies(d.step(1 * MS, Received(3, TieVote(0, 2, 2, False)))) == {3: False}
    assert d.step(500 * MS, Received(2, TieRenew(0, 1, 9))) == [Send(2, TieRenewAck(0, 1, 9, True))]
    assert d.step(501 * MS, Received(3, TieRenew(0, 2, 9))) == [
        Send(3, TieRenewAck(0, 2, 9, False))
    ]
    assert replies(d.step(1400 * MS, Received(3, TieVote(0, 1, 2, False)))) == {3: False}  # stale
    assert replies(d.step(1401 * MS, Received(3, TieVote(0, 2, 2, False)))) == {3: True}


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
