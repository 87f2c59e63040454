"""The vocabulary between the protocol core and whatever drives it (simulator or asyncio runtime).

Theory of operation
-------------------
A :class:`~hierclust.core.node.Node` never performs I/O. The driver feeds it one *input* at a time
with the current time, ``node.step(now_ns, input)``, and carries out the *effects* it returns, in
order. Ordering is a contract: a :class:`Persist` must be durable before any later effect of the
same list is carried out (a vote is persisted before it is sent). Timers are effects too: the driver
keeps at most one pending timer per key, a later :class:`SetTimer` replaces an earlier one, and
:class:`CancelTimer` drops it.

Node ids are ranks in the topology (``int``), group ids are ``Group.index`` (``int``): the
simulator handles millions of them, so no strings on the hot path.

*Events* (:class:`Emit`) are how the outside learns what the node concluded: the simulator's
checkers and reports, the runtime's ``status``/``events`` commands and the library API all read
the same events, so what is tested is what users see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

NodeId = int
GroupId = int
TimerKey = tuple[Any, ...]


# -- notices ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Failure:
    """A node declared failed. Identity for de-duplication is ``(node, incarnation)``."""

    node: NodeId
    incarnation: int
    group: GroupId
    detected_by: NodeId
    term: int
    planned: bool = False
    """The node was in maintenance or drained when its leader declared it: a planned departure,
    not a fault (the detector read its admin mode from the :class:`Admin` notices it held)."""
    age_ms: int = field(default=0, compare=False)
    """How long ago the failure was detected, as the sender reckons it when it sends the notice
    (a duration, never an instant of the sender's clock). The receiver dates the notice by its
    own clock, ``now - age``, and forgets it ``notice_ttl_ms`` after that. Not part of the
    notice's identity or equality."""

    @property
    def identity(self) -> tuple[str, NodeId, int]:
        return ("failed", self.node, self.incarnation)


@dataclass(frozen=True, slots=True)
class Alive:
    """A node back with a higher incarnation."""

    node: NodeId
    incarnation: int

    @property
    def identity(self) -> tuple[str, NodeId, int]:
        return ("alive", self.node, self.incarnation)


ACTIVE: Final = 0
MAINTENANCE: Final = 1
DRAINED: Final = 2
ADMIN_MODES: Final = ("active", "maintenance", "drained")
"""Operator modes of a node by value. A node in maintenance or drained holds no leadership when
an active member can take it, stands for election only after every active member, and its
departure is a *planned* :class:`Failure`. Quorum is not affected (voting membership never
changes without consensus); the two modes differ only in what they tell schedulers."""


@dataclass(frozen=True, slots=True)
class Admin:
    """The operator set ``mode`` for ranks ``node .. node + count - 1``. ``seq`` orders admin
    notices (the issuing node's ms clock, above every seq it has seen), ``issuer`` breaks ties;
    per rank the newest admin notice holds. An admin notice is kept, and digested, until a newer
    one covers its whole range."""

    node: NodeId
    count: int
    mode: int
    seq: int
    issuer: NodeId

    @property
    def identity(self) -> tuple[str, NodeId, int, int, int]:
        return ("admin", self.node, self.count, self.seq, self.issuer)

    @property
    def order(self) -> tuple[int, int]:
        return (self.seq, self.issuer)

    def covers(self, rank: int) -> bool:
        return self.node <= rank < self.node + self.count


@dataclass(frozen=True, slots=True)
class Subtree:
    """The subtree under ``group`` (ranks ``node .. node + count - 1``) is cut off from the rest
    of the tree (``reachable`` False), or back (True). The leader of the parent group issues it
    when the group's slot stays empty past ``slot_grace_ms`` (no leader of the child group came
    to fill it: the child group is cut off or dead), and again when a leader of it takes the slot.
    ``seq`` orders them as for :class:`Admin`; per group the newest holds, and a node keeps only
    that one."""

    node: NodeId
    count: int
    group: GroupId
    reachable: bool
    seq: int
    issuer: NodeId

    @property
    def identity(self) -> tuple[str, GroupId, int, int]:
        return ("subtree", self.group, self.seq, self.issuer)

    @property
    def order(self) -> tuple[int, int]:
        return (self.seq, self.issuer)

    def covers(self, rank: int) -> bool:
        return self.node <= rank < self.node + self.count


Notice = Failure | Alive | Admin | Subtree


# -- inputs ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    """First input after construction (or restart); the node schedules its timers.
    ``wall_offset_ns``: this host's wall clock minus the monotonic clock ``now`` comes from (see
    :class:`WallClock`)."""

    wall_offset_ns: int = 0


@dataclass(frozen=True, slots=True)
class WallClock:
    """The host's wall clock moved against its monotonic clock (a step, a slew, NTP): the new
    ``wall - monotonic`` offset. The node reads the wall clock only to make upper-tier terms and
    admin commands grow past values it may have forgotten (a hybrid logical clock); no decision
    compares it with another node's clock."""

    offset_ns: int


