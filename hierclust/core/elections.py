"""Elections: candidacy, pre-vote, vote, winning, stepping down, hints and hand-off.

Theory of operation
-------------------
A member that misses acks for ``election_timeout_ms`` (stretched by local health) gives its
leader up and waits position x (``rank_delay_ms`` + ``election_jitter_ms``) + jitter (one rank
step spans the jitter window, so the lowest live rank stands first), runs a pre-vote (no term
bump; refused while voters still hear a leader; the tie-breaker is asked too), then a real vote
(voters that have not granted are asked again halfway through the round: ``_ask_again``); the
vote is persisted (a :class:`Persist` before the :class:`Send`). The winner's lease starts at
its RequestVote; it announces itself with an unsolicited Ack to every member and joins the parent
group (``slots``). A leader that sees a higher term steps down, and leaves every group above.

Restarts: a started node refuses votes for one election timeout; a node that lost its disk
(amnesiac) grants no vote in a group until it has heard that group's current term, and then only
in later terms. A hint (a node named as leader by someone else) is only contacted; it becomes our
leader when it acks, and it never makes us refuse votes.

Storage faults: while the driver reports that it cannot make the node's state durable
(:class:`~hierclust.core.types.Storage`), the node refuses every vote request, abandons a
candidacy in progress and stands for no election (its candidacy timer keeps polling, so it stands
again once writes work). A leader keeps leading: it won with a term and a self-vote that were
durable before its vote requests left, and leading needs no write; what it cannot persist (a
higher term it hears) makes it step down as always.

Hand-off: a leader in maintenance or drained (``modes``) ends its lease, then names the lowest
active member that echoed it recently in :class:`Handoff`; that member stands at once, without a
pre-vote, and the others pass their election-timeout promise on to it.
"""

from __future__ import annotations

from hierclust.core.layout import TIE_NONE
from hierclust.core.messages import (
    Handoff,
    LeaderHint,
    PreVote,
    PreVoteResp,
    RequestVote,
    SlotHandover,
    TieRelease,
    TieVote,
    TieVoteResp,
    VoteResp,
)
from hierclust.core.state import (
    ABSTAIN,
    ALIVE,
    CANDIDATE,
    FOLLOWER,
    LEADER,
    NEVER,
    NO_BYTES,
    NO_INTS,
    PENDING,
    PRECANDIDATE,
    GroupState,
    NodeState,
    hear_term,
    lease_urgency,
)
from hierclust.core.timeouts import Timing, backoff, stretched
from hierclust.core.types import (
    ACTIVE,
    CancelTimer,
    Effect,
    ElectionStarted,
    Emit,
    LeaderChanged,
    LeaseChanged,
    Send,
    SetTimer,
    ViewChanged,
    VoteGranted,
    witness_id,
)


