"""Wire messages of the protocol core.

Every message is a frozen, slotted dataclass whose fields are ints, bools, tuples of ints or the
notice dataclasses of :mod:`hierclust.core.types`, so the codec can encode any of them generically
from ``KIND`` and the field list. The sender is not a field: the envelope carries it (``src``).
Each message stays far below the 1,400-byte datagram: notice batches hold at most
:data:`MAX_NOTICES_PER_MESSAGE` notices and a roster at most one entry per slot (group size <= 64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hierclust.core.types import Notice

MAX_NOTICES_PER_MESSAGE = 16
"""A Failure encodes to about 40 bytes of CBOR, so 16 keep a batch under 1 KB with the envelope."""

# Ack.flags bits
FLAG_LEASE = 1
"""The acking leader holds a valid lease of the group."""
FLAG_PRIMARY = 2
"""The acking leader is in the primary component (every group on its path to the root quorate)."""
FLAG_REFUTE = 4
"""The leader declared the pinging member's incarnation failed: come back with a new one."""
FLAG_ECHO_NOW = 8
"""The leader's lease is about to lapse: answer with a Ping (echoing this stamp) right away."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Member -> leader heartbeat. ``echo`` is the ``stamp`` of the last Ack received from this
    leader in ``term`` (the leader renews its lease from echoes); ``slot`` is the member's slot."""

    KIND: ClassVar[str] = "ping"
    group: int
    term: int
    slot: int
    inc: int
    echo: int
    digest_count: int
    digest_hash: int


