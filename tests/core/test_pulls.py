"""Digest repair by pull (``Heartbeats._pull``), in virtual time: a member that holds more notices
than its leader but lacks one still pulls it, and pulls that teach nothing back off.

Why: notices are forgotten ``notice_ttl_ms`` after their detection as each node dates them, so
two nodes forget one at slightly different times, and a node refuses a notice it forgot. A member
could then hold more notices than its leader and still lack one; members pulled only from a
leader holding at least as many, so the missing one (in a 30-minute nemesis campaign: the notice
that the member itself had failed, which it must hear to come back) never arrived. And a pull is
answered with everything the peer holds: repeated every two heartbeats against a mismatch that no
pull mends, with hundreds of notices held, it loaded every agent until loops lagged and members
were declared failed, which made more notices."""

from __future__ import annotations

import random
from typing import Any

from hierclust.core.flood import MAX_PULL_BATCHES
from hierclust.core.messages import MAX_NOTICES_PER_MESSAGE, Notices, Pull
from hierclust.core.node import Node
from hierclust.core.types import Alive, Failure, Notice, NoticeLearned, Received, Send, Start
from tests.core.link import MS, Link, three_slot_root, topo

S = 1_000 * MS
LEADER, MEMBER = 0, 3


def settled(nodes: int = 5) -> Link:
    link = Link(topo(nodes, 5))
    link.start_all()
    link.run_for(3 * S)
    assert link.leaders(0) == [LEADER]
    return link


def stale(node: int) -> Failure:
    """A failure notice of an incarnation nobody runs any more: it changes no view."""
    return Failure(node, 0, 0, LEADER, 1)


def hold_extras(link: Link) -> None:
    """The member holds two notices its leader will never take (as if the leader had forgotten
    them already): everything the member sends the leader with notices in it is lost."""

    def drop(src: int, dst: int, msg: Any) -> bool:
        return src == MEMBER and dst == LEADER and isinstance(msg, Notices)

    link.drop_if = drop
    link.deliver(MEMBER, Received(1, Notices(0, 0, (stale(2), stale(4)))))


def only_pulls_reach(link: Link) -> None:
    """From now on the leader's flood to the member is lost too: only answers to its pulls
    (``seq`` 0) get through."""
    inner = link.drop_if
    assert inner is not None
    link.drop_if = lambda src, dst, msg: (
        inner(src, dst, msg)
        or (src == LEADER and dst == MEMBER and isinstance(msg, Notices) and msg.seq > 0)
    )


def only_pulls_push(link: Link, extras: tuple[Notice, ...]) -> None:
    """From now on the leader's ``extras`` stay its own (every Notices datagram holding one is
    lost), and the member's notices reach the leader only along with its pulls (``seq`` 0)."""

    def drop(src: int, dst: int, msg: Any) -> bool:
        if isinstance(msg, Notices) and any(n in extras for n in msg.notices):
            return True
        return src == MEMBER and dst == LEADER and isinstance(msg, Notices) and msg.seq > 0

    link.drop_if = drop


def assert_pushed(link: Link, news: Notice) -> None:
    """The leader holds more notices than the member, yet within two seconds it holds the
    member's ``news`` too (which reaches it only along with the member's pulls)."""
    assert link.nodes[LEADER].digest()[0] > link.nodes[MEMBER].digest()[0]
    link.run_for(2 * S)
    assert link.nodes[LEADER].has_notice(news), "the member's notice never reached its leader"


def pulls(link: Link, since: int) -> list[int]:
    return [
        r.at
        for r in link.effects
        if r.rank == MEMBER and r.at >= since and isinstance(r.event, Send)
        and isinstance(r.event.msg, Pull)
    ]  # fmt: skip


def test_a_member_holding_more_notices_still_pulls_the_one_it_lacks_and_comes_back() -> None:
    link = settled()
    hold_extras(link)
    before = link.nodes[MEMBER].inc
    # the leader learns that the member failed (from elsewhere); its flood to the member is lost,
    # only answers to pulls (seq 0) get through
    only_pulls_reach(link)
    failed = Failure(MEMBER, before, 0, 2, link.nodes[LEADER].term(0))
    link.deliver(LEADER, Received(2, Notices(0, 0, (failed,))))
    assert link.nodes[LEADER].digest()[0] < link.nodes[MEMBER].digest()[0]
    t = link.now
    link.run_for(2 * S)
    assert pulls(link, t), "the member never pulled: its count was the higher"
    assert link.nodes[MEMBER].has_notice(failed)
    assert link.nodes[MEMBER].inc > before, "it heard it had failed and came back anew"


def test_pulls_that_teach_nothing_back_off_to_64_heartbeats() -> None:
    link = settled()
    heartbeat = link.topology.by_index[0].tuning.heartbeat_ms * MS
    hold_extras(link)  # a mismatch no pull can mend
    t = link.now
    link.run_for(30 * S)
    times = pulls(link, t)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) >= 6, times
    assert all(g >= 2 * heartbeat for g in gaps), gaps
    assert all(b >= a for a, b in zip(gaps, gaps[1:], strict=False)), "the back-off never shrinks"
    assert max(gaps) <= 65 * heartbeat, gaps
    assert gaps[-1] >= 60 * heartbeat, "it reaches the cap"
    # without the back-off: one pull every two heartbeats, 150 in 30 s
    assert len(times) < 20, len(times)

    # a pull that teaches something starts the back-off over (the flood of the new notice to
    # the member is lost: only the answer to a pull brings it)
    only_pulls_reach(link)
    link.deliver(LEADER, Received(2, Notices(0, 0, (stale(1),))))
    t = link.now
    link.run_for(int(70 * heartbeat))
    later = pulls(link, t)
    assert later and link.nodes[MEMBER].has_notice(stale(1))
    assert len(later) >= 3 and later[1] - later[0] <= 3 * heartbeat, later


