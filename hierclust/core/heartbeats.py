"""Heartbeats and leases: the leader's tick, the members' echoes, the member's lazy check.

Theory of operation
-------------------
Heartbeats are driven by the leader: every ``heartbeat_ms`` it sends one :class:`Ack` carrying
its ``stamp`` (leader clock) to every member, and each member answers at once with a
:class:`Ping` echoing that stamp (so one event per member and heartbeat on each side, and no
member timer: a member only checks lazily, once per election timeout, whether the acks stopped).
A leader answers a Ping with an Ack only when it is not the answer to its latest heartbeat (a
member finding it, another term, news such as a refutation), so the exchange never loops.

A member never grants a (pre-)vote to anyone but the node it last heard from within
``election_timeout_ms`` of hearing it, and it hears an Ack no earlier than its stamp. So when
``quorum`` voters echoed a stamp >= B, nobody else can win before B + election timeout, and the
leader's lease runs to B + ``lease_ms`` (smaller by at least the drift margin). The leader
re-computes the lease once per tick and at expiry (O(group size) per heartbeat period, so O(1)
per member heartbeat) and steps down when it cannot extend it. Half a heartbeat before a lapse it
asks the members whose echo holds the lease back for an immediate one (``FLAG_ECHO_NOW``), twice,
which keeps leases through 20 % loss. Acks report the remaining lease; members count their group
quorate from it.

Both ends also compare notice digests here (every Ack and Ping carries one): a mismatch seen twice
sends a :class:`Pull` (see ``flood``), at most once per back-off (``_pull``). A Ping from a member
with a new incarnation makes the leader declare the old one (``detection``) and announce the new one
(``flood``).
"""

from __future__ import annotations

from hierclust.core.fast import new_emit, new_lease_changed, new_ping, new_send, new_set_timer
from hierclust.core.layout import TIE_NONE
from hierclust.core.messages import (
    FLAG_ECHO_NOW,
    FLAG_LEASE,
    FLAG_PRIMARY,
    FLAG_REFUTE,
    MAX_NOTICES_PER_MESSAGE,
    Ack,
    LeaderHint,
    Notices,
    Ping,
    Pull,
    TieRenew,
    TieRenewAck,
)
from hierclust.core.quorum import lease_base
from hierclust.core.state import (
    ALIVE,
    EMPTY,
    FAILED,
    FOLLOWER,
    LEADER,
    NEVER,
    PENDING,
    SUSPECT,
    UNHEARD,
    GroupState,
    NodeState,
    lease_urgency,
)
from hierclust.core.timeouts import leader_period, stretched
from hierclust.core.types import (
    ACTIVE,
    Alive,
    Effect,
    Emit,
    LeaderChanged,
    Send,
    SetTimer,
    witness_id,
)


