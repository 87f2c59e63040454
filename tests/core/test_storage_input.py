"""The core's side of a storage fault: after ``Storage(durable=False)`` a node refuses every vote
request (an open refusal, no state change, no Persist) and stands for no election, so its group
elects someone else; after ``Storage(durable=True)`` it votes and stands again. Virtual time."""

from __future__ import annotations

from hierclust.core.messages import PreVote, RequestVote, VoteResp
from hierclust.core.types import ElectionStarted, LeaderChanged, Persist, Received, Send, Storage
from tests.core.link import MS, Link, topo

S = 1_000 * MS


def sent_by(link: Link, rank: int, kind: type, since: int) -> list[object]:
    return [
        r.event.msg
        for r in link.effects
        if r.rank == rank and r.at >= since and isinstance(r.event, Send)
        and isinstance(r.event.msg, kind)
    ]  # fmt: skip


def group_leader(link: Link) -> int:
    leaders = link.leaders(0)
    assert len(leaders) == 1, leaders
    return leaders[0]


def test_a_node_that_cannot_persist_neither_votes_nor_stands_and_does_both_again_after() -> None:
    link = Link(topo(5, 5))
    link.start_all()
    link.run_for(3 * S)
    assert group_leader(link) == 0
    victim = 1  # the lowest rank after the leader: it would stand first

    t_fault = link.now
    link.deliver(victim, Storage(False))
    assert not link.nodes[victim].can_persist()
    # a vote request straight to it: refused openly, nothing to persist
    term = link.nodes[victim].term(0)
    out = link.deliver(victim, Received(3, RequestVote(0, term + 5, 3)))
    assert [type(e) for e in out] == [Send]
    answer = out[0].msg  # type: ignore[union-attr]
    assert isinstance(answer, VoteResp) and not answer.granted
    assert link.nodes[victim].term(0) == term and link.nodes[victim].voted_for(0) != 3
    assert not any(isinstance(e, Persist) for e in out)

    link.crash(0)
    link.run_for(5 * S)
    leader = group_leader(link)
    assert leader not in (0, victim), "the group elects among the nodes that can persist"
    assert not sent_by(link, victim, PreVote, t_fault), "it stood for election"
    assert not sent_by(link, victim, RequestVote, t_fault)
    grants = [m for m in sent_by(link, victim, VoteResp, t_fault) if m.granted]  # type: ignore[attr-defined]
    assert not grants, "it granted a vote"
    assert not [r for r in link.of(ElectionStarted, since=t_fault) if r.rank == victim]
    # it is a member all along: it follows the new leader
    assert link.nodes[victim].leader_of(0) == leader

    link.deliver(victim, Storage(True))
    assert link.nodes[victim].can_persist()
    t_back = link.now
    link.crash(leader)
    link.run_for(5 * S)
    assert group_leader(link) == victim, "after the fault it stands (first, lowest rank) and wins"
    assert sent_by(link, victim, RequestVote, t_back)
    assert [r for r in link.of(LeaderChanged, since=t_back) if r.rank == victim]


def test_a_candidacy_in_progress_is_given_up_when_the_disk_fails() -> None:
    link = Link(topo(5, 5))
    link.start_all()
    link.run_for(3 * S)
    victim = 1
    # the victim's vote requests get lost, so it stays a candidate until we answer for the voters
    link.drop_if = lambda src, dst, msg: src == victim and isinstance(msg, RequestVote)
    link.crash(0)
    while not [r for r in link.of(ElectionStarted) if r.rank == victim]:
        link.run_for(1 * MS)
        assert link.now < 10 * S, "the victim never stood"
    term = link.nodes[victim].term(0)
    link.deliver(victim, Storage(False))
    # grants for that term arrive after the fault began: they no longer make it leader (its own
    # vote in the term may not be on disk)
    for voter in (2, 3, 4):
        link.deliver(victim, Received(voter, VoteResp(0, term, True, voter, -1)))
    assert not link.nodes[victim].is_leader(0)
    link.drop_if = None
    link.run_for(5 * S)
    assert group_leader(link) not in (0, victim)