def answer(node: Node, puller: int) -> list[Notice]:
    out = node.step(node_now(node), Received(puller, Pull(0, 0, 0)))
    sent = [e.msg for e in out if isinstance(e, Send)]
    assert all(isinstance(m, Notices) for m in sent) and len(sent) <= MAX_PULL_BATCHES
    return [n for m in sent for n in m.notices]  # type: ignore[union-attr]


def node_now(node: Node) -> int:
    return 10 * S


def test_a_pull_answer_past_the_cap_holds_the_newest_notices_and_in_turn_every_other() -> None:
    topology = topo(64, 4)
    node = Node(topology, 0, rng=random.Random(5))
    node.step(0, Start())
    held: list[Notice] = [Alive(x, k) for k in range(2, 32) for x in range(1, 64)]  # 1,890
    for notice in held:
        node.step(node_now(node), Received(1, Notices(0, 0, (notice,))))
    assert node.digest()[0] >= len(held) > MAX_PULL_BATCHES * MAX_NOTICES_PER_MESSAGE
    newest = held[-MAX_NOTICES_PER_MESSAGE:]
    seen: set[Notice] = set()
    for _ in range(12):
        got = answer(node, 2)
        assert len(got) == MAX_PULL_BATCHES * MAX_NOTICES_PER_MESSAGE
        assert set(newest) <= set(got), "what a peer lacks is most often recent: always sent"
        seen.update(got)
    assert seen == set(held), f"{len(set(held) - seen)} notices never sent in 12 answers"


def test_a_slot_holder_declared_failed_is_told_by_its_leader_and_announces_its_return() -> None:
    link, root, leader, (holder, _) = three_slot_root()
    before = link.nodes[holder].inc
    # no notice reaches the holder any more (neither the flood nor answers to its pulls): only
    # its leader's acks can tell it
    link.drop_if = lambda src, dst, msg: dst == holder and isinstance(msg, Notices)
    failed = Failure(holder, before, root, leader, link.nodes[leader].term(root))
    link.deliver(leader, Received(2, Notices(root, 0, (failed,))))
    t = link.now
    link.run_for(1 * S)
    assert link.nodes[holder].inc > before, "the ack told the holder it had been declared failed"
    back = Alive(holder, link.nodes[holder].inc)
    link.run_for(1 * S)
    learned = [r.rank for r in link.of(NoticeLearned, since=t) if r.event.notice == back]
    assert leader in learned, "the holder leads its leaf group: it announced its return itself"


def test_a_member_pushes_its_newest_notices_to_a_leader_holding_more() -> None:
    # in the nemesis campaign: a node that led three tiers died; the new leader of its tier-1
    # group had detected the failure before it joined the tier above, so it never forwarded the
    # notice there, and that tier's leader (holding more notices) never pulled from it: the
    # rest of the cluster heard of the failure only 51-76 s later, when the victim came back.
    # A pull now carries the puller's newest notices along.
    link = settled()
    extras = (stale(2), stale(4))
    only_pulls_push(link, extras)
    link.deliver(LEADER, Received(1, Notices(0, 0, extras)))
    news = stale(1)
    link.deliver(MEMBER, Received(2, Notices(0, 0, (news,))))
    assert_pushed(link, news)


def test_a_new_notice_about_a_node_heard_of_long_ago_is_among_the_newest_pushed() -> None:
    # in the nemesis campaign: three nodes killed together with a three-tier leader had been
    # restarted before, so the nodes that detected their failure had heard of them long ago;
    # the new failure notices took the place of those nodes in the learning order, among the
    # oldest, and pushes (the newest notices only) left them out: two sites heard of the three
    # kills 76-91 s late. A node heard of anew now counts as heard of last.
    link = settled(25)
    extras = tuple(Alive(x, 0) for x in range(2, 25)) + (stale(2), stale(4))
    news = stale(1)
    only_pulls_push(link, extras)
    link.deliver(LEADER, Received(1, Notices(0, 0, extras)))
    link.deliver(MEMBER, Received(2, Notices(0, 0, (Alive(1, 0),))))  # heard of long ago
    others = tuple(stale(x) for x in range(5, 25))
    assert len(others) > MAX_NOTICES_PER_MESSAGE
    link.deliver(MEMBER, Received(2, Notices(0, 0, others)))
    link.deliver(MEMBER, Received(2, Notices(0, 0, (news,))))
    assert_pushed(link, news)


def test_the_push_holds_the_last_notice_of_each_node_heard_of_lately() -> None:
    # in the nemesis campaign a host crash killed nine nodes at once; the new leader of the
    # first one's leaf group pushed its newest notices whole node by whole node, and the older
    # notices of the other eight filled the push: the first failure reached two sites 51-76 s
    # late. The last notice of each node heard of lately comes first now.
    link = settled(25)
    extras = tuple(Failure(x, 0, 0, LEADER, 2) for x in range(2, 25))
    only_pulls_push(link, extras)
    link.deliver(LEADER, Received(1, Notices(0, 0, extras)))
    link.deliver(MEMBER, Received(2, Notices(0, 0, tuple(Alive(x, 0) for x in range(5, 15)))))
    news = stale(1)
    link.deliver(MEMBER, Received(2, Notices(0, 0, (news,))))
    link.deliver(MEMBER, Received(2, Notices(0, 0, tuple(stale(x) for x in range(5, 15)))))
    assert_pushed(link, news)
