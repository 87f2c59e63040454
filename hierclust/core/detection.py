"""Detection: suspect a silent member, probe it, confirm, declare the failure.

Theory of operation
-------------------
A leader scans its slots once per heartbeat (and exactly when a member falls due before the next
tick). A leaf member that left ``echo_misses`` heartbeats in a row unanswered (plus half a
heartbeat and four times its recent echo delay: :func:`~hierclust.core.timeouts.early_probe`), or
at the latest one silent for ``suspect_after_ms``, is probed directly and through
``indirect_probes`` helpers (an early suspicion: two rounds, ``EARLY_ROUNDS``); no answer within
``confirm_ms`` and a valid lease -> a :class:`Failure` notice, handed to the flood. In a tier >= 1
group a silent slot is only *pending* for ``slot_grace_ms``: the child group elects a new leader
which takes over the slot (``slots``); the dead node itself is declared by its leaf group's new
leader. A slot still pending after the grace is emptied and its former holder is probed like a
silent leaf member (it may be alive and merely have stepped down when its child group lost quorum);
only if nobody hears from it within ``confirm_ms`` is it declared failed, which covers a child
group that cannot elect anyone. An ICMP "port unreachable" from the driver (:class:`Unreachable`)
starts the probe at once.

Without a valid lease a leader declares nothing: a minority side never accuses.
"""

from __future__ import annotations

from typing import Any

from hierclust.core.messages import (
    Locate,
    PingReq,
    Probe,
    ProbeAck,
)
from hierclust.core.state import (
    ALIVE,
    EMPTY,
    FAILED,
    LEADER,
    PENDING,
    SUSPECT,
    GroupState,
    NodeState,
)
from hierclust.core.timeouts import ECHO_DELAY_WEIGHT, stretched
from hierclust.core.types import (
    ACTIVE,
    Effect,
    Failure,
    Send,
    SetTimer,
)

EARLY_ROUNDS = 2
"""Rounds of probes an early suspicion (see :func:`~hierclust.core.timeouts.early_probe`) must
go unanswered before the member is declared; a suspicion after ``suspect_after_ms`` needs one.
Two consecutive lost acks followed by one lost round of probes is common on a lossy link; a
second round, through other helpers, makes a false accusation about as rare as after the full
``suspect_after_ms`` of silence."""


