"""What the library API returns: members, events and fencing tokens, as frozen dataclasses.

Every event is what one node (its ``observer``) concluded, in the order it concluded it, with a
``cursor``: pass the cursor of the last event handled as ``events(since=cursor)`` to resume after
a reconnect with nothing lost or repeated. ``t_ns`` is the observer's host's monotonic clock: it
orders the events of one host and measures durations there; never compare it with another
host's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["alive", "suspect", "failed", "left", "unreachable"]
Mode = Literal["active", "maintenance", "drained"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One node as the observing node sees it.

    ``state``: ``unreachable`` while the observer holds a subtree containing it cut off, else
    ``failed`` (``left`` for a planned departure) while it holds a failure notice of it and no
    later alive notice, else ``alive``. ``tier``: 0 for a node that leads nothing, ``t + 1`` for
    the leader of a tier-``t`` group (it then sits in the group above). ``leads``: the names of
    the groups it leads, as the observer sees it. ``incarnation``: None when the observer holds
    no notice naming one.
    """

    name: str
    rank: int
    group: str
    tier: int
    state: State
    mode: Mode
    incarnation: int | None
    leads: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries: ``cursor`` (opaque, for ``events(since=...)``), ``observer``
    (the node that concluded it) and ``t_ns`` (its host's monotonic clock)."""

    cursor: str
    observer: str
    t_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFailed(Event):
    """``node`` failed (a fault, not planned): ``detected_by`` declared it in ``group``."""

    node: str
    rank: int
    incarnation: int
    group: str
    detected_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLeft(Event):
    """``node`` left as planned: it was in maintenance or drained when its leader declared it."""

    node: str
    rank: int
    incarnation: int
    group: str
    detected_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAlive(Event):
    """``node`` is back, with a higher incarnation than the one declared failed or left."""

    node: str
    rank: int
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtreeUnreachable(Event):
    """The subtree under ``group`` (``nodes``, folded as ``hostlist``) is cut off from the rest
    of the tree, as the observer holds it."""

    group: str
    nodes: tuple[str, ...]
    hostlist: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtreeReachable(Event):
    """The subtree under ``group`` is reachable again."""

    group: str
    nodes: tuple[str, ...]
    hostlist: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderChanged(Event):
    """The observer's view of ``group``'s leader changed (``leader`` None: no leader known)."""

    group: str
    leader: str | None
    term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumChanged(Event):
    """The observer holds ``group`` quorate, or no longer does."""

    group: str
    quorate: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PrimaryChanged(Event):
    """The observer entered or left the primary component (every group on its path up to the
    root quorate)."""

    in_primary: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsLost(Event):
    """Events were dropped, never silently: the subscriber fell ``count`` events behind its
    bounded buffer (``reason`` ``overflow``), or its cursor is older than what the node still
    keeps or from before the node's host restarted (``expired``; ``count`` None when unknown).
    Read ``members()`` again to resynchronise; the stream goes on after this event."""

    count: int | None
    reason: Literal["overflow", "expired"]


ClusterEvent = (
    NodeFailed
    | NodeLeft
    | NodeAlive
    | SubtreeUnreachable
    | SubtreeReachable
    | LeaderChanged
    | QuorumChanged
    | PrimaryChanged
    | EventsLost
)
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        NodeFailed,
        NodeLeft,
        NodeAlive,
        SubtreeUnreachable,
        SubtreeReachable,
        LeaderChanged,
        QuorumChanged,
        PrimaryChanged,
        EventsLost,
    )
}


@dataclass(frozen=True, slots=True, order=True)
class FencingToken:
    """A fencing token of ``group``: ``term`` is the group's leadership term, which every
    leadership change of the group makes strictly larger, so tokens of one group are totally
    ordered by ``term`` (compare ``value``). Shared storage keeps the largest token it has seen
    for the group and refuses a write that carries a smaller one. ``leader``: who led that term."""

    term: int
    group: str
    leader: str

    @property
    def value(self) -> int:
        return self.term
