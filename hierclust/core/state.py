"""What one node holds, the queries on it, and the helpers every concern of the protocol uses.

Theory of operation
-------------------
Per group it sits in, a node keeps a :class:`GroupState`. The tables a leader needs (per slot:
last heard, lease echo, status, incarnation) exist only while it leads, so a plain leaf member
costs one small object. :class:`NodeState` holds the node-wide fields (incarnation, the notices
it knows, the admin table, pending retransmits, persisted votes) and answers the read-only
queries of drivers, checkers and reports (leader, term, lease, quorum, primary component,
fencing token). :class:`PersistentState` is what must survive a restart.

This module handles no message and no timer: the concerns (``heartbeats``, ``detection``,
``elections``, ``slots``, ``flood``, ``modes``) do, as mixins over :class:`NodeState`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from hierclust.core.fast import new_ack, new_emit
from hierclust.core.layout import Layout, layout_of
from hierclust.core.messages import FLAG_LEASE, FLAG_PRIMARY, Ack, Ping
from hierclust.core.types import (
    ACTIVE,
    Admin,
    Effect,
    Emit,
    Notice,
    Persist,
    QuorumChanged,
    Subtree,
    ViewChanged,
)
from hierclust.topology.model import Topology
from hierclust.tuning import Tuning

FOLLOWER: Final = 0
PRECANDIDATE: Final = 1
CANDIDATE: Final = 2
LEADER: Final = 3

# slot status, leader side
ALIVE: Final = 0
SUSPECT: Final = 1
FAILED: Final = 2
PENDING: Final = 3
EMPTY: Final = 4

NEVER: Final = -(1 << 62)
UNHEARD: Final = 1 << 62
"""``vote_floor`` of an amnesiac node that has not yet heard a term of the group: no votes."""
ABSTAIN: Final = -2
"""``voted_for`` when we know a term but not whether our slot already voted in it."""
NO_INTS: list[int] = []
"""The shared empty table of a group this node does not lead (never written to)."""
NO_BYTES = bytearray()


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What must survive a restart: the incarnation and, per group, ``(group, term, voted_for)``
    (``voted_for`` -1 = no vote in that term)."""

    incarnation: int
    votes: tuple[tuple[int, int, int], ...] = ()


def hear_term(gs: GroupState, term: int) -> None:
    """An amnesiac node heard a term of the group: it may vote again, in later terms."""
    if gs.vote_floor == UNHEARD:
        gs.vote_floor = term


def member_quorate(gs: GroupState, now: int) -> bool:
    """A member's belief that its group is quorate: its leader's acks report a lease, and the
    reported lease has not been over for a heartbeat without renewal."""
    return gs.quorate and now < gs.quorate_until + gs.tm.heartbeat


def lease_urgency(gs: GroupState) -> int:
    """How long before its lease lapses a leader asks lagging members for an immediate echo."""
    return min(gs.tm.heartbeat, gs.tm.lease) // 2