class Detection(NodeState):
    """A leader's watch over its members: scan, probe, declare."""

    __slots__ = ()

    def _scan(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """Suspect silent members; if one falls due before the next tick, wake up exactly then
        (so detection costs suspect_after_ms + confirm_ms, not a tick more)."""
        tm = gs.tm
        limit = stretched(tm.suspect, self.health)
        status = gs.status
        last = gs.last
        delays = gs.delay
        early = gs.leaf and tm.misses > 0
        # early_probe(tm, delays[s], self.health, limit) inline (once per member and tick):
        # the same arithmetic with its per-tick parts hoisted
        floor = tm.misses * tm.heartbeat
        half = tm.heartbeat // 2
        stretch = 1 + self.health
        due = now + tm.heartbeat
        myslot = gs.myslot
        for s in range(gs.size):
            if s == myslot:
                continue
            st = status[s]
            if st == ALIVE:
                if early:
                    weighted = ECHO_DELAY_WEIGHT * delays[s]
                    wait = (floor + (weighted if weighted > half else half)) * stretch
                    if wait > limit:
                        wait = limit
                else:
                    wait = limit
                heard = last[s]
                if heard + wait < due:
                    due = heard + wait + 1
                if now - heard > wait:
                    if gs.leaf:
                        # an early suspicion needs EARLY_ROUNDS unanswered rounds of probes
                        self._suspect(now, gs, s, out, EARLY_ROUNDS if wait < limit else 1)
                    else:
                        status[s] = PENDING
                        gs.since[s] = now
            elif st == EMPTY:
                dst = self.rng.randrange(
                    self.layout.child_first[gs.gi][s], self.layout.child_end[gs.gi][s]
                )
                out.append(Send(dst, Locate(gs.gi)))
            elif st == PENDING and now - gs.since[s] <= tm.slot_grace:
                if gs.since[s] + tm.slot_grace < due:
                    due = gs.since[s] + tm.slot_grace + 1  # judge the grace when it runs out
            elif st == PENDING:
                holder = gs.holders[s]
                status[s] = EMPTY
                gs.holders[s] = -1
                self._bump_view(gs, out)
                self._send_roster(gs, out)
                if now < gs.lease_until:
                    # nobody from the child group came: its whole subtree is cut off (or dead)
                    self._cut_off(now, gs, s, out)
                    if holder >= 0 and holder != self.rank:
                        self._doubt(now, gs, holder, gs.incs[s], out)
        if self.reach and not gs.leaf:
            self._rejoined(now, gs, out)
        if now < due < now + tm.heartbeat:
            out.append(SetTimer(("s", gs.gi), due))

    def _suspect(
        self, now: int, gs: GroupState, s: int, out: list[Effect], rounds: int = 1
    ) -> None:
        """Probe leaf member ``s``; declare it after ``rounds`` unanswered rounds."""
        gs.status[s] = SUSPECT
        gs.since[s] = rounds
        helpers = [
            gs.first + h
            for h in range(gs.size)
            if h != s and h != gs.myslot and gs.status[h] == ALIVE
        ]
        self._probe(now, gs, gs.first + s, helpers, ("p", gs.gi, s), out)

    def _probe(
        self,
        now: int,
        gs: GroupState,
        target: int,
        helpers: list[int],
        timer: tuple[Any, ...],
        out: list[Effect],
    ) -> None:
        """Probe ``target`` directly and through up to ``probes`` of ``helpers`` (in random
        order); ``timer`` fires after ``confirm_ms`` for the verdict."""
        out.append(Send(target, Probe(gs.gi, target, self.rank)))
        if helpers:
            self.rng.shuffle(helpers)
            req = PingReq(gs.gi, target, self.rank)
            for h in helpers[: gs.tm.probes]:
                out.append(Send(h, req))
        # (the answers wait in our own loop's backlog too while it lags: a starved loop runs
        # this timer before it reads them, so the wait stretches with local health)
        out.append(SetTimer(timer, now + stretched(gs.tm.confirm, self.health)))

    def _doubt(self, now: int, gs: GroupState, node: int, inc: int, out: list[Effect]) -> None:
        """A slot stayed pending past its grace: its former holder may be dead, or alive and
        merely no longer leading its child group (which lost quorum). Probe it, directly and
        through other holders, and declare it only if nobody hears from it within confirm_ms."""
        doubts = gs.doubts
        if doubts is None:
            doubts = gs.doubts = {}
        doubts[node] = inc
        helpers = [h for h in self._members(gs) if h != node]
        self._probe(now, gs, node, helpers, ("q", gs.gi, node), out)

    def _on_probe_timeout(self, now: int, gs: GroupState, s: int, out: list[Effect]) -> None:
        if gs.role != LEADER or gs.status[s] != SUSPECT:
            return  # a ping or a probe answer cleared the suspicion
        if gs.since[s] > 1:
            # an early suspicion: one more round (other helpers, most likely) before a verdict,
            # so a member that merely lost two acks in a row is not declared on one more loss
            self._suspect(now, gs, s, out, gs.since[s] - 1)
            return
        if now < gs.lease_until:
            gs.status[s] = FAILED
            self._bump_view(gs, out)
            self._declare(now, gs, gs.first + s, gs.incs[s], out)
        else:
            gs.status[s] = ALIVE  # no lease, no verdict: suspect again on the next tick

    def _on_doubt_timeout(self, now: int, gs: GroupState, node: int, out: list[Effect]) -> None:
        doubts = gs.doubts
        if gs.role != LEADER or doubts is None or node not in doubts:
            return  # answered, or we stopped leading
        inc = doubts.pop(node)
        if now < gs.lease_until:
            self._declare(now, gs, node, inc, out)

    def _declare(self, now: int, gs: GroupState, node: int, inc: int, out: list[Effect]) -> None:
        if inc <= 0:
            # we never heard this incarnation (we lead since it went silent): the newest one
            # the notices speak of (a Failure of it already known is then simply no news)
            inc = max(1, *self._known_about(node))
        planned = self.admin is not None and self.admin_mode(node) != ACTIVE
        notice = Failure(node, inc, gs.gi, self.rank, gs.term, planned)
        if self.pending is not None:
            self.pending.pop(node, None)
        if self._learn(now, notice, None, out):
            self._forward(now, (notice,), -1, -1, out)

    def _on_ping_req(self, now: int, src: int, msg: PingReq, out: list[Effect]) -> None:
        out.append(Send(msg.target, Probe(msg.group, msg.target, msg.requester)))

    def _on_probe(self, now: int, src: int, msg: Probe, out: list[Effect]) -> None:
        if msg.target == self.rank:
            out.append(Send(src, ProbeAck(msg.group, msg.target, msg.requester, self.inc)))

    def _on_probe_ack(self, now: int, src: int, msg: ProbeAck, out: list[Effect]) -> None:
        if msg.requester != self.rank:
            out.append(Send(msg.requester, msg))
            return
        gs = self._gs(msg.group)
        if gs is None or gs.role != LEADER:
            return
        if not gs.leaf:
            if gs.doubts is not None:
                gs.doubts.pop(msg.target, None)  # alive, it just holds no slot any more
            return
        s = msg.target - gs.first
        if 0 <= s < gs.size and gs.status[s] == SUSPECT:
            gs.status[s] = ALIVE
            gs.last[s] = now

    def _on_unreachable(self, now: int, dst: int, out: list[Effect]) -> None:
        for gs in self.states:
            if gs is not None and gs.role == LEADER and gs.leaf:
                s = dst - gs.first
                if 0 <= s < gs.size and s != gs.myslot and gs.status[s] == ALIVE:
                    self._suspect(now, gs, s, out)
