"""Detection: suspect a silent member, probe it, confirm, declare the failure.

Theory of operation
-------------------
A leader scans its slots once per heartbeat (and exactly when a member falls due before the next
tick). A leaf member that left ``echo_misses`` heartbeats in a row unanswered (plus half a
heartbeat and four times its recent echo delay: :func:`~hierclust.core.timeouts.early_probe`), or
at the latest one silent for ``suspect_after_ms``, is probed directly and through
``indirect_probes`` helpers (an early suspicion: two rounds, ``EARLY_ROUNDS``); no answer within
``confirm_ms`` and a valid lease -> a :class:`Failure` notice, handed to the flood. In a tier >= 1
group a silent slot holder (suspected the same way, early or late) leaves its slot only *pending*
for ``slot_grace_ms``, counted from ``suspect_after_ms`` of silence: the child group elects a new
leader which takes over the slot (``slots``); the dead node itself is declared by its leaf group's
new leader. The parent's leader cannot tell that re-election from a child subtree cut off from it,
so it *sweeps* the child group at once (:meth:`Detection._sweep`): it probes the child group's
members and the former holder. Anyone answering means the subtree is reachable: the grace runs its
course. Nobody answering within ``EARLY_ROUNDS`` rounds of probes ends the grace there and then.
A slot whose grace ended is emptied; with the lease, the subtree is reported cut off (``reach``)
and its former holder is probed like a silent leaf member (it may be alive and merely have stepped
down when its child group lost quorum); only if nobody hears from it within ``confirm_ms`` is it
declared failed, which covers a child group that cannot elect anyone. An ICMP "port unreachable"
from the driver (:class:`Unreachable`) starts the probe at once.

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

SWEEP_MAX = 4
"""Members of a child group probed directly per round when its slot goes pending, besides the
former holder (a random sample when there are more, so two rounds mostly ask different ones).
Any one answer keeps the grace. A child group re-electing after its leader died is taken for
cut off only if every probe or answer of both rounds is lost: with k live members probed, about
(2p)^(2k) at loss p on every link: 10^-8 for four at 5 %, but 0.36^4, nearly 2 %, for the two
left in a group of three at 20 % (the price then: a subtree notice, and its reachable one when
the new leader takes the slot). A sweep of a large group costs no more than one of a small one:
a slot holder silent under heavy loss is swept, answered, and forgotten."""


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
        early = tm.misses > 0
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
                        # the grace runs from a full suspect_after_ms of silence, early or not
                        gs.since[s] = max(now, heard + limit)
                        self._sweep(now, gs, s, out, EARLY_ROUNDS)
            elif st == EMPTY:
                dst = self.rng.randrange(
                    self.layout.child_first[gs.gi][s], self.layout.child_end[gs.gi][s]
                )
                out.append(Send(dst, Locate(gs.gi)))
            elif st == PENDING and now - gs.since[s] <= tm.slot_grace:
                if gs.since[s] + tm.slot_grace < due:
                    due = gs.since[s] + tm.slot_grace + 1  # judge the grace when it runs out
            elif st == PENDING:
                self._end_grace(now, gs, s, out)
        if self.reach and not gs.leaf:
            self._rejoined(now, gs, out)
        if now < due < now + tm.heartbeat:
            out.append(SetTimer(("s", gs.gi), due))

    def _end_grace(self, now: int, gs: GroupState, s: int, out: list[Effect]) -> None:
        """Empty pending slot ``s``: nobody from its child group came to fill it (its grace ran
        out, or a sweep found nobody there). With our lease, its whole subtree is cut off (or
        dead), and its former holder is probed before it is declared."""
        holder = gs.holders[s]
        gs.status[s] = EMPTY
        gs.holders[s] = -1
        self._bump_view(gs, out)
        self._send_roster(gs, out)
        if now < gs.lease_until:
            self._cut_off(now, gs, s, out)
            if holder >= 0 and holder != self.rank:
                self._doubt(now, gs, holder, gs.incs[s], out)

    def _sweep(self, now: int, gs: GroupState, s: int, out: list[Effect], rounds: int) -> None:
        """Slot ``s`` just went pending: is its child group re-electing, or cut off from us?
        Probe up to ``SWEEP_MAX`` of the child group's members (a leaf child: its ranks; a
        higher one: the first rank of each of its own children, its usual members) directly, and
        the former holder directly and through helpers. Any answer means the subtree is still
        reachable from here: the grace runs its course. ``rounds`` unanswered rounds of
        ``confirm_ms`` end the grace at once (:meth:`_on_sweep_timeout`). The scan asks for
        ``EARLY_ROUNDS`` even after a full ``suspect_after_ms`` of silence: a subtree reported cut
        off is news for every node, and in the simulator one round under 20 % loss reported two
        live subtrees a minute cut off on 64 nodes (two rounds: no more than the grace did)."""
        doubts = gs.doubts
        if doubts is None:
            doubts = gs.doubts = {}
        doubts[~s] = rounds  # (a slot's sweep, under a negative key: see GroupState.doubts)
        layout = self.layout
        child = layout.children[gs.gi][s]
        if layout.leaf[child]:
            ranks: range | tuple[int, ...] = range(
                layout.first[child], layout.first[child] + layout.size[child]
            )
        else:
            ranks = layout.child_first[child]
        holder = gs.holders[s]
        others = [r for r in ranks if r != holder and r != self.rank]
        if len(others) > SWEEP_MAX:
            others = self.rng.sample(others, SWEEP_MAX)
        for r in others:
            out.append(Send(r, Probe(gs.gi, r, self.rank)))
        timer = ("w", gs.gi, s)
        if holder >= 0 and holder != self.rank:
            helpers = [h for h in self._members(gs) if h != holder]
            self._probe(now, gs, holder, helpers, timer, out)
        else:
            out.append(SetTimer(timer, now + stretched(gs.tm.confirm, self.health)))

    def _on_sweep_timeout(self, now: int, gs: GroupState, s: int, out: list[Effect]) -> None:
        doubts = gs.doubts
        if gs.role != LEADER or doubts is None or ~s not in doubts:
            return  # someone in the child subtree answered, or we stopped leading
        rounds = doubts.pop(~s)
        if gs.status[s] != PENDING:
            return  # a new holder took the slot, or the grace ended meanwhile
        if rounds > 1:
            self._sweep(now, gs, s, out, rounds - 1)
        elif now < gs.lease_until:
            self._end_grace(now, gs, s, out)

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
            node = gs.first + s
            self._declare(now, gs, node, self._newest_inc(node, gs.incs[s]), out)
        else:
            gs.status[s] = ALIVE  # no lease, no verdict: suspect again on the next tick

    def _on_doubt_timeout(self, now: int, gs: GroupState, node: int, out: list[Effect]) -> None:
        doubts = gs.doubts
        if gs.role != LEADER or doubts is None or node not in doubts:
            return  # answered, or we stopped leading
        inc = doubts.pop(node)
        if now < gs.lease_until:
            self._declare(now, gs, node, self._newest_inc(node, inc), out)

    def _newest_inc(self, node: int, heard: int) -> int:
        """The incarnation of a silent ``node`` to declare failed: the one we ``heard`` it in,
        or a newer one a notice announced (it came back from an accusation just before it went
        silent, and its own echoes or acks with the new one never reached us: declaring the
        older one, which everyone already held failed, told nobody of this failure)."""
        if heard <= 0:
            return heard
        return max(heard, self._known_about(node)[1])

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
            doubts = gs.doubts
            if doubts:
                doubts.pop(msg.target, None)  # alive, it just holds no slot any more
                firsts = self.layout.child_first[gs.gi]
                ends = self.layout.child_end[gs.gi]
                for key in [k for k in doubts if k < 0]:
                    if firsts[~key] <= msg.target < ends[~key]:
                        del doubts[key]  # its subtree answers: wait for its new leader
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