class GroupState:
    """This node's state in one group it sits in."""

    # (the fields of the heartbeat paths first, together: fewer cache lines per message)
    __slots__ = (
        "gi",
        "role",
        "term",
        "leader",
        "myslot",
        "leaf",
        "first",
        "size",
        "tm",
        "heard_ns",
        "block_until",
        "heard_from",
        "stamp",
        "view_id",
        "up",
        "up_term",
        "above",
        "leader_inc",
        "primary",
        "quorate",
        "quorate_until",
        "hint",
        "mismatch",
        "pull_at",
        "pull_gap",
        "vote_floor",
        "key_tick",
        "bcast",
        "lease_until",
        "status",
        "last",
        "echo",
        "delay",
        "incs",
        "holders",
        "level",
        "quorum",
        "tie",
        "voted_for",
        "hint_until",
        "prev_leader",
        "prev_heard",
        "prev_inc",
        "cand_start",
        "grants",
        "tie_granted",
        "tie_asked",
        "cand_armed",
        "key_cand",
        "key_lease",
        "since",
        "child_terms",
        "lease_reported",
        "tie_echo",
        "backlog",
        "doubts",
        "strain",
    )

    def __init__(self, layout: Layout, gi: int, level: int, myslot: int) -> None:
        self.gi = gi
        self.level = level
        self.leaf = layout.leaf[gi]
        self.first = layout.first[gi]
        self.size = layout.size[gi]
        self.quorum = layout.quorum[gi]
        self.tie = layout.tie[gi]
        self.tm = layout.timing[gi]
        self.myslot = myslot
        self.term = 0
        self.voted_for = -1
        self.leader = -1
        self.leader_inc = 0
        self.heard_ns = NEVER
        self.heard_from = -1
        self.block_until = NEVER
        self.hint = -1
        self.hint_until = NEVER
        self.stamp = 0
        self.view_id = 0
        self.up = -1
        self.up_term = 0
        self.above: tuple[int, ...] = ()  # the terms of the groups above the parent (acks)
        self.quorate = False
        self.quorate_until = NEVER
        self.primary = False
        self.prev_leader = -1
        self.prev_heard = NEVER
        self.prev_inc = 0
        self.role = FOLLOWER
        self.cand_start = 0
        self.grants = 0
        self.tie_granted = False
        self.tie_asked = False
        self.cand_armed = False
        self.mismatch = 0
        self.pull_at = 0  # no Pull in this group before (see Heartbeats._pull)
        self.pull_gap = 0  # the back-off of the next Pull (0: none sent since digests matched)
        self.key_tick, self.key_cand, self.key_lease = layout.keys[gi]
        # roster knowledge (tier >= 1 groups); leader tables (only while leading)
        self.holders: list[int] = NO_INTS
        self.last: list[int] = NO_INTS
        self.echo: list[int] = NO_INTS
        self.delay: list[int] = NO_INTS  # leader: each member's recent echo delay (decaying max)
        self.status: bytearray = NO_BYTES
        self.incs: list[int] = NO_INTS
        self.since: list[int] = NO_INTS  # tier >= 1: when a slot went pending; leaf: rounds
        self.child_terms: list[int] = NO_INTS
        self.lease_until = NEVER
        self.lease_reported = NEVER
        self.tie_echo = 0
        self.backlog: list[Notice] | None = None  # notices for a leader not known yet
        # tier >= 1 leader, its probes awaiting a verdict: former slot holders being probed before
        # they are declared (node -> inc), and under ~slot (a negative key) pending slots whose
        # child group is being swept (-> rounds left). One field for both: a leaf member's
        # GroupState stays as small as it was.
        self.doubts: dict[int, int] | None = None
        # votes are refused in terms <= this (only an amnesiac node sets it; see Node.amnesiac)
        self.vote_floor = NEVER
        self.bcast = 0  # leader: stamp of its last heartbeat Ack to all members
        # local-health bookkeeping, one field for both roles (a leaf member's state is kept
        # small): not leading, the (pre-)vote rounds in a row that ended without a result;
        # leading, when it gives up a lease that lapsed while its own loop lagged (0: none;
        # see Heartbeats._on_lease)
        self.strain = 0


