"""One cluster agent as a pure state machine: ``Node.step(now_ns, input) -> list[Effect]``.

Theory of operation
-------------------
A node sits in its leaf group always, and in the group one tier up for as long as it leads the
group below (it fills that child group's *slot*). Per group it keeps a :class:`GroupState`; the
tables a leader needs (per slot: last heard, lease echo, status, incarnation) exist only while it
leads, so a plain leaf member costs one small object.

*Heartbeats* are driven by the leader: every ``heartbeat_ms`` it sends one :class:`Ack` carrying
its ``stamp`` (leader clock) to every member, and each member answers at once with a :class:`Ping`
echoing that stamp (so one event per member and heartbeat on each side, and no member timer: a
member only checks lazily, once per election timeout, whether the acks stopped). A leader answers
a Ping with an Ack only when it is not the answer to its latest heartbeat (a member finding it,
another term, news such as a refutation), so the exchange never loops. A member never grants a
(pre-)vote to anyone but the node it last heard from within ``election_timeout_ms`` of hearing
it, and it hears an Ack no earlier than its stamp. So when ``quorum`` voters echoed a stamp >= B,
nobody else can win before B + election timeout, and the leader's lease runs to B + ``lease_ms``
(smaller by at least the drift margin). The leader re-computes the lease once per tick and at
expiry (O(group size) per heartbeat period, so O(1) per member heartbeat) and steps down when it
cannot extend it. Half a heartbeat before a lapse it asks the members whose echo holds the lease
back for an immediate one (``FLAG_ECHO_NOW``), twice, which keeps leases through 20 % loss.
Acks report the remaining lease; members count their group quorate from it.

*Detection.* A leader scans its slots once per heartbeat. A leaf member silent for
``suspect_after_ms`` is probed directly and through ``indirect_probes`` helpers; no answer within
``confirm_ms`` and a valid lease -> :class:`Failure` notice. In a tier >= 1 group a silent slot is
only *pending* for ``slot_grace_ms``: the child group elects a new leader which takes over the slot
with :class:`SlotHandover`; the dead node itself is declared by its leaf group's new leader. A slot
still pending after the grace is emptied and its former holder is probed like a silent leaf member
(it may be alive and merely have stepped down when its child group lost quorum); only if nobody
hears from it within ``confirm_ms`` is it declared failed, which covers a child group that cannot
elect anyone.

*Elections.* A member that misses acks for ``election_timeout_ms`` (stretched by local health)
waits position x (``rank_delay_ms`` + ``election_jitter_ms``) + jitter (one rank step spans the
jitter window, so the lowest live rank stands first), runs a pre-vote (no term bump; refused while
voters still hear a leader; the tie-breaker is asked too), then a real vote; the vote is persisted
(a :class:`Persist` before the :class:`Send`). The winner's lease starts at its RequestVote; it
announces itself with an unsolicited Ack to every member and joins the parent group. A leader
that sees a higher term (in a Ping, or an Ack-ignoring member's Ping) steps down.

*Slots.* Members of a tier >= 1 group know the slot holders from the leader's :class:`Roster`.
A new holder sends :class:`SlotHandover` to the parent leader named in its old leader's acks
(``up``) and to the known holders. When a holder is unknown (cold start, or the dead node led the
parent too), :class:`Locate` goes to a random node under that child group and is answered with the
holder or with the next leader up that subtree, so the search climbs to the holder in <= depth hops.
A hint (a node named as leader by someone else) is only contacted; it becomes our leader when it
acks, and it never makes us refuse votes.

*Notices* flood along tree edges: from the group they came through into every other group the node
sits in (all members where it leads, else the leader), per-hop acked and retransmitted with
back-off; heartbeats carry a digest (count, xor-hash) and a mismatch seen twice triggers a pull.
Notices for a group whose leader is unknown wait in a bounded backlog for the next leader.

Events (the contract with checkers and reports)
-----------------------------------------------
- ``NoticeLearned(notice, via)`` once per notice identity per node (detector: ``via=None``).
- ``ElectionStarted(group, term)`` when a real vote starts (never for a pre-vote).
- ``VoteGranted(group, term, candidate)`` right after the Persist of that vote.
- ``LeaderChanged(group, leader|None, term)``: a member when an ack names a new leader or when it
  gives its leader up; the winner when it wins; a leader when it steps down.
- ``LeaseChanged(group, term, held, until_ns)``: on winning, at the leader's tick when the lease
  grew (pings extend it silently in between, so ``until_ns`` is a lower bound; query
  ``lease_until()`` for the exact value) and on loss (at the instant the lease ran out, or on a
  step-down for a higher term).
- ``ViewChanged(group, view_id)``: emitted by the leader only, on winning and on every membership
  change (failure, rejoin, slot hand-over); members adopt ``view_id`` from acks silently.
- ``QuorumChanged(group, quorate)``: leader with its lease; member from its leader's acks (turns
  False when an ack reports no lease or the leader is lost, at the member's lazy check; the
  ``quorate()`` query already says False a heartbeat after a reported lease ran out).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, fields
from typing import Any, Final

from hierclust.core.layout import TIE_NONE, Layout, layout_of
from hierclust.core.messages import (
    FLAG_ECHO_NOW,
    FLAG_LEASE,
    FLAG_PRIMARY,
    FLAG_REFUTE,
    MAX_NOTICES_PER_MESSAGE,
    Ack,
    Handoff,
    LeaderHint,
    Locate,
    Located,
    Notices,
    NoticesAck,
    Ping,
    PingReq,
    PreVote,
    PreVoteResp,
    Probe,
    ProbeAck,
    Pull,
    RequestVote,
    Roster,
    SlotHandover,
    TieRenew,
    TieRenewAck,
    TieVote,
    TieVoteResp,
    VoteResp,
)
from hierclust.core.quorum import lease_base
from hierclust.core.timeouts import health_after, retransmit_delay, stretched
from hierclust.core.types import (
    ACTIVE,
    ADMIN_MODES,
    Admin,
    Alive,
    CancelTimer,
    Command,
    Effect,
    ElectionStarted,
    Emit,
    Failure,
    Input,
    LeaderChanged,
    LeaseChanged,
    LoopLag,
    Notice,
    NoticeLearned,
    Persist,
    QuorumChanged,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
    Unreachable,
    ViewChanged,
    VoteGranted,
    witness_id,
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
MAX_BACKLOG = 256
"""Notices kept per group while it has no known leader; beyond that, digest repair catches up."""
MAX_PULL_BATCHES = 64
"""A pull is answered with at most this many Notices datagrams; the rest waits for the next pull."""
MAX_ADMIN = 4096
"""Admin notices a node keeps (the operator's modes, as rank ranges); beyond, the oldest go."""

_COMPACT_KEY: Final = ("x",)
"""Timer for notice compaction by age (one per node)."""
_RESIGN_KEY: Final = ("m",)
"""Timer: our admin mode became maintenance or drained; hand over what we lead."""
_NO_INTS: list[int] = []
_NO_BYTES = bytearray()


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The slot setters of a frozen, slotted dataclass whose fields are exactly ``names`` and
    that has no ``__post_init__`` (checked at import: a changed class fails loudly here rather
    than leave a field unset in the fast constructors below)."""
    found = tuple(f.name for f in fields(cls))
    if found != names or hasattr(cls, "__post_init__"):
        raise RuntimeError(f"{cls.__name__} changed ({found}): update its fast constructor")
    return tuple(cls.__dict__[name].__set__ for name in names)


# Fast constructors for the objects built per heartbeat: the very objects ``Send(...)`` and
# ``Ping(...)`` return (same class, same field values), but built by setting the slots directly;
# a frozen dataclass's ``__init__`` goes through ``object.__setattr__`` per field and takes
# about twice as long. Every datagram is a Send, and every heartbeat Ack is answered by a Ping.
_new = object.__new__
_SEND_DST, _SEND_MSG = _slot_setters(Send, ("dst", "msg"))
_PING_GROUP, _PING_TERM, _PING_SLOT, _PING_INC, _PING_ECHO, _PING_DCOUNT, _PING_DHASH = (
    _slot_setters(Ping, ("group", "term", "slot", "inc", "echo", "digest_count", "digest_hash"))
)


def _send(dst: int, msg: Any) -> Send:
    """``Send(dst, msg)``, fast (see above)."""
    effect: Send = _new(Send)
    _SEND_DST(effect, dst)
    _SEND_MSG(effect, msg)
    return effect


def _new_ping(
    group: int, term: int, slot: int, inc: int, echo: int, dcount: int, dhash: int
) -> Ping:
    """``Ping(group, term, slot, inc, echo, dcount, dhash)``, fast (see above)."""
    msg: Ping = _new(Ping)
    _PING_GROUP(msg, group)
    _PING_TERM(msg, term)
    _PING_SLOT(msg, slot)
    _PING_INC(msg, inc)
    _PING_ECHO(msg, echo)
    _PING_DCOUNT(msg, dcount)
    _PING_DHASH(msg, dhash)
    return msg


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What must survive a restart: the incarnation and, per group, ``(group, term, voted_for)``
    (``voted_for`` -1 = no vote in that term)."""

    incarnation: int
    votes: tuple[tuple[int, int, int], ...] = ()


def notice_key(notice: Notice) -> int:
    """Integer identity of a notice: ``(kind, node, incarnation)`` packed for a cheap dict key
    (an admin notice: a negative hash of its identity, so it never meets the others)."""
    if type(notice) is Admin:
        h = _mix(notice.node ^ (notice.count << 32))
        h = _mix(h ^ notice.seq)
        return -1 - _mix(h ^ ((notice.issuer << 2) | notice.mode))
    kind = 0 if type(notice) is Failure else 1
    return (notice.node << 33) | (notice.incarnation << 1) | kind  # type: ignore[union-attr]


def _mix(key: int) -> int:
    """Deterministic 64-bit mix (splitmix64 finaliser) so digests agree across processes."""
    x = (key + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


def _hear(gs: GroupState, term: int) -> None:
    """An amnesiac node heard a term of the group: it may vote again, in later terms."""
    if gs.vote_floor == UNHEARD:
        gs.vote_floor = term


def _member_quorate(gs: GroupState, now: int) -> bool:
    """A member's belief that its group is quorate: its leader's acks report a lease, and the
    reported lease has not been over for a heartbeat without renewal."""
    return gs.quorate and now < gs.quorate_until + gs.tm.heartbeat


def _urgency(gs: GroupState) -> int:
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
        "leader_inc",
        "primary",
        "quorate",
        "quorate_until",
        "hint",
        "mismatch",
        "vote_floor",
        "key_tick",
        "bcast",
        "lease_until",
        "status",
        "last",
        "echo",
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
        self.key_tick, self.key_cand, self.key_lease = layout.keys[gi]
        # roster knowledge (tier >= 1 groups); leader tables (only while leading)
        self.holders: list[int] = _NO_INTS
        self.last: list[int] = _NO_INTS
        self.echo: list[int] = _NO_INTS
        self.status: bytearray = _NO_BYTES
        self.incs: list[int] = _NO_INTS
        self.since: list[int] = _NO_INTS
        self.child_terms: list[int] = _NO_INTS
        self.lease_until = NEVER
        self.lease_reported = NEVER
        self.tie_echo = 0
        self.backlog: list[Notice] | None = None  # notices for a leader not known yet
        # tier >= 1 leader: former slot holders being probed before they are declared (node -> inc)
        self.doubts: dict[int, int] | None = None
        # votes are refused in terms <= this (only an amnesiac node sets it; see Node.amnesiac)
        self.vote_floor = NEVER
        self.bcast = 0  # leader: stamp of its last heartbeat Ack to all members


class Node:
    """The protocol for one node (``rank``) of ``topology``; see the module docstring."""

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
        "admin_seq",
        "mode",
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
        # notices by the node they are about (few per node), so a leader can look up what is
        # known about a member's incarnations
        self.known: dict[int, tuple[Failure | Alive, ...]] | None = None
        self.dcount = 0
        self.dhash = 0
        self.pending: dict[int, dict[int, list[Any]]] | None = None
        self.seq = 0
        self.health = 0
        self.votes: dict[int, tuple[int, int]] | None = None
        # (when the newest failure notice about a node ages out, node): a heap, for compaction
        self.expiry: list[tuple[int, int]] | None = None
        self.refuted_at = NEVER  # when an ack last made us take a new incarnation
        # admin notices by notice_key; the newest covering a rank gives its mode
        self.admin: dict[int, Admin] | None = None
        self.admin_seq = 0
        self.mode = ACTIVE  # our own admin mode
        self.inc = incarnation
        if persisted is not None:
            self.inc = max(incarnation, persisted.incarnation + 1)
            if persisted.votes:
                self.votes = {g: (t, v) for g, t, v in persisted.votes}

    # ------------------------------------------------------------------ driver entry point
    def step(self, now: int, inp: Input) -> list[Effect]:
        out: list[Effect] = []
        kind = type(inp)
        if kind is Received:
            handler = _HANDLERS.get(type(inp.msg))  # type: ignore[union-attr]
            if handler is not None:
                handler(self, now, inp.src, inp.msg, out)  # type: ignore[union-attr]
        elif kind is TimerFired:
            self._on_timer(now, inp.key, out)  # type: ignore[union-attr]
        elif kind is Start:
            self._on_start(now, out)
        elif kind is LoopLag:
            tm = self.layout.timing[self.path[0]]
            self.health = health_after(self.health, inp.lag_ms, tm.heartbeat // 1_000_000)  # type: ignore[union-attr]
        elif kind is Unreachable:
            self._on_unreachable(now, inp.dst, out)  # type: ignore[union-attr]
        elif kind is Command:
            self._on_command(now, inp, out)  # type: ignore[arg-type]
        return out

    def deliver(self, now: int, src: int, msg: Any) -> list[Effect]:
        """``step(now, Received(src, msg))`` without building the ``Received`` (the simulator
        delivers millions of datagrams this way; same effects, same order)."""
        out: list[Effect] = []
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, now, src, msg, out)
        return out

    def fire(self, now: int, key: tuple[Any, ...]) -> list[Effect]:
        """``step(now, TimerFired(key))`` without building the ``TimerFired``."""
        out: list[Effect] = []
        self._on_timer(now, key, out)
        return out

    # ------------------------------------------------------------------ queries (read-only)
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
        if self.votes and group in self.votes:
            return self.votes[group][0]
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
        return _member_quorate(gs, now)

    def in_primary(self, now: int) -> bool:
        """Every group on this node's path up to the root is quorate (primary component)."""
        return self._primary(now)

    def fencing_token(self, group: int, now: int) -> tuple[int, int, int] | None:
        """``(tier, group, term)`` while this node leads ``group`` with a valid lease."""
        if not self.lease_valid(group, now):
            return None
        return (self.layout.tier[group], group, self.term(group))

    def view_id(self, group: int) -> int:
        gs = self._gs(group)
        return 0 if gs is None else gs.view_id

    def known_notices(self) -> tuple[Notice, ...]:
        found: tuple[Notice, ...] = ()
        if self.known is not None:
            found = tuple(n for about in self.known.values() for n in about)
        if self.admin:
            found += tuple(self.admin.values())
        return found

    def has_notice(self, notice: Notice) -> bool:
        key = notice_key(notice)
        if type(notice) is Admin:
            return self.admin is not None and key in self.admin
        if self.known is None:
            return False
        return any(notice_key(n) == key for n in self.known.get(notice.node, ()))

    def admin_mode(self, rank: int) -> int:
        """``rank``'s admin mode as this node knows it (``ACTIVE`` unless an admin notice says
        otherwise)."""
        best: Admin | None = None
        if self.admin:
            for a in self.admin.values():
                if a.covers(rank) and (best is None or a.order > best.order):
                    best = a
        return ACTIVE if best is None else best.mode

    def digest(self) -> tuple[int, int]:
        return (self.dcount, self.dhash)

    def persistent_state(self) -> PersistentState:
        votes = (
            () if not self.votes else tuple((g, t, v) for g, (t, v) in sorted(self.votes.items()))
        )
        return PersistentState(self.inc, votes)

    def pending_retransmits(self) -> int:
        return 0 if not self.pending else sum(len(p) for p in self.pending.values())

    # ------------------------------------------------------------------ helpers
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
        if self.votes is not None and gi in self.votes:
            gs.term, gs.voted_for = self.votes[gi]
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
            if self.votes is None:
                self.votes = {}
            self.votes[gs.gi] = (gs.term, gs.voted_for)
        out.append(Persist(self.persistent_state()))

    def _slot_of(self, gs: GroupState, node: int) -> int:
        if gs.leaf:
            s = node - gs.first
            return s if 0 <= s < gs.size else -1
        holders = gs.holders
        for s in range(gs.size):
            if holders[s] == node:
                return s
        return -1

    def _voters(self, gs: GroupState) -> list[int]:
        """Everyone to ask for a vote: members of a leaf group; known holders (or the first rank
        of the child, the usual leader) for a tier >= 1 group."""
        me = self.rank
        if gs.leaf:
            return [r for r in range(gs.first, gs.first + gs.size) if r != me]
        firsts = self.layout.child_first[gs.gi]
        found: list[int] = []
        for s in range(gs.size):
            h = gs.holders[s]
            dst = h if h >= 0 else firsts[s]
            if dst != me and dst not in found:
                found.append(dst)
        return found

    def _members(self, gs: GroupState) -> list[int]:
        """Live members as the leader sees them (not itself)."""
        me = self.rank
        status = gs.status
        if gs.leaf:
            first = gs.first
            return [first + s for s in range(gs.size) if status[s] != FAILED and first + s != me]
        return [
            h
            for s, h in enumerate(gs.holders)
            if h >= 0 and h != me and status[s] in (ALIVE, SUSPECT, PENDING)
        ]

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
            return now < top.lease_until
        return _member_quorate(top, now) and top.primary

    def _up_of(self, gs: GroupState) -> tuple[int, int]:
        lvl = gs.level + 1
        if lvl < len(self.states):
            up = self.states[lvl]
            if up is not None:
                return up.leader, up.term
        return -1, 0

    def _ack(self, now: int, gs: GroupState, flags: int) -> Ack:
        left = 0
        if now < gs.lease_until:
            flags |= FLAG_LEASE
            left = gs.lease_until - now
            if self._primary(now):
                flags |= FLAG_PRIMARY
        return Ack(
            gs.gi,
            gs.term,
            self.inc,
            now,
            gs.view_id,
            flags,
            left,
            *self._up_of(gs),
            self.dcount,
            self.dhash,
        )

    def _ping(self, gs: GroupState) -> Ping:
        return Ping(gs.gi, gs.term, gs.myslot, self.inc, gs.stamp, self.dcount, self.dhash)

    def _set_quorate(self, gs: GroupState, value: bool, out: list[Effect]) -> None:
        if gs.quorate != value:
            gs.quorate = value
            out.append(Emit(QuorumChanged(gs.gi, value)))

    def _bump_view(self, gs: GroupState, out: list[Effect]) -> None:
        gs.view_id += 1
        out.append(Emit(ViewChanged(gs.gi, gs.view_id)))

    # ------------------------------------------------------------------ start, timers
    def _on_start(self, now: int, out: list[Effect]) -> None:
        if self.leaf_gs is not None:
            return  # started already
        out.append(Persist(self.persistent_state()))
        gs = self._new_state(0)
        # we may have promised a vote-free election timeout before a crash (not persisted):
        # keep that promise after any (re)start
        gs.block_until = now + gs.tm.election
        out.append(SetTimer(gs.key_tick, now + gs.tm.heartbeat))
        self._arm_candidacy(now, gs, out)

    def _on_timer(self, now: int, key: tuple[Any, ...], out: list[Effect]) -> None:
        tag = key[0]
        if tag == "r":
            self._retransmit(now, key[1], out)
            return
        if tag == "x":
            self._compact(now, out)
            return
        if tag == "m":
            if self.mode != ACTIVE:
                self._resign_all(now, out)
            return
        gs = self.leaf_gs
        if gs is None or gs.gi != key[1]:  # (the leaf group inline: the hot path)
            gs = self._gs(key[1])
            if gs is None:
                return
        if tag == "t":
            if gs.role == LEADER:
                out.append(SetTimer(gs.key_tick, now + gs.tm.heartbeat))
                self._leader_tick(now, gs, out)
            else:
                self._member_tick(now, gs, out)
        elif tag == "c":
            self._on_candidacy(now, gs, out)
        elif tag == "l":
            self._on_lease(now, gs, out)
        elif tag == "s":
            if gs.role == LEADER:
                self._scan(now, gs, out)
        elif tag == "p":
            self._on_probe_timeout(now, gs, key[2], out)
        elif tag == "q":
            self._on_doubt_timeout(now, gs, key[2], out)

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
                out.append(SetTimer(gs.key_tick, due if due > now else now + 1))
                return
        out.append(SetTimer(gs.key_tick, now + tm.heartbeat))
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

    def _lose_leader(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        gs.prev_leader = gs.leader
        gs.prev_heard = gs.heard_ns
        gs.prev_inc = gs.leader_inc
        gs.leader = -1
        out.append(Emit(LeaderChanged(gs.gi, None, gs.term)))
        self._set_quorate(gs, False, out)

    # ------------------------------------------------------------------ elections
    def _arm_candidacy(self, now: int, gs: GroupState, out: list[Effect], extra: int = 0) -> None:
        tm = gs.tm
        pos = gs.myslot
        if gs.leaf and 0 <= gs.prev_leader - gs.first < pos:
            pos -= 1  # the dead leader's slot does not count in the rank order
        if self.mode != ACTIVE:
            pos += gs.size  # in maintenance or drained: after every active member
        jitter = self.rng.randrange(tm.jitter + 1) if tm.jitter > 0 else 0
        gs.cand_armed = True
        # one rank step spans the whole jitter window, so a lower rank always stands first
        step = tm.rank_delay + tm.jitter
        out.append(SetTimer(gs.key_cand, now + extra + pos * step + jitter))

    def _on_candidacy(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        gs.cand_armed = False
        if gs.role == LEADER:
            return
        tm = gs.tm
        if gs.role != FOLLOWER:
            # the (pre-)vote round timed out without a result: back off and try again (longer
            # while our own loop lags: a starved node's rounds fail for its own slowness)
            gs.role = FOLLOWER
            self._arm_candidacy(now, gs, out, extra=stretched(tm.heartbeat, self.health))
            return
        if gs.leader >= 0 and now - gs.heard_ns <= stretched(tm.election, self.health):
            return  # our leader is alive
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
        out.append(SetTimer(gs.key_cand, now + tm.election // 2))
        self._check_prevote(now, gs, out)

    def _next_term(self, now: int, gs: GroupState) -> int:
        """Leaf groups count terms (their voters never change and persist their votes). Above
        them a slot's holder can change, and every node that knew the group's term may be gone,
        so a term is also at least the candidate's clock in ms: a fencing token never repeats
        as long as clocks agree better than the time between two elections of the group."""
        if gs.leaf:
            return gs.term + 1
        return max(gs.term + 1, now // 1_000_000)

    def _check_prevote(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        if gs.grants.bit_count() + (1 if gs.tie_granted else 0) >= gs.quorum:
            self._start_election(now, gs, out)

    def _start_election(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        tm = gs.tm
        gs.term = self._next_term(now, gs)
        gs.voted_for = self.rank
        _hear(gs, gs.term)
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
        jitter = self.rng.randrange(tm.jitter + 1) if tm.jitter > 0 else 0
        out.append(SetTimer(gs.key_cand, now + tm.election // 2 + jitter))
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

    def _on_request_vote(self, now: int, src: int, msg: RequestVote, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None:
            return
        if msg.term <= gs.vote_floor:
            # amnesiac: we may have voted in this term before we lost our state; abstain in it
            _hear(gs, msg.term)
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

    def _on_vote_resp(self, now: int, src: int, msg: VoteResp, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None:
            return
        _hear(gs, msg.term)
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
        out.append(CancelTimer(gs.key_cand))
        size = gs.size
        gs.last = [now] * size
        gs.echo = [0] * size
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
        gs.lease_until = gs.lease_reported = gs.cand_start + tm.lease
        gs.view_id += 1
        out.append(Emit(LeaderChanged(gs.gi, self.rank, gs.term)))
        out.append(Emit(ViewChanged(gs.gi, gs.view_id)))
        out.append(Emit(LeaseChanged(gs.gi, gs.term, True, gs.lease_until)))
        self._set_quorate(gs, True, out)
        out.append(SetTimer(gs.key_lease, gs.lease_until - _urgency(gs)))
        out.append(SetTimer(gs.key_tick, now + tm.heartbeat))
        self._heartbeat(now, gs, out)
        if not gs.leaf:
            self._send_roster(gs, out)
        self._flush_backlog(now, gs, out)
        self._leader_tick(now, gs, out, heartbeat=False)
        if gs.level + 1 < len(self.path):
            self._join(now, gs.level + 1, out)

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
        out.append(Emit(LeaseChanged(gs.gi, gs.term, False, gs.lease_until)))
        out.append(Emit(LeaderChanged(gs.gi, None, gs.term)))
        self._set_quorate(gs, False, out)
        out.append(CancelTimer(gs.key_lease))
        gs.lease_until = gs.lease_reported = NEVER
        gs.last = gs.echo = gs.incs = gs.since = gs.child_terms = _NO_INTS
        gs.status = _NO_BYTES
        gs.doubts = None
        if not gs.cand_armed:
            extra = gs.tm.election if retry_ns is None else retry_ns
            self._arm_candidacy(now, gs, out, extra=extra)

    def _leave(self, now: int, level: int, out: list[Effect]) -> None:
        gs = self.states[level]
        if gs is None:
            return
        if gs.role == LEADER:
            self._step_down(now, gs, out)
        elif gs.leader >= 0:
            out.append(Emit(LeaderChanged(gs.gi, None, gs.term)))
        self._set_quorate(gs, False, out)
        out.append(CancelTimer(gs.key_tick))
        out.append(CancelTimer(gs.key_cand))
        out.append(CancelTimer(gs.key_lease))
        self.states[level] = None

    def _child_term(self, gs: GroupState) -> int:
        below = self.states[gs.level - 1] if gs.level > 0 else None
        return below.term if below is not None else 0

    def _join(self, now: int, level: int, out: list[Effect]) -> None:
        """Take our child group's slot in the group at ``level`` (we just started leading below)."""
        gs = self.states[level]
        below = self.states[level - 1]
        hint = below.up if below is not None else -1
        if gs is None:
            gs = self._new_state(level)
            # the slot's vote comes with the previous holder's promise not to vote for an
            # election timeout, and with the group's term as the child group knew it
            gs.block_until = now + gs.tm.election
            if below is not None and below.up_term > gs.term:
                gs.term = below.up_term
                gs.voted_for = ABSTAIN
                _hear(gs, gs.term)
            out.append(SetTimer(gs.key_tick, now + gs.tm.heartbeat))
        msg = SlotHandover(gs.gi, gs.myslot, self._child_term(gs))
        targets = self._voters(gs)
        if hint >= 0 and hint != self.rank and gs.leader < 0:
            gs.hint = hint
            gs.hint_until = now + gs.tm.election
            if hint not in targets:
                targets.append(hint)
        for dst in targets:
            out.append(Send(dst, msg))
        self._locate(gs, out, unknown_only=True)
        if gs.role == FOLLOWER and not gs.cand_armed:
            self._arm_candidacy(now, gs, out)

    def _locate(self, gs: GroupState, out: list[Effect], *, unknown_only: bool) -> None:
        """Ask a random node under each other slot's child group who fills that slot; answers
        walk up that subtree's leaders (see :class:`Locate`)."""
        firsts = self.layout.child_first[gs.gi]
        ends = self.layout.child_end[gs.gi]
        msg = Locate(gs.gi)
        for s in range(gs.size):
            if s == gs.myslot or (unknown_only and gs.holders[s] >= 0):
                continue
            dst = self.rng.randrange(firsts[s], ends[s])
            if dst != self.rank:
                out.append(Send(dst, msg))

    def _on_locate(self, now: int, src: int, msg: Locate, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is not None:
            leader = self._confirmed_leader(now, gs)
            out.append(Send(src, Located(msg.group, gs.myslot, self.rank, leader, -1)))
            return
        level = -1
        for lvl in range(1, len(self.path)):
            if self.path[lvl] == msg.group:
                level = lvl
        if level < 0:
            return
        top = None
        for lower in self.states[:level]:
            if lower is not None:
                top = lower
        if top is None:
            return
        nxt = self._confirmed_leader(now, top)
        if nxt == self.rank:
            nxt = -1  # we lead just below and are joining ourselves
        up = top.up if top.level == level - 1 else -1
        slot = self.layout.slot_in_parent[self.path[level - 1]]
        out.append(Send(src, Located(msg.group, slot, -1, up, nxt)))

    def _on_located(self, now: int, src: int, msg: Located, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.leaf:
            return
        s = msg.slot
        holder = msg.holder
        if holder >= 0 and holder != self.rank and 0 <= s < gs.size and s != gs.myslot:
            if gs.role == LEADER:
                if gs.holders[s] != holder and gs.status[s] in (PENDING, EMPTY):
                    out.append(Send(holder, self._ack(now, gs, 0)))  # follow me
            else:
                gs.holders[s] = holder
                if gs.leader < 0:
                    out.append(Send(holder, SlotHandover(gs.gi, gs.myslot, self._child_term(gs))))
        elif holder < 0 and msg.next >= 0 and msg.next != self.rank:
            out.append(Send(msg.next, Locate(gs.gi)))
        if msg.leader >= 0 and msg.leader != self.rank and gs.role != LEADER and gs.leader < 0:
            self._adopt_hint(now, gs, msg.leader, gs.term, out)

    def _send_roster(self, gs: GroupState, out: list[Effect]) -> None:
        msg = Roster(gs.gi, gs.term, gs.view_id, tuple(gs.holders))
        for dst in self._members(gs):
            out.append(Send(dst, msg))

    # ------------------------------------------------------------------ leader side
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
        self._scan(now, gs, out)
        if gs.tie != TIE_NONE:
            out.append(Send(witness_id(gs.gi), TieRenew(gs.gi, gs.term, now)))
        if heartbeat:
            self._heartbeat(now, gs, out)

    def _heartbeat(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """One Ack to every member; each answers with a Ping echoing its stamp."""
        gs.bcast = now
        ack = self._ack(now, gs, 0)
        if gs.leaf:
            # _members() inline, without building its list: once per heartbeat per leaf group
            me = self.rank
            status = gs.status
            dst = gs.first
            for s in range(gs.size):
                if status[s] != FAILED and dst != me:
                    out.append(_send(dst, ack))
                dst += 1
            return
        for dst in self._members(gs):
            out.append(Send(dst, ack))

    def _scan(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """Suspect silent members; if one falls due before the next tick, wake up exactly then
        (so detection costs suspect_after_ms + confirm_ms, not a tick more)."""
        tm = gs.tm
        limit = stretched(tm.suspect, self.health)
        status = gs.status
        last = gs.last
        due = now + tm.heartbeat
        for s in range(gs.size):
            if s == gs.myslot:
                continue
            st = status[s]
            if st == ALIVE:
                if last[s] + limit < due:
                    due = last[s] + limit + 1
                if now - last[s] > limit:
                    if gs.leaf:
                        self._suspect(now, gs, s, out)
                    else:
                        status[s] = PENDING
                        gs.since[s] = now
            elif st == EMPTY:
                dst = self.rng.randrange(
                    self.layout.child_first[gs.gi][s], self.layout.child_end[gs.gi][s]
                )
                out.append(Send(dst, Locate(gs.gi)))
            elif st == PENDING and now - gs.since[s] > tm.slot_grace:
                holder = gs.holders[s]
                status[s] = EMPTY
                gs.holders[s] = -1
                self._bump_view(gs, out)
                self._send_roster(gs, out)
                if holder >= 0 and holder != self.rank and now < gs.lease_until:
                    self._doubt(now, gs, holder, gs.incs[s], out)
        if now < due < now + tm.heartbeat:
            out.append(SetTimer(("s", gs.gi), due))

    def _suspect(self, now: int, gs: GroupState, s: int, out: list[Effect]) -> None:
        gs.status[s] = SUSPECT
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
        out.append(SetTimer(timer, now + gs.tm.confirm))

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

    def _on_doubt_timeout(self, now: int, gs: GroupState, node: int, out: list[Effect]) -> None:
        doubts = gs.doubts
        if gs.role != LEADER or doubts is None or node not in doubts:
            return  # answered, or we stopped leading
        inc = doubts.pop(node)
        if now < gs.lease_until:
            self._declare(now, gs, node, inc, out)

    def _on_probe_timeout(self, now: int, gs: GroupState, s: int, out: list[Effect]) -> None:
        if gs.role != LEADER or gs.status[s] != SUSPECT:
            return  # a ping or a probe answer cleared the suspicion
        if now < gs.lease_until:
            gs.status[s] = FAILED
            self._bump_view(gs, out)
            self._declare(now, gs, gs.first + s, gs.incs[s], out)
        else:
            gs.status[s] = ALIVE  # no lease, no verdict: suspect again on the next tick

    def _declare(self, now: int, gs: GroupState, node: int, inc: int, out: list[Effect]) -> None:
        if inc <= 0:
            # we never heard this incarnation (we lead since it went silent): the newest one
            # the notices speak of (a Failure of it already known is then simply no news)
            inc = max(1, *self._known_about(node))
        planned = self.admin is not None and self.admin_mode(node) != ACTIVE
        notice = Failure(node, inc, gs.gi, self.rank, gs.term, now, planned)
        if self.pending is not None:
            self.pending.pop(node, None)
        if self._learn(now, notice, None, out):
            self._forward(now, (notice,), -1, -1, out)

    def _on_lease(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        if gs.role != LEADER:
            return
        if now < gs.lease_until:
            # the lease is about to lapse: collect what arrived, then ask the members whose
            # echo holds it back for a fresh one right now (a second chance under loss)
            self._renew_lease(now, gs, out)
            left = gs.lease_until - now
            if left <= _urgency(gs):
                base = gs.lease_until - gs.tm.lease
                ack = self._ack(now, gs, FLAG_ECHO_NOW)
                for s in range(gs.size):
                    if s != gs.myslot and gs.echo[s] <= base and gs.status[s] != FAILED:
                        dst = gs.first + s if gs.leaf else gs.holders[s]
                        if dst >= 0:
                            out.append(Send(dst, ack))
                # one more chance halfway to the end, then the verdict at the end itself
                half = _urgency(gs) // 2
                again = gs.lease_until - half if left > half else gs.lease_until
                out.append(SetTimer(gs.key_lease, again))
            else:
                # early (our clock's rate changed since the timer was set): keep the watch
                out.append(SetTimer(gs.key_lease, gs.lease_until - _urgency(gs)))
            return
        if not self._renew_lease(now, gs, out):
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
            out.append(Emit(LeaseChanged(gs.gi, gs.term, True, gs.lease_until)))
            out.append(SetTimer(gs.key_lease, gs.lease_until - _urgency(gs)))
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
        s = src - gs.first if gs.leaf else msg.slot
        if not 0 <= s < gs.size or s == gs.myslot:
            return
        status = gs.status
        fresh = False
        if not gs.leaf and gs.holders[s] != src:
            if gs.holders[s] >= 0 and status[s] in (ALIVE, SUSPECT):
                return  # the slot is held by someone we still hear
            self._take_slot(now, gs, s, src, out)
            fresh = True
        gs.last[s] = now
        if msg.term == gs.term and msg.echo > gs.echo[s]:
            old = gs.echo[s]
            gs.echo[s] = msg.echo
            tm = gs.tm
            if (
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
        if gs.leaf:
            old = gs.incs[s]
            if msg.inc > old:
                gs.incs[s] = msg.inc
                if old > 0:
                    # a restart: the old incarnation is dead (declare it if nobody did), the new one
                    # is alive
                    if st != FAILED and now < gs.lease_until:
                        self._declare(now, gs, src, old, out)
                    status[s] = ALIVE
                    self._bump_view(gs, out)
                    alive = Alive(src, msg.inc)
                    if self._learn(now, alive, None, out):
                        self._forward(now, (alive,), -1, -1, out)
                else:
                    # first ping to this leader: what do the notices say about this member?
                    failed, alive_inc = self._known_about(src)
                    if failed >= msg.inc:
                        flags = FLAG_REFUTE  # declared dead in this incarnation: come back anew
                    elif failed > 0 and alive_inc < msg.inc:
                        alive = Alive(src, msg.inc)  # back after a failure nobody announced
                        if self._learn(now, alive, None, out):
                            self._forward(now, (alive,), -1, -1, out)
                    if st == FAILED:
                        status[s] = ALIVE
                        self._bump_view(gs, out)
            elif st == FAILED or msg.inc < old:
                # declared failed, or restarted without its state: come back with a higher one
                flags = FLAG_REFUTE
        elif msg.inc > gs.incs[s]:
            gs.incs[s] = msg.inc
        if status[s] == SUSPECT or status[s] == PENDING:
            status[s] = ALIVE
        if flags or fresh or msg.term != gs.term or msg.echo < gs.bcast:
            # not the answer to our latest heartbeat (a member finding us, or news for it):
            # answer it; an answer to a heartbeat needs none (that would never end)
            out.append(Send(src, self._ack(now, gs, flags)))
        count = msg.digest_count
        if count > self.dcount or (count == self.dcount and msg.digest_hash != self.dhash):
            # the member knows more, or as much but different (e.g. a newer admin notice that
            # replaced one we still hold): pull from it too, the member pulls from us
            gs.mismatch += 1
            if gs.mismatch >= 2:
                gs.mismatch = 0
                out.append(Send(src, Pull(gs.gi, self.dcount, self.dhash)))

    def _take_slot(self, now: int, gs: GroupState, s: int, node: int, out: list[Effect]) -> None:
        if gs.doubts is not None:
            gs.doubts.pop(node, None)
        gs.holders[s] = node
        gs.status[s] = ALIVE
        gs.last[s] = now
        gs.echo[s] = 0
        gs.incs[s] = 0
        self._bump_view(gs, out)
        self._send_roster(gs, out)

    def _on_slot_handover(self, now: int, src: int, msg: SlotHandover, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.leaf or not 0 <= msg.slot < gs.size:
            return
        s = msg.slot
        if gs.role == LEADER:
            if s == gs.myslot:
                return
            if gs.holders[s] != src:
                if msg.child_term < gs.child_terms[s]:
                    return  # a leader of the child older than the slot's holder: stale
                self._take_slot(now, gs, s, src, out)
                gs.child_terms[s] = msg.child_term
            else:
                gs.status[s] = ALIVE
                gs.last[s] = now
            out.append(Send(src, self._ack(now, gs, 0)))
            return
        if s != gs.myslot:
            gs.holders[s] = src
        leader = self._confirmed_leader(now, gs)
        if leader >= 0 and leader != src:
            out.append(Send(src, LeaderHint(gs.gi, leader, gs.term)))

    def _on_tie_renew_ack(self, now: int, src: int, msg: TieRenewAck, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.role != LEADER or msg.term != gs.term or not msg.ok:
            return
        if msg.stamp > gs.tie_echo:
            gs.tie_echo = msg.stamp

    # ------------------------------------------------------------------ member side
    def _on_ack(self, now: int, src: int, msg: Ack, out: list[Effect]) -> None:
        gs = self.leaf_gs
        if gs is None or gs.gi != msg.group:  # (the leaf group inline: the hot path)
            gs = self._gs(msg.group)
            if gs is None:
                return
        if msg.term < gs.term:
            # a leader of an older term that never heard of ours: tell it (it steps down and
            # the group elects in a term everyone accepts)
            out.append(Send(src, self._ping(gs)))
            return
        if gs.role == LEADER:
            if msg.term == gs.term:
                return  # cannot happen with one vote per term; ignore rather than trust it
            self._step_down(now, gs, out)
        if msg.term > gs.term:
            self._adopt_term(now, gs, msg.term, out)
            self._persist(gs, out)
        if gs.vote_floor == UNHEARD:
            gs.vote_floor = msg.term
        gs.role = FOLLOWER
        gs.hint = -1
        if gs.leader != src:
            gs.leader = src
            gs.mismatch = 1  # a new leader: repair on the first digest mismatch
            out.append(Emit(LeaderChanged(gs.gi, src, gs.term)))
            self._flush_backlog(now, gs, out)
        gs.heard_ns = now
        gs.block_until = now + gs.tm.election
        gs.heard_from = src
        gs.stamp = msg.stamp
        gs.view_id = msg.view_id
        gs.up = msg.up
        gs.up_term = msg.up_term
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
        if flags & FLAG_REFUTE and now - self.refuted_at >= gs.tm.heartbeat:
            # an ack refutes the incarnation of the ping it answers, which may be an older one
            # (a duplicate, or pings queued while we were paused): one new incarnation per
            # heartbeat, or every stale ping in flight would make another, without end
            self.refuted_at = now
            self._refute(out)
        dcount = self.dcount
        # the echo that renews the leader's lease
        out.append(
            _send(
                src, _new_ping(gs.gi, gs.term, gs.myslot, self.inc, msg.stamp, dcount, self.dhash)
            )
        )
        if msg.digest_count != dcount or msg.digest_hash != self.dhash:
            if msg.digest_count >= dcount:
                gs.mismatch += 1
                if gs.mismatch >= 2:
                    gs.mismatch = 0
                    out.append(Send(src, Pull(gs.gi, self.dcount, self.dhash)))
        else:
            gs.mismatch = 0

    def _refute(self, out: list[Effect]) -> None:
        """We were declared failed while alive: come back as a new incarnation."""
        self.inc += 1
        out.append(Persist(self.persistent_state()))

    def _on_leader_hint(self, now: int, src: int, msg: LeaderHint, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.role == LEADER or msg.leader < 0 or msg.leader == self.rank:
            return
        if msg.term < gs.term:
            return
        self._adopt_hint(now, gs, msg.leader, msg.term, out)

    def _on_roster(self, now: int, src: int, msg: Roster, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.leaf or gs.role == LEADER or msg.term < gs.term:
            return
        _hear(gs, msg.term)
        if len(msg.holders) == gs.size:
            gs.holders = list(msg.holders)
            gs.holders[gs.myslot] = self.rank
            gs.view_id = msg.view_id

    # ------------------------------------------------------------------ probes
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

    # ------------------------------------------------------------------ notices
    def _learn(self, now: int, notice: Notice, via: int | None, out: list[Effect]) -> bool:
        if isinstance(notice, Admin):
            return self._learn_admin(now, notice, via, out)
        key = notice_key(notice)
        tm = self.layout.timing[self.path[0]]
        failure = type(notice) is Failure
        if failure and notice.detected_at_ns + tm.ttl <= now:  # type: ignore[union-attr]
            return False  # aged out (a late retransmit or a pull from a node yet to compact)
        known = self.known
        if known is None:
            known = self.known = {}
        about = known.get(notice.node)
        if about is None:
            known[notice.node] = (notice,)
        else:
            for n in about:
                if notice_key(n) == key:
                    return False
            known[notice.node] = (*about, notice)
        self.dcount += 1
        self.dhash ^= _mix(key)
        if failure:
            if self.expiry is None:
                self.expiry = []
            entry = (notice.detected_at_ns + tm.ttl, notice.node)  # type: ignore[union-attr]
            heapq.heappush(self.expiry, entry)
            if self.expiry[0] is entry:
                out.append(SetTimer(_COMPACT_KEY, entry[0]))
        if self.dcount > tm.max_notices and len(known) > 1:
            # compaction: forget the node we first heard about (dict order = learning order)
            oldest = next(iter(known))
            for n in known.pop(oldest):
                self.dcount -= 1
                self.dhash ^= _mix(notice_key(n))
        out.append(Emit(NoticeLearned(notice, via)))
        if type(notice) is Failure and notice.node == self.rank and notice.incarnation == self.inc:
            self._refute(out)
        return True

    def _learn_admin(self, now: int, notice: Admin, via: int | None, out: list[Effect]) -> bool:
        """Keep ``notice`` unless a newer one covers its whole range; drop the older ones it
        covers. The kept set depends only on which notices exist, not on their order of arrival,
        so digests agree once everyone has them all."""
        table = self.admin
        if table is None:
            table = self.admin = {}
        key = notice_key(notice)
        if key in table:
            return False
        lo = notice.node
        hi = lo + notice.count
        order = notice.order
        for other in table.values():
            if other.order > order and other.node <= lo and hi <= other.node + other.count:
                return False  # superseded before it got here
        for k, other in list(table.items()):
            if other.order < order and lo <= other.node and other.node + other.count <= hi:
                self._drop_admin(k)
        table[key] = notice
        self.dcount += 1
        self.dhash ^= _mix(key)
        if notice.seq > self.admin_seq:
            self.admin_seq = notice.seq
        if len(table) > MAX_ADMIN:
            self._drop_admin(min(table, key=lambda k: table[k].order))
        out.append(Emit(NoticeLearned(notice, via)))
        if notice.covers(self.rank):
            mode = self.admin_mode(self.rank)
            if mode != self.mode:
                self.mode = mode
                if mode != ACTIVE:
                    # hand over right after this step, once the notice has been forwarded
                    out.append(SetTimer(_RESIGN_KEY, now))
        return True

    def _drop_admin(self, key: int) -> None:
        if self.admin is not None and self.admin.pop(key, None) is not None:
            self.dcount -= 1
            self.dhash ^= _mix(key)

    def _on_command(self, now: int, cmd: Command, out: list[Effect]) -> None:
        if cmd.name != "admin":
            raise ValueError(f"unknown command {cmd.name!r}; the core knows 'admin'")
        mode, ranges = cmd.args
        if mode not in range(len(ADMIN_MODES)):
            raise ValueError(f"admin mode {mode!r}: expected 0..{len(ADMIN_MODES) - 1}")
        size = self.layout.topology.num_nodes
        for first, count in ranges:
            if count <= 0 or first < 0 or first + count > size:
                raise ValueError(f"admin range {first}+{count} outside ranks 0..{size - 1}")
        seq = max(self.admin_seq + 1, now // 1_000_000)
        fresh = [
            n
            for first, count in ranges
            if self._learn(now, n := Admin(first, count, mode, seq, self.rank), None, out)
        ]
        for i in range(0, len(fresh), MAX_NOTICES_PER_MESSAGE):
            self._forward(now, tuple(fresh[i : i + MAX_NOTICES_PER_MESSAGE]), -1, -1, out)

    def _compact(self, now: int, out: list[Effect]) -> None:
        """Forget every notice about a node once its newest failure notice is ``notice_ttl_ms``
        old (by the detector's ``detected_at_ns``, so every node drops the same notices at about
        the same instant and digests stay equal). Its alive notices go with it: they only mean
        something next to a failure."""
        expiry = self.expiry
        known = self.known
        if expiry is None or known is None:
            return
        ttl = self.layout.timing[self.path[0]].ttl
        while expiry and expiry[0][0] <= now:
            _, node = heapq.heappop(expiry)
            about = known.get(node)
            if about is None:
                continue
            newest = max((n.detected_at_ns for n in about if type(n) is Failure), default=None)
            if newest is not None and newest + ttl > now:
                continue  # a newer failure of this node keeps the record (its own entry waits)
            del known[node]
            for n in about:
                self.dcount -= 1
                self.dhash ^= _mix(notice_key(n))
        if expiry:
            out.append(SetTimer(_COMPACT_KEY, expiry[0][0]))
        else:
            self.expiry = None

    def _known_about(self, node: int) -> tuple[int, int]:
        """(highest incarnation declared failed, highest incarnation announced alive) of ``node``
        among the notices we hold (0 = none)."""
        failed = alive = 0
        if self.known is not None:
            for n in self.known.get(node, ()):
                if type(n) is Failure:
                    failed = max(failed, n.incarnation)
                else:
                    alive = max(alive, n.incarnation)
        return failed, alive

    def _forward(
        self, now: int, notices: tuple[Notice, ...], via_level: int, src: int, out: list[Effect]
    ) -> None:
        """Send new ``notices`` on along tree edges (never back to ``src``'s group but as hub)."""
        via = self.path[via_level] if via_level >= 0 else -1
        excluded = {n.node for n in notices if type(n) is Failure}
        excluded.add(src)
        for lvl, gs in enumerate(self.states):
            if gs is None:
                continue
            if gs.role == LEADER:
                for dst in self._members(gs):
                    if dst not in excluded:
                        self._rsend(now, dst, gs.gi if lvl != via_level else via, notices, out)
            elif lvl != via_level and gs.leader >= 0 and gs.leader not in excluded:
                self._rsend(now, gs.leader, gs.gi, notices, out)
            elif lvl != via_level and gs.leader < 0:
                # hand them to whoever this group elects next (digest repair is the fallback)
                if gs.backlog is None:
                    gs.backlog = []
                if len(gs.backlog) < MAX_BACKLOG:
                    gs.backlog.extend(notices)

    def _flush_backlog(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        backlog = gs.backlog
        if not backlog:
            return
        gs.backlog = None
        for i in range(0, len(backlog), MAX_NOTICES_PER_MESSAGE):
            batch = tuple(backlog[i : i + MAX_NOTICES_PER_MESSAGE])
            if gs.role == LEADER:
                for dst in self._members(gs):
                    self._rsend(now, dst, gs.gi, batch, out)
            elif gs.leader >= 0:
                self._rsend(now, gs.leader, gs.gi, batch, out)

    def _rsend(
        self, now: int, dst: int, via: int, notices: tuple[Notice, ...], out: list[Effect]
    ) -> None:
        self.seq += 1
        msg = Notices(via, self.seq, notices)
        out.append(Send(dst, msg))
        tm = self.layout.timing[via] if via >= 0 else self.layout.timing[self.path[0]]
        if tm.retransmit_max <= 0:
            return
        pending = self.pending
        if pending is None:
            pending = self.pending = {}
        queue = pending.get(dst)
        due = now + tm.retransmit
        if queue is None:
            queue = pending[dst] = {}
            out.append(SetTimer(("r", dst), due))
        elif len(queue) >= tm.max_pending:
            del queue[next(iter(queue))]  # the oldest now waits for digest repair
        queue[self.seq] = [msg, 0, due, tm.retransmit, tm.retransmit_max]

    def _retransmit(self, now: int, dst: int, out: list[Effect]) -> None:
        pending = self.pending
        queue = None if pending is None else pending.get(dst)
        if queue is None or pending is None:
            return
        nxt = None
        for seq in list(queue):
            entry = queue[seq]
            if entry[2] <= now:
                entry[1] += 1
                if entry[1] > entry[4]:
                    del queue[seq]
                    continue
                out.append(Send(dst, entry[0]))
                entry[2] = now + retransmit_delay(entry[3], entry[1])
            if nxt is None or entry[2] < nxt:
                nxt = entry[2]
        if nxt is None:
            del pending[dst]
        else:
            out.append(SetTimer(("r", dst), nxt))

    def _on_notices(self, now: int, src: int, msg: Notices, out: list[Effect]) -> None:
        if msg.seq > 0:
            out.append(Send(src, NoticesAck(msg.seq)))
        via_level = -1
        for lvl, gs in enumerate(self.states):
            if gs is not None and gs.gi == msg.via:
                via_level = lvl
        fresh = tuple(n for n in msg.notices if self._learn(now, n, msg.via, out))
        if fresh:
            if self.pending is not None:
                for n in fresh:
                    if type(n) is Failure:
                        self.pending.pop(n.node, None)
            self._forward(now, fresh, via_level, src, out)

    def _on_notices_ack(self, now: int, src: int, msg: NoticesAck, out: list[Effect]) -> None:
        pending = self.pending
        if pending is None:
            return
        queue = pending.get(src)
        if queue is not None:
            queue.pop(msg.seq, None)
            if not queue:
                del pending[src]

    def _on_pull(self, now: int, src: int, msg: Pull, out: list[Effect]) -> None:
        batch: list[Notice] = []
        sent = 0
        for notice in self.known_notices():
            batch.append(notice)
            if len(batch) == MAX_NOTICES_PER_MESSAGE:
                out.append(Send(src, Notices(msg.group, 0, tuple(batch))))
                batch = []
                sent += 1
                if sent >= MAX_PULL_BATCHES:
                    return
        if batch:
            out.append(Send(src, Notices(msg.group, 0, tuple(batch))))


_HANDLERS: dict[type, Any] = {
    Ping: Node._on_ping,
    Ack: Node._on_ack,
    PingReq: Node._on_ping_req,
    Probe: Node._on_probe,
    ProbeAck: Node._on_probe_ack,
    PreVote: Node._on_prevote,
    PreVoteResp: Node._on_prevote_resp,
    RequestVote: Node._on_request_vote,
    VoteResp: Node._on_vote_resp,
    LeaderHint: Node._on_leader_hint,
    Handoff: Node._on_handoff,
    SlotHandover: Node._on_slot_handover,
    Roster: Node._on_roster,
    Notices: Node._on_notices,
    NoticesAck: Node._on_notices_ack,
    Pull: Node._on_pull,
    Locate: Node._on_locate,
    Located: Node._on_located,
    TieVoteResp: Node._on_tie_vote_resp,
    TieRenewAck: Node._on_tie_renew_ack,
}
