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

from typing import Any

from hierclust.core.messages import Notices, Pull
from hierclust.core.types import Failure, Received, Send
from tests.core.link import MS, Link, topo

S = 1_000 * MS
LEADER, MEMBER = 0, 3


def settled() -> Link:
    link = Link(topo(5, 5))
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