class NodeState:
    """The fields of one node and the queries on them; the protocol's concerns are mixins over
    it, composed into :class:`hierclust.core.node.Node`."""

    # (hot fields first: the simulator touches 100,000s of nodes in random order)
    __slots__ = (
        "leaf_gs",
        "inc",
        "dcount",
        "dhash",
        "rank",
        "states",
        "health",
        "rng",
        "layout",
        "path",
        "known",
        "pending",
        "seq",
        "votes",
        "amnesiac",
        "expiry",
        "refuted_at",
        "admin",
        "range_seq",
        "mode",
        "wall",
        "forgotten",
        "reach",
        "no_disk",
    )

    def __init__(
        self,
        topology: Topology,
        rank: int,
        *,
        rng: random.Random,
        incarnation: int = 1,
        persisted: PersistentState | None = None,
        tuning: Tuning | None = None,
        amnesiac: bool = False,
    ) -> None:
        """``amnesiac``: this node lost its durable state (not a first boot): it may have voted
        in terms it no longer knows of. In every group it then grants no vote until it has heard
        a term of that group (an Ack, a vote request or answer, a roster) and afterwards only in
        later terms, on top of the election timeout every start waits."""
        self.layout = layout_of(topology, tuning)
        self.amnesiac = amnesiac
        self.rank = rank
        self.rng = rng
        self.path = self.layout.path(rank)
        self.states: list[GroupState | None] = [None] * len(self.path)
        # states[0] once started (the leaf group is never left; None: not started yet), one
        # indirection less for the hot paths: most messages and timers are about the leaf group
        self.leaf_gs: GroupState | None = None
        # failure and alive notices by the node they are about (few per node), so a leader can
        # look up what is known about a member's incarnations: ``(notice, born, notice, born,
        # ...)`` in the order heard, ``born`` when we date a failure notice by our own clock (None
        # for an alive notice). Dating inside this tuple, not in a dict of its own, saves about
        # 240 bytes a node, a quarter of what learning one failure adds to it (a 10,000-node run)
        self.known: dict[int, tuple[Any, ...]] | None = None
        self.dcount = 0
        self.dhash = 0
        self.pending: dict[int, dict[int, list[Any]]] | None = None
        self.seq = 0
        self.health = 0
        # (group, term, voted_for) per group we sat or voted in, in group order: the record each
        # Persist writes, shared with its PersistentState (no dict per node: most hold one group)
        self.votes: tuple[tuple[int, int, int], ...] = ()
        # (when the newest failure notice about a node ages out, node): a heap, for compaction
        self.expiry: list[tuple[int, int]] | None = None
        self.refuted_at = NEVER  # when an ack last made us take a new incarnation
        # admin notices by notice_key; the newest covering a rank gives its mode
        self.admin: dict[int, Admin] | None = None
        self.range_seq = 0  # highest seq of an admin or subtree notice seen (a logical clock)
        self.mode = ACTIVE  # our own admin mode
        self.wall = 0  # this host's wall clock minus its monotonic clock (Start, WallClock)
        # notices compacted away by age, by notice_key -> until when they stay forgotten (a
        # late copy from a peer whose reckoning of the age is behind ours is not learned anew)
        self.forgotten: dict[int, int] | None = None
        # subtree notices: the newest per group (see reach.py)
        self.reach: dict[int, Subtree] | None = None
        # the driver cannot make our state durable (a Storage input): no vote, no candidacy
        self.no_disk = False
        self.inc = incarnation
        if persisted is not None:
            self.inc = max(incarnation, persisted.incarnation + 1)
            if persisted.votes:
                # one record per group (the last one read), in group order
                self.votes = tuple(sorted({g: (g, t, v) for g, t, v in persisted.votes}.values()))

    def can_persist(self) -> bool:
        """False while the driver reports that it cannot make this node's state durable (the
        node then neither votes nor stands for election)."""
        return not self.no_disk

    @property
    def incarnation(self) -> int:
        return self.inc

    def groups(self) -> tuple[int, ...]:
        """Groups this node currently sits in, leaf first."""
        return tuple(gs.gi for gs in self.states if gs is not None)

    def leader_of(self, group: int) -> int | None:
        gs = self._gs(group)
        return None if gs is None or gs.leader < 0 else gs.leader

    def term(self, group: int) -> int:
        gs = self._gs(group)
        if gs is not None:
            return gs.term
        for g, t, _ in self.votes:
            if g == group:
                return t
        return 0

    def voted_for(self, group: int) -> int | None:
        gs = self._gs(group)
        v = gs.voted_for if gs is not None else -1
        return None if v < 0 else v

    def slot_holders(self, group: int) -> tuple[int, ...]:
        """Tier >= 1 group: who holds each slot as this node knows it (-1 = empty/pending)."""
        gs = self._gs(group)
        return () if gs is None or gs.leaf else tuple(gs.holders)

    def is_leader(self, group: int) -> bool:
        gs = self._gs(group)
        return gs is not None and gs.role == LEADER

    def lease_valid(self, group: int, now: int) -> bool:
        gs = self._gs(group)
        return gs is not None and gs.role == LEADER and now < gs.lease_until

    def lease_until(self, group: int) -> int | None:
        gs = self._gs(group)
        return gs.lease_until if gs is not None and gs.role == LEADER else None

    def quorate(self, group: int, now: int) -> bool:
        """Leader: holds its lease (exact). Member: follows a leader whose acks report a lease;
        this belief ends when the leader is lost, an ack reports no lease, or the reported lease
        ran out a heartbeat ago without renewal, so it may outlive the leader's lease by up to
        a heartbeat plus latency. Safety checks should use leaders' leases."""
        gs = self._gs(group)
        if gs is None:
            return False
        if gs.role == LEADER:
            return now < gs.lease_until
        return member_quorate(gs, now)

    def in_primary(self, now: int) -> bool:
        """Every group on this node's path up to the root is quorate (primary component)."""
        return self._primary(now)

    def primary_until(self, now: int) -> int | None:
        """When :meth:`in_primary` turns false if nothing more arrives: the earliest end of a
        lease this node holds on its path up or, for a member at the top, of the lease its
        leader's acks reported (plus the heartbeat :func:`member_quorate` allows). None when it
        is not in the primary component now. A driver that must act as soon as the node leaves
        the primary component sets a timer for this instant and asks again after every step."""
        if not self._primary(now):
            return None
        until: int | None = None
        top = None
        for gs in self.states:
            if gs is None:
                continue
            top = gs
            if gs.role == LEADER and (until is None or gs.lease_until < until):
                until = gs.lease_until
        if top is not None and top.role != LEADER:
            member = top.quorate_until + top.tm.heartbeat
            until = member if until is None else min(until, member)
        return until

    def fencing_token(self, group: int, now: int) -> tuple[int, int, int] | None:
        """``(tier, group, term)`` while this node leads ``group`` with a valid lease."""
        if not self.lease_valid(group, now):
            return None
        return (self.layout.tier[group], group, self.term(group))

    def view_id(self, group: int) -> int:
        gs = self._gs(group)
        return 0 if gs is None else gs.view_id

    def persistent_state(self) -> PersistentState:
        return PersistentState(self.inc, self.votes)

    def _gs(self, gi: int) -> GroupState | None:
        gs = self.leaf_gs
        if gs is not None and gs.gi == gi:
            return gs  # the leaf group: most messages are about it
        for gs in self.states:
            if gs is not None and gs.gi == gi:
                return gs
        return None

    def _new_state(self, level: int) -> GroupState:
        gi = self.path[level]
        myslot = (
            self.rank - self.layout.first[gi]
            if level == 0
            else self.layout.slot_in_parent[self.path[level - 1]]
        )
        gs = GroupState(self.layout, gi, level, myslot)
        for g, t, v in self.votes:
            if g == gi:
                gs.term, gs.voted_for = t, v
        if self.amnesiac:
            gs.vote_floor = UNHEARD
        if not gs.leaf:
            gs.holders = [-1] * gs.size
            gs.holders[myslot] = self.rank
        self.states[level] = gs
        if level == 0:
            self.leaf_gs = gs
        return gs

    def _persist(self, gs: GroupState | None, out: list[Effect]) -> None:
        if gs is not None:
            gi = gs.gi
            record = (gi, gs.term, gs.voted_for)
            votes = self.votes
            if len(votes) == 1 and votes[0][0] == gi:
                self.votes = (record,)  # a node's usual case: its leaf group only
            else:
                self.votes = tuple(sorted((*(r for r in votes if r[0] != gi), record)))
        out.append(Persist(self.persistent_state()))

    def _voters(self, gs: GroupState, answered: int = 0) -> list[int]:
        """Everyone to ask for a vote: members of a leaf group; known holders (or the first rank
        of the child, the usual leader) for a tier >= 1 group; but none whose slot's bit is set
        in ``answered``."""
        me = self.rank
        if gs.leaf:
            first = gs.first
            return [first + s for s in range(gs.size) if first + s != me and not answered >> s & 1]
        firsts = self.layout.child_first[gs.gi]
        found: list[int] = []
        for s in range(gs.size):
            if answered >> s & 1:
                continue
            h = gs.holders[s]
            dst = h if h >= 0 else firsts[s]
            if dst != me and dst not in found:
                found.append(dst)
        return found

    def _members(self, gs: GroupState) -> list[int]:
        """Live members as the leader sees them (not itself)."""
        return [rank for _, rank in self._member_slots(gs)]

    def _member_slots(self, gs: GroupState) -> Iterator[tuple[int, int]]:
        """``(slot, rank)`` of each live member as the leader sees it (not itself): in a leaf
        group every member not failed, above it every known holder alive, suspect or pending."""
        me = self.rank
        status = gs.status
        if gs.leaf:
            first = gs.first
            for s in range(gs.size):
                if status[s] != FAILED and first + s != me:
                    yield s, first + s
            return
        for s, h in enumerate(gs.holders):
            if h >= 0 and h != me and status[s] in (ALIVE, SUSPECT, PENDING):
                yield s, h

    def _primary(self, now: int) -> bool:
        top = None
        for gs in self.states:
            if gs is None:
                continue
            top = gs
            if gs.role == LEADER and not now < gs.lease_until:
                return False
        if top is None:
            return False
        if top.role == LEADER:
            # only the root's leader is primary on its own lease; a leader below the root whose
            # parent group it has not joined yet (the instant it wins, before the join) knows
            # nothing of the groups above it, and a cut-off site's new leader told its members
            # they were primary in its first heartbeat
            return top.level == len(self.states) - 1 and now < top.lease_until
        return member_quorate(top, now) and top.primary

    def _known_term(self, level: int) -> int:
        """The term of the group at ``level`` of our path: ours if we sit in it, else the
        highest that the acks of a group below told of (-1: none)."""
        states = self.states
        gs = states[level]
        if gs is not None:
            return gs.term
        best = -1
        for lvl in range(level):
            low = states[lvl]
            if low is None:
                continue
            gap = level - lvl
            if gap == 1:
                term = low.up_term
            else:
                above = low.above
                term = above[gap - 2] if gap - 2 < len(above) else -1
            if term > best:
                best = term
        return best

    def _up_of(self, gs: GroupState) -> tuple[int, int, tuple[int, ...]]:
        """What an ack in ``gs`` tells of the groups above: the parent's leader and term, and
        the terms of the groups above the parent, as far as this node knows them. A member
        that goes on to lead joins each group above with the term it was told (``_join``):
        before, it knew only its parent group's, and in the nemesis campaign a node that took
        over a tier-1 group and then its tier-2 slot, whose previous holders had all left,
        elected with a term 42 s of wall clock below the last one."""
        lvl = gs.level + 1
        states = self.states
        if lvl >= len(states):
            return -1, 0, ()
        parent = states[lvl]
        up = parent.leader if parent is not None else -1
        up_term = max(self._known_term(lvl), 0)
        above = tuple(self._known_term(k) for k in range(lvl + 1, len(states)))
        return up, up_term, above

    def _ack(self, now: int, gs: GroupState, flags: int, until: int | None = None) -> Ack:
        """The leader's ack in ``gs``, promising the lease up to ``until`` (default: all of
        it; :meth:`_promise` for one member). No lease left to promise: neither the lease nor
        the primary flag."""
        if until is None or until > gs.lease_until:
            until = gs.lease_until
        left = 0
        if now < until:
            flags |= FLAG_LEASE
            left = until - now
            if self._primary(now):
                flags |= FLAG_PRIMARY
        up, up_term, above = self._up_of(gs)
        return new_ack(
            gs.gi, gs.term, self.inc, now, gs.view_id, flags, left, up, up_term, self.dcount,
            self.dhash, above,
        )  # fmt: skip

    @staticmethod
    def _promise(gs: GroupState, s: int) -> int:
        """How far our acks promise the lease to the member in slot ``s``: as far as its own
        latest echo in this term could hold it (its stamp plus a lease), never further than
        the lease. A member whose echoes stopped (a one-way cut: our acks reach it, its pings
        never reach us) thus leaves the quorum, and the primary component, within a lease and
        a heartbeat of its last echo, as if the cut went both ways, instead of following us
        until we declare it; and a new leader promises a member nothing until it has echoed
        (in the nemesis campaign such a member, re-elected into a group whose new leader could
        not hear it, held itself primary 4.8 s into a one-way cut)."""
        return gs.echo[s] + gs.tm.lease

    def _ping(self, gs: GroupState) -> Ping:
        return Ping(gs.gi, gs.term, gs.myslot, self.inc, gs.stamp, self.dcount, self.dhash)

    def _set_quorate(self, gs: GroupState, value: bool, out: list[Effect]) -> None:
        if gs.quorate != value:
            gs.quorate = value
            out.append(new_emit(QuorumChanged(gs.gi, value)))

    def _bump_view(self, gs: GroupState, out: list[Effect]) -> None:
        gs.view_id += 1
        out.append(Emit(ViewChanged(gs.gi, gs.view_id)))

    def _next_seq(self, now: int) -> int:
        """The ``seq`` of an admin or subtree notice this node issues: after every one it has
        seen, and at least its wall clock in ms (a hybrid logical clock: notices from different
        nodes that have not seen each other are ordered by wall clocks, then issuer)."""
        return max(self.range_seq + 1, self._wall_ms(now))

    def _wall_ms(self, now: int) -> int:
        """This host's wall clock in ms: what upper-tier terms and admin commands start from when
        the node knows of no higher value (they never go below what it knows)."""
        return (now + self.wall) // 1_000_000

    def _refute(self, out: list[Effect]) -> None:
        """We were declared failed while alive: come back as a new incarnation."""
        self.inc += 1
        out.append(Persist(self.persistent_state()))

    if TYPE_CHECKING:
        # Calls from one concern into another, by the module that defines them (the composed
        # Node has them all; declaring them here lets each mixin be type-checked on its own).
        # elections.py
        def _adopt_term(
            self, now: int, gs: GroupState, term: int, out: list[Effect], *, may_vote: bool = False
        ) -> None: ...
        def _arm_candidacy(
            self, now: int, gs: GroupState, out: list[Effect], extra: int = 0
        ) -> None: ...
        def _confirmed_leader(self, now: int, gs: GroupState) -> int: ...
        def _contact(self, gs: GroupState, dst: int, out: list[Effect]) -> None: ...
        def _lose_leader(self, now: int, gs: GroupState, out: list[Effect]) -> None: ...
        def _resign_all(self, now: int, out: list[Effect]) -> bool: ...
        def _step_down(
            self, now: int, gs: GroupState, out: list[Effect], retry_ns: int | None = None
        ) -> None: ...
        def _adopt_hint(
            self, now: int, gs: GroupState, leader: int, term: int, out: list[Effect]
        ) -> None: ...
        # detection.py
        def _declare(
            self, now: int, gs: GroupState, node: int, inc: int, out: list[Effect]
        ) -> None: ...
        def _scan(self, now: int, gs: GroupState, out: list[Effect]) -> None: ...
        # flood.py
        def _flush_backlog(self, now: int, gs: GroupState, out: list[Effect]) -> None: ...
        def _forward(
            self, now: int, notices: tuple[Notice, ...], via_level: int, src: int, out: list[Effect]
        ) -> None: ...
        def _known_about(self, node: int) -> tuple[int, int]: ...
        def _learn(self, now: int, notice: Notice, via: int | None, out: list[Effect]) -> bool: ...
        def _come_back(self, now: int, out: list[Effect]) -> None: ...
        def _newest(self, limit: int) -> tuple[Notice, ...]: ...
        def _aged(self, now: int, notices: tuple[Notice, ...]) -> tuple[Notice, ...]: ...
        def _unlearn(self, notice: Notice) -> int: ...
        # slots.py
        def _locate(self, gs: GroupState, out: list[Effect], *, unknown_only: bool) -> None: ...
        def _take_slot(
            self, now: int, gs: GroupState, s: int, node: int, out: list[Effect]
        ) -> None: ...
        def _send_roster(self, gs: GroupState, out: list[Effect]) -> None: ...
        def _child_term(self, gs: GroupState) -> int: ...
        def _join(self, now: int, level: int, out: list[Effect]) -> None: ...
        def _leave(self, now: int, level: int, out: list[Effect]) -> None: ...
        # modes.py
        def admin_mode(self, rank: int) -> int: ...
        def _superseding(self, notice: Admin) -> list[Admin]: ...
        def _learn_admin(
            self, now: int, notice: Admin, via: int | None, out: list[Effect]
        ) -> bool: ...
        # reach.py
        def _learn_subtree(
            self, now: int, notice: Subtree, via: int | None, out: list[Effect]
        ) -> bool: ...
        def _newer_subtree(self, notice: Subtree) -> Subtree | None: ...
        def _cut_off(self, now: int, gs: GroupState, s: int, out: list[Effect]) -> None: ...
        def _rejoined(self, now: int, gs: GroupState, out: list[Effect]) -> None: ...
        # heartbeats.py
        def _heartbeat(self, now: int, gs: GroupState, out: list[Effect]) -> None: ...
        def _leader_tick(
            self, now: int, gs: GroupState, out: list[Effect], *, heartbeat: bool = True
        ) -> None: ...
