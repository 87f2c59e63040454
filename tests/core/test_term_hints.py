"""Upper-tier terms reach a new slot holder from the voters it joins (virtual time).

Why: a slot's new holder takes the group's term from its child group's last leader, who may
have voted in a later term and gone before telling its members. Upper-tier terms fall back on
wall clocks only when nobody knows the last term, so a holder that joins while the group has no
leader asks the voters, and each that knows a term answers with it (``LeaderHint`` with no
leader). In a 30-minute nemesis campaign (seed 1) two slot holders, both new and both behind the
term a third had voted in, elected a leader under a lower term than an earlier lease's: its
fencing tokens went down."""

from __future__ import annotations

from typing import Any

from hierclust.core.messages import LeaderHint, PreVote, RequestVote, VoteResp
from hierclust.core.types import Received, Send, WallClock
from tests.core.link import MS, Link, three_slot_root, topo

S = 1_000 * MS


def test_a_new_slot_holder_learns_a_later_term_from_a_voter_and_stands_above_it() -> None:
    link, root, leader, (voter, other) = three_slot_root()

    # no election of the root group completes for now, and its leader is gone
    def no_root_votes(src: int, dst: int, msg: Any) -> bool:
        return isinstance(msg, (PreVote, RequestVote, VoteResp)) and msg.group == root

    link.drop_if = no_root_votes
    link.crash(leader)
    link.run_for(3 * S)
    assert link.nodes[voter].leader_of(root) is None
    # the voter grants a term far above the others' (a candidate whose wall clock ran ahead);
    # the grant never arrives, so nobody but the voter knows that term, as when a holder votes
    # and goes before telling its members
    later = link.nodes[voter].term(root) + 10**9
    slot_of_other = link.nodes[other].states[1].myslot  # type: ignore[union-attr]
    link.deliver(voter, Received(other, RequestVote(root, later, slot_of_other)))
    assert link.nodes[voter].term(root) == later

    # the other holder's child group gets a new leader, who joins the root group with the term
    # its members knew; the voter answers with the later one
    child = link.topology.leaf_of(other).index
    link.crash(other)
    newcomer = -1
    while newcomer < 0:
        link.run_for(50 * MS)
        led = [r for r in link.nodes if link.nodes[r].is_leader(child)]
        newcomer = led[0] if led else -1
        assert link.now < 30 * S, "the child group never re-elected"
    link.run_for(1 * S)
    assert [
        r
        for r in link.effects
        if r.rank == voter and isinstance(r.event, Send) and r.event.dst == newcomer
        and r.event.msg == LeaderHint(root, -1, later)
    ], "the voter told the newcomer the term it knows"  # fmt: skip
    assert link.nodes[newcomer].term(root) >= later

    # elections resume without the voter (cut off from all but its own leaf group, which it
    # keeps leading): the two others elect, and their leader's term (the fencing token) is
    # above the one the voter granted, which a holder might have leased under
    link.drop_if = None
    own = set(link.topology.members(link.topology.leaf_of(voter)))
    link.partition(own, [r for r in link.nodes if r not in own])
    link.run_for(5 * S)
    leaders = [r for r in link.leaders(root) if r != voter]
    assert len(leaders) == 1 and link.nodes[leaders[0]].term(root) > later, [
        (r, link.nodes[r].term(root)) for r in link.nodes
    ]


def test_a_node_that_leads_two_tiers_anew_stands_above_the_terms_its_leaders_told_it_of() -> None:
    # in the nemesis campaign (run of 40973c2, seed 1): a node took over its leaf group and
    # tier-1 group (england) from a leader who also held england's slot in uk, then joined uk,
    # whose other holder was new too: nobody it could ask knew uk's term, and its wall clock
    # was 42 s behind the last term's, so uk's fencing tokens went down. Acks now tell of the
    # highest term above the leaves that the leader knows, not only the parent group's.
    link = Link(topo(27, 3))
    link.start_all()
    link.run_for(5 * S)
    root = link.topology.root.index
    (boss,) = link.leaders(root)
    holder = next(h for h in link.nodes[boss].slot_holders(root) if h not in (boss, -1))
    leaf = link.topology.leaf_of(holder)
    heir = min(r for r in link.topology.members(leaf) if r != holder)
    assert len(link.nodes[holder].groups()) == 3, "the holder leads its leaf and tier-1 groups"
    last = link.nodes[holder].term(root)
    link.deliver(heir, WallClock(-3_600 * S))  # its wall clock an hour behind
    link.run_for(1 * S)  # its leader's acks arrive

    tier1 = link.nodes[holder].groups()[1]

    # from now on nothing of the root group reaches the heir, or leaves it, and only the heir
    # stands in the tier-1 group
    def no_root(src: int, dst: int, msg: Any) -> bool:
        group = getattr(msg, "group", None)
        if group == tier1 and src != heir and isinstance(msg, (PreVote, RequestVote)):
            return True
        return group == root and heir in (src, dst)

    link.drop_if = no_root
    link.crash(holder)
    t = link.now
    while root not in link.nodes[heir].groups():
        link.run_for(50 * MS)
        assert link.now < t + 20 * S, "the heir never took the root slot"
    assert link.nodes[heir].term(root) >= last
    link.run_for(5 * S)
    asked = [
        r.event.msg.term
        for r in link.effects
        if r.rank == heir and r.at >= t and isinstance(r.event, Send)
        and isinstance(r.event.msg, PreVote) and r.event.msg.group == root
    ]  # fmt: skip
    assert asked and min(asked) > last, (last, asked)


def test_a_candidate_refused_a_pre_vote_by_a_voter_with_a_later_term_stands_above_it() -> None:
    # a holder whose wall clock lags stands in terms below the group's last one; a voter that
    # knows that term refuses its pre-votes, and the candidate used to take the voter's term
    # only along with a leader's name: while that voter was needed for a majority and sent no
    # hint, nobody won until the candidate's wall clock caught up. A refusal now hands the
    # candidate the voter's term, and it stands above it in its next round.
    link, root, leader, (voter, other) = three_slot_root()

    # the voter cannot stand itself and tells nobody of its term unasked (its requests and
    # hints are lost: only its answers arrive), the slot of the leader's group stays empty,
    # and no vote reaches the root group for now
    def voter_mute(src: int, dst: int, msg: Any) -> bool:
        mute = (PreVote, RequestVote, LeaderHint)
        return src == voter and isinstance(msg, mute) and msg.group == root

    def no_root_votes(src: int, dst: int, msg: Any) -> bool:
        return isinstance(msg, (PreVote, RequestVote, VoteResp)) and msg.group == root

    link.drop_if = no_root_votes
    for rank in link.topology.members(link.topology.leaf_of(leader)):
        link.crash(rank)  # the leader's whole leaf group: its slot stays empty
    link.run_for(3 * S)
    # the voter alone knows a term a day above the other's wall clock (granted to a
    # candidate that went away)
    later = link.nodes[voter].term(root) + 86_400_000
    slot = link.nodes[other].states[1].myslot  # type: ignore[union-attr]
    link.deliver(voter, Received(leader, RequestVote(root, later, (slot + 1) % 3)))
    assert link.nodes[voter].term(root) == later > link.nodes[other].term(root)

    link.drop_if = voter_mute
    link.run_for(5 * S)
    assert link.leaders(root) == [other], "the other holder never won the root group"
    assert link.nodes[other].term(root) > later