@dataclass(frozen=True, slots=True)
class Ack:
    """Leader -> member answer to a Ping, also sent unsolicited by a newly elected leader.
    ``lease_left_ns`` = how long the leader's lease still runs (0 = none): the member counts its
    group quorate for that long after receipt. ``up`` / ``up_term`` = the parent group's leader
    (-1 unknown) and term as this leader knows them (a successor joins the parent with them).
    ``above`` = the terms of the groups above the parent as this leader knows them, nearest
    first (-1 unknown): a successor that goes on to lead further up joins those with them."""

    KIND: ClassVar[str] = "ack"
    group: int
    term: int
    leader_inc: int
    stamp: int
    view_id: int
    flags: int
    lease_left_ns: int
    up: int
    up_term: int
    digest_count: int
    digest_hash: int
    above: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Leader -> helper member: probe ``target`` for me (indirect probe)."""

    KIND: ClassVar[str] = "ping-req"
    group: int
    target: int
    requester: int


@dataclass(frozen=True, slots=True)
class Probe:
    """Direct liveness probe of ``target`` on behalf of ``requester``."""

    KIND: ClassVar[str] = "probe"
    group: int
    target: int
    requester: int


@dataclass(frozen=True, slots=True)
class ProbeAck:
    """``target`` is alive; sent back to the prober, which relays it to ``requester``."""

    KIND: ClassVar[str] = "probe-ack"
    group: int
    target: int
    requester: int
    inc: int


@dataclass(frozen=True, slots=True)
class PreVote:
    KIND: ClassVar[str] = "pre-vote"
    group: int
    term: int
    slot: int


@dataclass(frozen=True, slots=True)
class PreVoteResp:
    KIND: ClassVar[str] = "pre-vote-resp"
    group: int
    term: int
    granted: bool
    slot: int
    leader: int
    leader_term: int


@dataclass(frozen=True, slots=True)
class RequestVote:
    KIND: ClassVar[str] = "request-vote"
    group: int
    term: int
    slot: int


@dataclass(frozen=True, slots=True)
class VoteResp:
    KIND: ClassVar[str] = "vote-resp"
    group: int
    term: int
    granted: bool
    slot: int
    leader: int


@dataclass(frozen=True, slots=True)
class LeaderHint:
    """Who leads ``group`` as far as the sender knows (answer to a misdirected request)."""

    KIND: ClassVar[str] = "leader-hint"
    group: int
    leader: int
    term: int


@dataclass(frozen=True, slots=True)
class Handoff:
    """Leader -> members: I resigned ``group`` in ``term`` (my lease is over) and ``successor``
    should take it. The successor stands at once, without a pre-vote; a member that followed the
    sender now grants its vote to the successor only (the rest of its election-timeout promise
    passes from the old leader to the successor). A lost Handoff costs an ordinary election."""

    KIND: ClassVar[str] = "handoff"
    group: int
    term: int
    successor: int


@dataclass(frozen=True, slots=True)
class SlotHandover:
    """A child group's new leader takes its slot in the parent ``group``; ``child_term`` fences
    stale hand-overs."""

    KIND: ClassVar[str] = "slot-handover"
    group: int
    slot: int
    child_term: int


@dataclass(frozen=True, slots=True)
class Locate:
    """Who fills your subtree's slot in ``group``? Sent to any node under a child group of
    ``group`` when its slot holder is unknown (cold start, or the holder died with the leader)."""

    KIND: ClassVar[str] = "locate"
    group: int


@dataclass(frozen=True, slots=True)
class Located:
    """Answer to :class:`Locate`: ``holder`` sits in ``group`` in ``slot`` (-1 = not me), and
    ``leader`` is its leader as far as known; else ask ``next`` (the leader of the sender's
    topmost group, one step closer to the slot holder)."""

    KIND: ClassVar[str] = "located"
    group: int
    slot: int
    holder: int
    leader: int
    next: int


@dataclass(frozen=True, slots=True)
class Roster:
    """Leader -> members of a tier >= 1 group: who holds each slot (-1 = empty/pending)."""

    KIND: ClassVar[str] = "roster"
    group: int
    term: int
    view_id: int
    holders: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Notices:
    """A batch of notices that came through ``via``; ``seq`` > 0 asks for a :class:`NoticesAck`
    (per-hop reliability), 0 = repair answer, not acknowledged."""

    KIND: ClassVar[str] = "notices"
    via: int
    seq: int
    notices: tuple[Notice, ...]


@dataclass(frozen=True, slots=True)
class NoticesAck:
    KIND: ClassVar[str] = "notices-ack"
    seq: int


@dataclass(frozen=True, slots=True)
class Pull:
    """Digest mismatch: send me what you know in ``group`` (answered with Notices, seq 0)."""

    KIND: ClassVar[str] = "pull"
    group: int
    digest_count: int
    digest_hash: int


@dataclass(frozen=True, slots=True)
class TieVote:
    """Candidate -> tie-breaker (witness or disk): grant me the extra vote for ``term``;
    ``side`` = votes the candidate already holds (ffsplit: larger side first). ``pre`` = only a
    pre-vote question (would you?), answered at once and not recorded."""

    KIND: ClassVar[str] = "tie-vote"
    group: int
    term: int
    side: int
    pre: bool


@dataclass(frozen=True, slots=True)
class TieVoteResp:
    KIND: ClassVar[str] = "tie-vote-resp"
    group: int
    term: int
    granted: bool
    pre: bool


@dataclass(frozen=True, slots=True)
class TieRenew:
    """Leader -> tie-breaker: renew the lease share of ``term``; ``stamp`` is echoed back."""

    KIND: ClassVar[str] = "tie-renew"
    group: int
    term: int
    stamp: int


@dataclass(frozen=True, slots=True)
class TieRelease:
    """Leader -> tie-breaker: we handed the group over and gave up our lease of ``term``; hold
    it for us no more (the successor needs the tie-breaker's vote now, not a hold later)."""

    KIND: ClassVar[str] = "tie-release"
    group: int
    term: int


@dataclass(frozen=True, slots=True)
class TieRenewAck:
    KIND: ClassVar[str] = "tie-renew-ack"
    group: int
    term: int
    stamp: int
    ok: bool


Message = (
    Ping
    | Ack
    | PingReq
    | Probe
    | ProbeAck
    | PreVote
    | PreVoteResp
    | RequestVote
    | VoteResp
    | LeaderHint
    | Handoff
    | SlotHandover
    | Locate
    | Located
    | Roster
    | Notices
    | NoticesAck
    | Pull
    | TieVote
    | TieVoteResp
    | TieRenew
    | TieRenewAck
    | TieRelease
)

MESSAGE_TYPES: tuple[type, ...] = (
    Ping,
    Ack,
    PingReq,
    Probe,
    ProbeAck,
    PreVote,
    PreVoteResp,
    RequestVote,
    VoteResp,
    LeaderHint,
    Handoff,
    SlotHandover,
    Locate,
    Located,
    Roster,
    Notices,
    NoticesAck,
    Pull,
    TieVote,
    TieVoteResp,
    TieRenew,
    TieRenewAck,
    TieRelease,
)

BY_KIND: dict[str, type] = {t.KIND: t for t in MESSAGE_TYPES}  # type: ignore[attr-defined]