class Heartbeats(NodeState):
    """The leader's tick and heartbeat, leases from echoes, and the member side of both."""

    __slots__ = ()

    def _leader_tick(
        self, now: int, gs: GroupState, out: list[Effect], *, heartbeat: bool = True
    ) -> None:
        if self.mode != ACTIVE and heartbeat and self._resign_all(now, out):
            return
        if now < gs.lease_until:
            self._renew_lease(now, gs, out)
        else:
            # a lapse the lease timer has not judged yet: regain the lease or step down now
            self._on_lease(now, gs, out)
            if gs.role != LEADER:
                return
        if not gs.strain:
            # (not while our lease is lapsed for our own lag: silences we measure then are ours)
            self._scan(now, gs, out)
        if gs.tie != TIE_NONE:
            out.append(Send(witness_id(gs.gi), TieRenew(gs.gi, gs.term, now)))
        if heartbeat:
            self._heartbeat(now, gs, out)

    def _heartbeat(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """One Ack to every member; each answers with a Ping echoing its stamp."""
        gs.bcast = now
        ack = self._ack(now, gs, 0)
        # the members whose echoes hold the lease get all of it, the others what their own
        # echo holds (``_promise``): an ack of their own
        base = gs.lease_until - gs.tm.lease
        echo = gs.echo
        me = self.rank
        status = gs.status
        if gs.leaf:
            # _members() inline, without building its list: once per heartbeat per leaf group
            dst = gs.first
            for s in range(gs.size):
                if status[s] != FAILED and dst != me:
                    if echo[s] >= base:
                        out.append(new_send(dst, ack))
                    else:
                        out.append(new_send(dst, self._ack(now, gs, 0, self._promise(gs, s))))
                dst += 1
            return
        for s, dst in self._member_slots(gs):
            if echo[s] >= base:
                out.append(Send(dst, ack))
            else:
                out.append(Send(dst, self._ack(now, gs, 0, self._promise(gs, s))))

    def _regained(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """Our lease is back after a lapse for our own lag: every member we still count alive
        is dated from now, since the silences we measured while we lagged were our own."""
        gs.strain = 0
        self._set_quorate(gs, True, out)
        last = gs.last
        status = gs.status
        for s in range(gs.size):
            if status[s] == ALIVE or status[s] == SUSPECT:
                if last[s] < now:
                    last[s] = now
                status[s] = ALIVE

    def _on_lease(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        if gs.role != LEADER:
            return
        if now < gs.lease_until:
            # the lease is about to lapse: collect what arrived, then ask the members whose
            # echo holds it back for a fresh one right now (a second chance under loss)
            self._renew_lease(now, gs, out)
            left = gs.lease_until - now
            if left <= lease_urgency(gs):
                base = gs.lease_until - gs.tm.lease
                for s in range(gs.size):
                    if s != gs.myslot and gs.echo[s] <= base and gs.status[s] != FAILED:
                        dst = gs.first + s if gs.leaf else gs.holders[s]
                        if dst >= 0:
                            ack = self._ack(now, gs, FLAG_ECHO_NOW, self._promise(gs, s))
                            out.append(Send(dst, ack))
                # one more chance halfway to the end, then the verdict at the end itself
                half = lease_urgency(gs) // 2
                again = gs.lease_until - half if left > half else gs.lease_until
                out.append(SetTimer(gs.key_lease, again))
            else:
                # early (our clock's rate changed since the timer was set): keep the watch
                out.append(SetTimer(gs.key_lease, gs.lease_until - lease_urgency(gs)))
            return
        if self._renew_lease(now, gs, out):
            if gs.strain:
                self._regained(now, gs, out)  # after a lapse (below)
            return
        if (not gs.strain and self.health) or now < gs.strain:
            # Our own loop lags: the echoes that would renew the lease may be waiting behind
            # this very timer. Hold on, without the lease (nothing that needs it is done, and
            # our vote stays ours), heartbeating for a stretched election timeout: members that
            # hear us do not stand, and a majority echoing a newer stamp gives a lease again as
            # safely as at any tick (docs/architecture.md, Leases). Stepping down instead makes
            # the whole group, and every group above that we lead, elect on a starved CPU.
            if not gs.strain:
                gs.strain = now + stretched(gs.tm.election, self.health)
                self._set_quorate(gs, False, out)
            out.append(SetTimer(gs.key_lease, min(now + gs.tm.heartbeat, gs.strain)))
            return
        # members that still heard us may re-elect us at once (one round trip, new term)
        self._step_down(now, gs, out, retry_ns=0)

    def _renew_lease(self, now: int, gs: GroupState, out: list[Effect]) -> bool:
        """Extend the lease from the echoes and report it (once per tick and at the reported
        expiry); True if still held. Between reports pings extend it silently, so the
        ``until_ns`` of the last LeaseChanged is a lower bound of the lease, exact at a report."""
        until = self._lease_from_echoes(now, gs)
        if until > gs.lease_until:
            gs.lease_until = until
        if gs.lease_until > gs.lease_reported and gs.lease_until > now:
            gs.lease_reported = gs.lease_until
            out.append(new_emit(new_lease_changed(gs.gi, gs.term, True, gs.lease_until)))
            out.append(new_set_timer(gs.key_lease, gs.lease_until - lease_urgency(gs)))
        return now < gs.lease_until

    def _lease_from_echoes(self, now: int, gs: GroupState) -> int:
        echoes = [now]
        status = gs.status
        for s in range(gs.size):
            if s != gs.myslot and status[s] != FAILED and status[s] != EMPTY:
                echoes.append(gs.echo[s])
        if gs.tie != TIE_NONE:
            echoes.append(gs.tie_echo)
        base = lease_base(echoes, gs.quorum)
        return NEVER if base is None else base + gs.tm.lease

    def _on_ping(self, now: int, src: int, msg: Ping, out: list[Effect]) -> None:
        gs = self.leaf_gs
        if gs is None or gs.gi != msg.group:  # (the leaf group inline: the hot path)
            gs = self._gs(msg.group)
            if gs is None:
                return
        if gs.role != LEADER:
            leader = self._confirmed_leader(now, gs)
            if leader >= 0 and leader != src:
                out.append(Send(src, LeaderHint(gs.gi, leader, gs.term)))
            return
        if msg.term > gs.term:
            # an election we did not see won a higher term (pre-vote makes this rare)
            self._adopt_term(now, gs, msg.term, out)
            self._persist(gs, out)
            return
        leaf = gs.leaf
        term = msg.term
        echo = msg.echo
        inc = msg.inc
        s = src - gs.first if leaf else msg.slot
        if not 0 <= s < gs.size or s == gs.myslot:
            return
        status = gs.status
        fresh = False
        if not leaf and gs.holders[s] != src:
            if gs.holders[s] >= 0 and status[s] in (ALIVE, SUSPECT):
                return  # the slot is held by someone we still hear
            self._take_slot(now, gs, s, src, out)
            fresh = True
        gs.last[s] = now
        revived = False
        if term == gs.term and echo > gs.echo[s]:
            old = gs.echo[s]
            gs.echo[s] = echo
            tm = gs.tm
            # its first echo in this term, or the first since its echoes stopped holding the
            # lease: our acks have promised it none (``_promise``); answer now with the lease
            revived = old + tm.lease <= now < echo + tm.lease
            # how late this member answers (both ends of it on our clock), and how long a gap
            # a lost ack or echo left before this one: a decaying maximum, so one slow or lost
            # answer widens its early-probe wait for a few seconds (early probes are for
            # members that answer every heartbeat promptly, not for lossy or loaded ones)
            late = now - msg.echo
            gap = msg.echo - old - tm.heartbeat
            if old > 0 and gap > late:
                late = gap
            delays = gs.delay
            kept = delays[s] - (delays[s] >> 3)
            delays[s] = late if late > kept else kept
            if gs.strain:
                # our lease lapsed while we lagged (_on_lease): regain it the moment a majority
                # echoed a stamp recent enough, as a won vote would give it, not at a late tick
                if self._renew_lease(now, gs, out):
                    self._regained(now, gs, out)
            elif (
                old + tm.lease <= gs.lease_until
                and now < gs.lease_until
                and gs.lease_until - now <= tm.heartbeat
            ):
                # the lease would lapse before the next tick and this member may have held it
                # back: extend it now (silently), so one lost round trip does not cost the lease
                until = self._lease_from_echoes(now, gs)
                if until > gs.lease_until:
                    gs.lease_until = until
        flags = 0
        st = status[s]
        if leaf:
            old = gs.incs[s]
            if inc > old:
                gs.incs[s] = inc
                if old > 0:
                    # a restart: the old incarnation is dead (declare it if nobody did), the new one
                    # is alive
                    if st != FAILED and now < gs.lease_until:
                        self._declare(now, gs, src, old, out)
                    status[s] = ALIVE
                    self._bump_view(gs, out)
                    alive = Alive(src, inc)
                    if self._learn(now, alive, None, out):
                        self._forward(now, (alive,), -1, -1, out)
                else:
                    # first ping to this leader: what do the notices say about this member?
                    failed, alive_inc = self._known_about(src)
                    if failed >= inc:
                        flags = FLAG_REFUTE  # declared dead in this incarnation: come back anew
                    elif failed > 0 and alive_inc < inc:
                        alive = Alive(src, inc)  # back after a failure nobody announced
                        if self._learn(now, alive, None, out):
                            self._forward(now, (alive,), -1, -1, out)
                    if st == FAILED:
                        status[s] = ALIVE
                        self._bump_view(gs, out)
            elif st == FAILED or inc < old:
                # declared failed, or restarted without its state: come back with a higher one
                flags = FLAG_REFUTE
        else:
            if inc > gs.incs[s]:
                gs.incs[s] = inc
            known = self.known
            if known is not None and src in known and self._known_about(src)[0] >= inc:
                # a slot holder declared failed in this incarnation (by a sweep while it was
                # cut off, say) follows us: tell it, rather than wait for the notice to reach it
                flags = FLAG_REFUTE
        st = status[s]
        if st == SUSPECT or st == PENDING:
            status[s] = ALIVE
        stale = echo < gs.bcast
        if (
            stale
            and self.health
            and echo >= gs.bcast - 2 * leader_period(gs.tm.heartbeat, self.health)
        ):
            # a late answer to one of our last heartbeats, late because our own loop lags: the
            # next tick reaches this member anyway. Answering would make every late echo cost
            # another round trip, and the traffic grow with the lag that it causes
            stale = False
        if flags or fresh or term != gs.term or stale or revived:
            # not the answer to our latest heartbeat (a member finding us, or news for it), or a
            # member heard again: answer it; an answer to a heartbeat needs none (that would
            # never end)
            out.append(Send(src, self._ack(now, gs, flags, self._promise(gs, s))))
        count = msg.digest_count
        if count > self.dcount or (count == self.dcount and msg.digest_hash != self.dhash):
            # the member knows more, or as much but different (e.g. a newer admin notice that
            # replaced one we still hold): pull from it too, the member pulls from us
            gs.mismatch += 1
            if gs.mismatch >= 2 and now >= gs.pull_at:
                gs.mismatch = 0
                self._pull(now, gs, src, out)

    def _pull(self, now: int, gs: GroupState, src: int, out: list[Effect]) -> None:
        """Ask ``src`` for every notice it holds (the caller waits for ``pull_at``), and set
        the back-off before the next pull in this group: two heartbeats,
        doubling while pulls teach nothing, up to 64 heartbeats. The back-off starts over when
        an answer taught us a notice (``Flood._on_notices``), when a member's digest matches
        its leader's, and with a new leader. A Pull is answered with everything the peer
        knows, so without the back-off a mismatch that no pull can mend (peers forgetting a
        notice at different times, or holding one the other already forgot) cost every member
        a full answer every two heartbeats; with hundreds of notices held, that load grew
        until loops lagged and members were declared failed, which made more notices."""
        heartbeat = gs.tm.heartbeat
        gap = gs.pull_gap
        gap = 2 * heartbeat if gap == 0 else min(2 * gap, 64 * heartbeat)
        gs.pull_gap = gap
        gs.pull_at = now + gap
        out.append(Send(src, Pull(gs.gi, self.dcount, self.dhash)))
        # and push our newest notices along: the peer may lack one of ours although it holds
        # more (a leader pulls only from a member holding at least as many), e.g. a failure
        # that a new slot holder detected before it joined this group, which it therefore
        # never forwarded here (in the nemesis campaign the rest of the cluster heard of such
        # a failure 51-76 s late)
        newest = self._newest(MAX_NOTICES_PER_MESSAGE)
        if newest:
            out.append(Send(src, Notices(gs.gi, 0, self._aged(now, newest))))

    def _on_tie_renew_ack(self, now: int, src: int, msg: TieRenewAck, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.role != LEADER or msg.term != gs.term or not msg.ok:
            return
        if msg.stamp > gs.tie_echo:
            gs.tie_echo = msg.stamp

    def _member_tick(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """A member with a leader only checks, lazily, whether the leader's acks stopped (the
        leader drives heartbeats); without one it ticks every heartbeat to find or elect one."""
        tm = gs.tm
        if gs.quorate and now >= gs.quorate_until + tm.heartbeat:
            # the leader's lease ran out and a whole heartbeat brought no renewal (the query
            # quorate() is exact; the event ignores the gap between a lapse and the next ack)
            self._set_quorate(gs, False, out)
        if gs.leader >= 0:
            limit = stretched(tm.election, self.health)
            if now - gs.heard_ns > limit:
                self._lose_leader(now, gs, out)
            else:
                # (a lapsed lease shows in the quorate() query at once; the event waits for this)
                due = gs.heard_ns + limit + 1
                out.append(new_set_timer(gs.key_tick, due if due > now else now + 1))
                return
        # leaderless: look for one every heartbeat, less often while our own loop lags (each
        # look may ask every slot holder above the leaves where the leader is)
        period = tm.heartbeat if not self.health else stretched(tm.heartbeat, min(self.health, 3))
        out.append(new_set_timer(gs.key_tick, now + period))
        if gs.hint >= 0:
            if now < gs.hint_until:
                self._contact(gs, gs.hint, out)
                return
            gs.hint = -1
        if not gs.leaf:
            # leaderless above the leaves: find the holders we do not know (now and then all of
            # them, in case ours are stale)
            self._locate(gs, out, unknown_only=self.rng.randrange(5) != 0)
        if gs.role == FOLLOWER and not gs.cand_armed:
            self._arm_candidacy(now, gs, out)

    def _on_ack(self, now: int, src: int, msg: Ack, out: list[Effect]) -> None:
        gs = self.leaf_gs
        if gs is None or gs.gi != msg.group:  # (the leaf group inline: the hot path)
            gs = self._gs(msg.group)
            if gs is None:
                return
        term = msg.term
        if term != gs.term or gs.role == LEADER:  # (else, the hot path: none of this applies)
            if term < gs.term:
                # a leader of an older term that never heard of ours: tell it (it steps down and
                # the group elects in a term everyone accepts)
                out.append(Send(src, self._ping(gs)))
                return
            if gs.role == LEADER:
                if term == gs.term:
                    return  # cannot happen with one vote per term; ignore rather than trust it
                self._step_down(now, gs, out)
            if term > gs.term:
                self._adopt_term(now, gs, term, out)
                self._persist(gs, out)
        if gs.vote_floor == UNHEARD:
            gs.vote_floor = term
        gs.role = FOLLOWER
        gs.hint = -1
        if gs.leader != src:
            gs.leader = src
            gs.strain = 0  # (a leader found: no failed rounds in a row any more)
            gs.mismatch = 1  # a new leader: repair on the first digest mismatch
            gs.pull_at = gs.pull_gap = 0
            out.append(Emit(LeaderChanged(gs.gi, src, gs.term)))
            self._flush_backlog(now, gs, out)
        tm = gs.tm
        stamp = msg.stamp
        gs.heard_ns = now
        gs.block_until = now + tm.election
        gs.heard_from = src
        gs.stamp = stamp
        gs.view_id = msg.view_id
        gs.up = msg.up
        gs.up_term = msg.up_term
        gs.above = msg.above
        gs.leader_inc = msg.leader_inc
        flags = msg.flags
        gs.primary = (flags & FLAG_PRIMARY) != 0
        left = msg.lease_left_ns
        if flags & FLAG_LEASE and left > 0:
            gs.quorate_until = now + left
            if not gs.quorate:
                self._set_quorate(gs, True, out)
        else:
            gs.quorate_until = NEVER
            if gs.quorate:
                self._set_quorate(gs, False, out)
        if flags & FLAG_REFUTE and now - self.refuted_at >= tm.heartbeat:
            # an ack refutes the incarnation of the ping it answers, which may be an older one
            # (a duplicate, or pings queued while we were paused): one new incarnation per
            # heartbeat, or every stale ping in flight would make another, without end
            self.refuted_at = now
            self._come_back(now, out)
        dcount = self.dcount
        dhash = self.dhash
        # the echo that renews the leader's lease
        out.append(
            new_send(src, new_ping(gs.gi, gs.term, gs.myslot, self.inc, stamp, dcount, dhash))
        )
        if msg.digest_count != dcount or msg.digest_hash != dhash:
            # whatever the counts: with notices forgotten at different times, a member may
            # hold more notices than its leader and still lack one (even one saying that it
            # failed itself, which it must hear to come back as a new incarnation)
            gs.mismatch += 1
            if gs.mismatch >= 2 and now >= gs.pull_at:
                gs.mismatch = 0
                self._pull(now, gs, src, out)
        else:
            gs.mismatch = 0
            gs.pull_gap = 0