class Elections(NodeState):
    """Standing for election, voting, winning, stepping down, handing over."""

    __slots__ = ()

    def _lose_leader(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        gs.prev_leader = gs.leader
        gs.prev_heard = gs.heard_ns
        gs.prev_inc = gs.leader_inc
        gs.leader = -1
        out.append(Emit(LeaderChanged(gs.gi, None, gs.term)))
        self._set_quorate(gs, False, out)

    def _arm_candidacy(self, now: int, gs: GroupState, out: list[Effect], extra: int = 0) -> None:
        tm = gs.tm
        pos = gs.myslot
        if gs.leaf and 0 <= gs.prev_leader - gs.first < pos:
            pos -= 1  # the dead leader's slot does not count in the rank order
        if self.mode != ACTIVE:
            pos += gs.size  # in maintenance or drained: after every active member
        jitter = self._jitter(tm)
        gs.cand_armed = True
        # one rank step spans the whole jitter window, so a lower rank always stands first
        step = tm.rank_delay + tm.jitter
        health = self.health
        if health:
            # our loop lags: our rounds take longer, so rank steps and jitter widen with it (a
            # lower rank's round can finish before we stand), and a healthy node stands first
            step = stretched(step, health)
            jitter = stretched(jitter, health)
        out.append(SetTimer(gs.key_cand, now + extra + pos * step + jitter))

    def _on_candidacy(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        gs.cand_armed = False
        if gs.role == LEADER:
            return
        tm = gs.tm
        if gs.role == CANDIDATE and now < gs.cand_start + self._round_ns(tm):
            self._ask_again(now, gs, out)
            return
        if gs.role != FOLLOWER:
            # the (pre-)vote round timed out without a result: back off and try again (longer
            # while our own loop lags, and longer still after each failure in a row then: a
            # starved node's rounds fail for its own slowness)
            gs.role = FOLLOWER
            gs.strain += 1  # (failed rounds in a row)
            wait = backoff(tm.heartbeat, self.health, gs.strain)
            if self.health:
                wait += self.rng.randrange(wait + 1)  # (random: lagging rivals spread apart)
            self._arm_candidacy(now, gs, out, extra=wait)
            return
        if gs.leader >= 0 and now - gs.heard_ns <= stretched(tm.election, self.health):
            return  # our leader is alive
        if self.no_disk:
            # our vote for ourselves could not be made durable: wait for the disk
            self._arm_candidacy(now, gs, out, extra=tm.election)
            return
        if now < gs.block_until:
            # we voted recently (a mere hint does not hold us back: it may name the dead leader,
            # and a live leader's voters refuse our pre-vote anyway)
            self._arm_candidacy(gs.block_until, gs, out)
            return
        gs.role = PRECANDIDATE
        gs.grants = 1 << gs.myslot
        gs.tie_granted = False
        gs.cand_start = now
        msg = PreVote(gs.gi, self._next_term(now, gs), gs.myslot)
        for dst in self._voters(gs):
            out.append(Send(dst, msg))
        if gs.tie != TIE_NONE:
            out.append(Send(witness_id(gs.gi), TieVote(gs.gi, msg.term, 1, True)))
        gs.cand_armed = True
        # the round's answers wait in our own loop's backlog too when it lags (a voter that
        # missed this request is not asked again: the next rank stands soon anyway)
        out.append(SetTimer(gs.key_cand, now + self._round_ns(tm)))
        self._check_prevote(now, gs, out)

    def _ask_again(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """Halfway through a vote round: ask again every voter that has not granted, then wait
        for the end of the round. Once voters have voted in a term, no other candidate can win
        it (unlike a pre-vote round, which the next rank's candidacy overtakes), so a lost
        request or answer cost the whole term: a leaf group of four that loses its leader needs
        all three survivors, and at 20 % loss such a group often had no leader 10 s later."""
        tm = gs.tm
        vote = RequestVote(gs.gi, gs.term, gs.myslot)
        for dst in self._voters(gs, gs.grants):
            out.append(Send(dst, vote))
        if gs.tie_asked and not gs.tie_granted:
            have = gs.grants.bit_count()
            out.append(Send(witness_id(gs.gi), TieVote(gs.gi, gs.term, have, False)))
        out.append(SetTimer(gs.key_cand, gs.cand_start + self._round_ns(tm) + self._jitter(tm)))

    def _round_ns(self, tm: Timing) -> int:
        """How long a (pre-)vote round lasts: half the election timeout, stretched while our
        own loop lags (the round's answers wait in its backlog too)."""
        return stretched(tm.election // 2, self.health)

    def _jitter(self, tm: Timing) -> int:
        """A random wait within the jitter window (rivals of the same rank spread apart)."""
        return self.rng.randrange(tm.jitter + 1) if tm.jitter > 0 else 0

    def _next_term(self, now: int, gs: GroupState) -> int:
        """Leaf groups count terms (their voters never change and persist their votes). Above
        them a slot's holder can change, and every node that knew the group's term may be gone,
        so a term is also at least the candidate's wall clock in ms (a hybrid logical clock):
        terms grow by one while anyone knows the last, and even when all who knew it are gone,
        as long as wall clocks agree better than the time between two elections of the group
        (docs/architecture.md §4, Time)."""
        if gs.leaf:
            return gs.term + 1
        return max(gs.term + 1, self._wall_ms(now))

    def _check_prevote(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        if gs.grants.bit_count() + (1 if gs.tie_granted else 0) >= gs.quorum:
            self._start_election(now, gs, out)

    def _start_election(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        tm = gs.tm
        if self.no_disk:  # (a hand-off to us, or a pre-vote won as the fault began)
            gs.role = FOLLOWER
            if not gs.cand_armed:
                self._arm_candidacy(now, gs, out, extra=tm.election)
            return
        gs.term = self._next_term(now, gs)
        gs.voted_for = self.rank
        hear_term(gs, gs.term)
        gs.role = CANDIDATE
        gs.grants = 1 << gs.myslot
        gs.tie_granted = False
        gs.tie_asked = False
        gs.cand_start = now
        self._persist(gs, out)
        out.append(Emit(ElectionStarted(gs.gi, gs.term)))
        msg = RequestVote(gs.gi, gs.term, gs.myslot)
        for dst in self._voters(gs):
            out.append(Send(dst, msg))
        gs.cand_armed = True
        out.append(SetTimer(gs.key_cand, now + stretched(tm.election // 4, self.health)))
        self._check_votes(now, gs, out)

    def _check_votes(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        have = gs.grants.bit_count()
        total = have + (1 if gs.tie_granted else 0)
        if total >= gs.quorum:
            self._become_leader(now, gs, out)
        elif gs.tie != TIE_NONE and not gs.tie_asked and total + 1 >= gs.quorum:
            gs.tie_asked = True
            out.append(Send(witness_id(gs.gi), TieVote(gs.gi, gs.term, have, False)))

    def _sticky(self, now: int, gs: GroupState, src: int) -> bool:
        """Leader stickiness (and the lease promise): refuse to help anyone but the node we
        heard from (an ack or our vote) within the election timeout."""
        if gs.role == LEADER:
            return True
        return now < gs.block_until and gs.heard_from != src

    def _confirmed_leader(self, now: int, gs: GroupState) -> int:
        """The leader we heard from within the election timeout, else -1 (never a mere hint)."""
        if gs.role == LEADER:
            return self.rank
        if gs.leader >= 0 and gs.heard_from == gs.leader and now < gs.block_until:
            return gs.leader
        return -1

    def _contact(self, gs: GroupState, dst: int, out: list[Effect]) -> None:
        """Reach a (hinted) leader: a Ping in a leaf group, a SlotHandover above."""
        if gs.leaf:
            out.append(Send(dst, self._ping(gs)))
        else:
            out.append(Send(dst, SlotHandover(gs.gi, gs.myslot, self._child_term(gs))))

    def _adopt_term(
        self, now: int, gs: GroupState, term: int, out: list[Effect], *, may_vote: bool = False
    ) -> None:
        """A higher term exists: forget any older leader (caller persists). Only a RequestVote
        for ``term`` leaves us free to vote in it; a term learned any other way may already have
        had our slot's vote (from an earlier holder, or from us before a restart without state),
        so we abstain in it (``voted_for`` -2)."""
        if gs.role == LEADER:
            self._step_down(now, gs, out)
        gs.term = term
        gs.voted_for = -1 if may_vote else ABSTAIN
        if gs.role != FOLLOWER:
            gs.role = FOLLOWER
        if gs.leader >= 0:
            self._lose_leader(now, gs, out)

    def _on_prevote(self, now: int, src: int, msg: PreVote, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None:
            return
        if not gs.leaf and 0 <= msg.slot < gs.size and gs.role != LEADER:
            gs.holders[msg.slot] = src
        if (
            self.health
            and gs.role == PRECANDIDATE
            and msg.slot < gs.myslot
            and msg.term == self._next_term(gs.cand_start, gs)
        ):
            # a lower rank stands in the same round as we do: our loop lags, so our candidacy
            # timers ran late together (a starved loop runs every due timer before it reads
            # what arrived). Give way, or the round splits the votes of every member.
            gs.role = FOLLOWER
            wait = backoff(gs.tm.heartbeat, self.health, 1)
            self._arm_candidacy(now, gs, out, extra=wait + self.rng.randrange(wait + 1))
        granted = msg.term > gs.term and not self._sticky(now, gs, src)
        leader = self._confirmed_leader(now, gs)
        out.append(Send(src, PreVoteResp(gs.gi, msg.term, granted, gs.myslot, leader, gs.term)))

    def _on_prevote_resp(self, now: int, src: int, msg: PreVoteResp, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.role != PRECANDIDATE or msg.term != self._next_term(gs.cand_start, gs):
            return
        if msg.granted:
            gs.grants |= 1 << msg.slot
            self._check_prevote(now, gs, out)
        elif msg.leader >= 0 and msg.leader != self.rank and msg.leader_term >= gs.term:
            self._adopt_hint(now, gs, msg.leader, msg.leader_term, out)
        elif msg.leader_term > msg.term:
            # the voter knows a term above the one we stand in (our wall clock lags, or we
            # missed elections): take it (abstaining in it) and stand above it in the next round;
            # without it we waited for our wall clock to catch up. (An equal term is not taken:
            # the voter voted in it, but the others may still grant our round.)
            self._adopt_term(now, gs, msg.leader_term, out)
            self._persist(gs, out)

    def _adopt_hint(
        self, now: int, gs: GroupState, leader: int, term: int, out: list[Effect]
    ) -> None:
        """Someone named a leader: contact it for an election timeout; only its Ack makes it
        our leader (a hint never blocks votes nor is passed on)."""
        if gs.leader >= 0 or gs.role == LEADER:
            return
        gs.role = FOLLOWER
        gs.hint = leader
        gs.hint_until = now + gs.tm.election
        self._contact(gs, leader, out)

    def _on_leader_hint(self, now: int, src: int, msg: LeaderHint, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None:
            return
        if msg.leader < 0:
            # no leader known to the sender, only the group's term as it knows it (the answer
            # to our SlotHandover): a new slot holder must not stand or vote below it
            if msg.term > gs.term and not gs.leaf:
                hear_term(gs, msg.term)
                self._adopt_term(now, gs, msg.term, out)
                self._persist(gs, out)
            return
        if gs.role == LEADER or msg.leader == self.rank:
            return
        if msg.term < gs.term:
            return
        self._adopt_hint(now, gs, msg.leader, msg.term, out)

    def _on_request_vote(self, now: int, src: int, msg: RequestVote, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None:
            return
        if self.no_disk:
            # a vote we cannot make durable is no vote: refuse, and change nothing
            leader = self._confirmed_leader(now, gs)
            out.append(Send(src, VoteResp(gs.gi, gs.term, False, gs.myslot, leader)))
            return
        if msg.term <= gs.vote_floor:
            # amnesiac: we may have voted in this term before we lost our state; abstain in it
            hear_term(gs, msg.term)
            if msg.term > gs.term:
                self._adopt_term(now, gs, msg.term, out)
                self._persist(gs, out)
            out.append(Send(src, VoteResp(gs.gi, gs.term, False, gs.myslot, -1)))
            return
        if msg.term < gs.term or self._sticky(now, gs, src):
            leader = self._confirmed_leader(now, gs)
            out.append(Send(src, VoteResp(gs.gi, gs.term, False, gs.myslot, leader)))
            return
        changed = False
        if msg.term > gs.term:
            self._adopt_term(now, gs, msg.term, out, may_vote=True)
            changed = True
        if gs.voted_for == -1 or gs.voted_for == src:
            gs.voted_for = src
            gs.block_until = now + gs.tm.election
            gs.heard_from = src
            self._persist(gs, out)
            out.append(Emit(VoteGranted(gs.gi, gs.term, src)))
            out.append(Send(src, VoteResp(gs.gi, gs.term, True, gs.myslot, -1)))
            return
        if changed:
            self._persist(gs, out)
        out.append(Send(src, VoteResp(gs.gi, gs.term, False, gs.myslot, -1)))

    def _on_storage(self, now: int, durable: bool, out: list[Effect]) -> None:
        """The driver can (``durable``) or cannot make our state durable. A (pre-)candidacy in
        progress is given up: its round's answers are ignored from here on, and the armed
        candidacy timer finds us a follower."""
        self.no_disk = not durable
        if durable:
            return
        for gs in self.states:
            if gs is not None and gs.role in (PRECANDIDATE, CANDIDATE):
                gs.role = FOLLOWER
                if not gs.cand_armed:
                    self._arm_candidacy(now, gs, out, extra=gs.tm.election)

    def _on_vote_resp(self, now: int, src: int, msg: VoteResp, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None:
            return
        hear_term(gs, msg.term)
        if msg.term > gs.term:
            self._adopt_term(now, gs, msg.term, out)
            self._persist(gs, out)
            return
        if gs.role == CANDIDATE and msg.term == gs.term and msg.granted:
            if 0 <= msg.slot < gs.size:
                gs.grants |= 1 << msg.slot
                if not gs.leaf:
                    gs.holders[msg.slot] = src
            self._check_votes(now, gs, out)

    def _on_tie_vote_resp(self, now: int, src: int, msg: TieVoteResp, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or not msg.granted:
            return
        if msg.pre:
            if gs.role == PRECANDIDATE and msg.term == self._next_term(gs.cand_start, gs):
                gs.tie_granted = True
                self._check_prevote(now, gs, out)
        elif gs.role == CANDIDATE and msg.term == gs.term:
            gs.tie_granted = True
            self._check_votes(now, gs, out)

    def _become_leader(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        tm = gs.tm
        gs.role = LEADER
        gs.leader = self.rank
        gs.leader_inc = self.inc
        gs.heard_from = self.rank
        gs.cand_armed = False
        gs.strain = 0  # (now: no lapsed lease)
        out.append(CancelTimer(gs.key_cand))
        size = gs.size
        gs.last = [now] * size
        gs.echo = echo = [0] * size
        # a vote answered our RequestVote of cand_start as an echo answers a heartbeat: the
        # voters are promised the lease their votes gave us from the first ack on (``_promise``),
        # the others once they echo (one round trip more, and an ack and an echo more each)
        grants = gs.grants
        for s in range(size):
            if grants >> s & 1 and s != gs.myslot:
                echo[s] = gs.cand_start
        gs.delay = [0] * size
        gs.status = bytearray(size)
        gs.incs = [0] * size
        gs.since = [now] * size
        gs.tie_echo = gs.cand_start if gs.tie_granted else 0
        if gs.leaf:
            prev = gs.prev_leader - gs.first
            if 0 <= prev < size and prev != gs.myslot:
                gs.last[prev] = gs.prev_heard
                gs.incs[prev] = gs.prev_inc
        else:
            gs.child_terms = [0] * size
            for s in range(size):
                if gs.holders[s] < 0:
                    gs.status[s] = PENDING
                elif gs.holders[s] == gs.prev_leader and s != gs.myslot:
                    # the old leader's slot has been silent since we last heard it, not since now
                    # (as in a leaf group): a cut-off old leader's site is found an election
                    # timeout sooner
                    gs.last[s] = gs.prev_heard
                    gs.incs[s] = gs.prev_inc
        gs.lease_until = gs.lease_reported = gs.cand_start + tm.lease
        gs.view_id += 1
        out.append(Emit(LeaderChanged(gs.gi, self.rank, gs.term)))
        out.append(Emit(ViewChanged(gs.gi, gs.view_id)))
        out.append(Emit(LeaseChanged(gs.gi, gs.term, True, gs.lease_until)))
        self._set_quorate(gs, True, out)
        out.append(SetTimer(gs.key_lease, gs.lease_until - lease_urgency(gs)))
        out.append(SetTimer(gs.key_tick, now + tm.heartbeat))
        self._heartbeat(now, gs, out)
        if not gs.leaf:
            self._send_roster(gs, out)
        self._flush_backlog(now, gs, out)
        self._leader_tick(now, gs, out, heartbeat=False)
        if gs.level + 1 < len(self.path):
            self._join(now, gs.level + 1, out)

    def _step_down(
        self, now: int, gs: GroupState, out: list[Effect], retry_ns: int | None = None
    ) -> None:
        """Stop leading ``gs`` (lease lost or a higher term) and leave every group above it."""
        for lvl in range(len(self.states) - 1, gs.level, -1):
            self._leave(now, lvl, out)
        gs.role = FOLLOWER
        gs.leader = -1
        gs.prev_leader = self.rank
        gs.heard_from = -1
        gs.strain = 0  # (now: no failed rounds yet)
        out.append(Emit(LeaseChanged(gs.gi, gs.term, False, gs.lease_until)))
        out.append(Emit(LeaderChanged(gs.gi, None, gs.term)))
        self._set_quorate(gs, False, out)
        out.append(CancelTimer(gs.key_lease))
        gs.lease_until = gs.lease_reported = NEVER
        gs.last = gs.echo = gs.delay = gs.incs = gs.since = gs.child_terms = NO_INTS
        gs.status = NO_BYTES
        gs.doubts = None
        if not gs.cand_armed:
            extra = gs.tm.election if retry_ns is None else retry_ns
            self._arm_candidacy(now, gs, out, extra=extra)

    def _successor(self, now: int, gs: GroupState) -> int:
        """The member to hand leadership to: the lowest-slot active member that echoed us in
        this term within two heartbeats (-1: none, keep leading)."""
        recent = now - 2 * gs.tm.heartbeat
        for s in range(gs.size):
            if s == gs.myslot or gs.status[s] != ALIVE or gs.echo[s] <= 0 or gs.last[s] < recent:
                continue
            node = gs.first + s if gs.leaf else gs.holders[s]
            if node >= 0 and self.admin_mode(node) == ACTIVE:
                return node
        return -1

    def _resign_all(self, now: int, out: list[Effect]) -> bool:
        """We are in maintenance or drained: hand every group we lead to an active member, top
        group first (stepping down below leaves the groups above). True if any was handed."""
        handed = False
        for lvl in range(len(self.states) - 1, -1, -1):
            gs = self.states[lvl]
            if gs is None or gs.role != LEADER or not now < gs.lease_until:
                continue
            successor = self._successor(now, gs)
            if successor < 0:
                continue
            members = self._members(gs)
            term = gs.term
            gs.lease_until = now  # released before anyone may vote for the successor
            self._step_down(now, gs, out)
            gs.heard_from = successor  # our own vote goes to the successor only
            gs.block_until = now + gs.tm.election
            msg = Handoff(gs.gi, term, successor)
            for dst in members:
                out.append(Send(dst, msg))
            if gs.tie != TIE_NONE:
                # the tie-breaker holds its vote for us for a while: the successor, who may need
                # it, would stand in vain, and we (maintenance or not) win again and hand over
                # again (fuzz seed 26507: a 3-node group with one node dead, for 10 s)
                out.append(Send(witness_id(gs.gi), TieRelease(gs.gi, term)))
            handed = True
        return handed

    def _on_handoff(self, now: int, src: int, msg: Handoff, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.role == LEADER or msg.term != gs.term:
            return
        if gs.leader != src and gs.heard_from != src:
            return  # only the leader we follow can hand its group over
        if gs.leader == src:
            self._lose_leader(now, gs, out)
        gs.heard_from = msg.successor  # our promise to the old leader passes to the successor
        if msg.successor == self.rank and gs.role == FOLLOWER:
            self._start_election(now, gs, out)