@dataclass(frozen=True, slots=True)
class Received:
    src: NodeId
    msg: Any


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: TimerKey


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The transport learned that ``dst`` cannot be reached (ICMP port unreachable)."""

    dst: NodeId


@dataclass(frozen=True, slots=True)
class LoopLag:
    """Local-health input: how late the driver ran the last timer, in ms."""

    lag_ms: int


@dataclass(frozen=True, slots=True)
class Command:
    """Operator/API request. ``Command("admin", (mode, ((first, count), ...)))`` sets the admin
    mode (:data:`ACTIVE`, :data:`MAINTENANCE`, :data:`DRAINED`) of those rank ranges cluster-wide:
    the node that gets it issues :class:`Admin` notices, which flood like failure notices."""

    name: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Storage:
    """The driver could not make a :class:`Persist` durable (``durable`` False: a read-only or
    full state directory, an I/O error), or it can again (True, once a write succeeded). While it
    cannot, the node grants no vote and stands for no election: a vote or a candidacy is a
    promise that must survive a restart. The driver drops the promises (a granted ``VoteResp``,
    a ``RequestVote``, a tie-breaker vote request) that follow a failed write; this input tells
    the node why, so it refuses openly instead of seeming to agree."""

    durable: bool


Input = Start | Received | TimerFired | Unreachable | LoopLag | Command | WallClock | Storage


# -- effects ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to node ``dst``; for a tie-breaker witness, ``dst`` is ``witness_id(group)``."""

    dst: NodeId
    msg: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    key: TimerKey
    at_ns: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: TimerKey


@dataclass(frozen=True, slots=True)
class Persist:
    """Durable state to write before any later effect runs (term/vote per group, incarnation)."""

    state: Any


@dataclass(frozen=True, slots=True)
class Emit:
    event: Any


Effect = Send | SetTimer | CancelTimer | Persist | Emit


def witness_id(group: GroupId) -> NodeId:
    """Address of a group's witness daemon in :class:`Send` (negative, so never a node rank)."""
    return -1 - group


def witness_group(dst: NodeId) -> GroupId:
    return -1 - dst


# -- events ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NoticeLearned:
    """This node learned ``notice`` for the first time (``via`` = group it came through, or None
    when this node detected it itself)."""

    notice: Notice
    via: GroupId | None


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """This node's view of ``group``'s leader changed (``leader`` None = no leader known)."""

    group: GroupId
    leader: NodeId | None
    term: int


@dataclass(frozen=True, slots=True)
class ElectionStarted:
    group: GroupId
    term: int


@dataclass(frozen=True, slots=True)
class LeaseChanged:
    """This node's leadership lease of ``group``: ``held`` until ``until_ns`` (if held)."""

    group: GroupId
    term: int
    held: bool
    until_ns: int


@dataclass(frozen=True, slots=True)
class ViewChanged:
    group: GroupId
    view_id: int


@dataclass(frozen=True, slots=True)
class SubtreeUnreachable:
    """This node now holds that the subtree under ``group`` (ranks ``first .. first + count -
    1``) is cut off from the rest of the tree."""

    group: GroupId
    first: NodeId
    count: int


@dataclass(frozen=True, slots=True)
class SubtreeReachable:
    """The subtree under ``group`` is reachable again (as this node holds it)."""

    group: GroupId
    first: NodeId
    count: int


@dataclass(frozen=True, slots=True)
class QuorumChanged:
    group: GroupId
    quorate: bool


@dataclass(frozen=True, slots=True)
class VoteGranted:
    group: GroupId
    term: int
    candidate: NodeId


Role = Literal["leaf", "leader", "root-leader"]
