"""What the library API asks of a host: its events with cursors, members, quorum, fencing tokens.

One :class:`ApiService` per :class:`~hierclust.runtime.host.NodeHost` serves both ways into the
API: in-process (``hierclust.api.Agent`` calls it directly) and over the control socket
(``hierclust.api.Client``; :mod:`hierclust.runtime.control` streams a subscription as JSON lines).
Everything it returns is JSON-ready dicts, so both ways give the same answers.

Events
------
Every core event the bus publishes (what a node concluded) that a scheduler cares about becomes
an *API event* of that node, its *observer*: ``NodeFailed``/``NodeLeft``/``NodeAlive`` (a notice
learned), ``SubtreeUnreachable``/``SubtreeReachable``, ``LeaderChanged``, ``QuorumChanged``; and
``PrimaryChanged``, which the core does not emit: the service asks the node after each of its
events, at the instant its leases run out if nothing renews them
(:meth:`~hierclust.core.state.NodeState.primary_until`), on every heartbeat tick and when the
node stops. Each gets the next sequence number of this host's life; its *cursor* is
``EPOCH:SEQ``, ``EPOCH`` being random per host life. The last :data:`RING` events are kept (the
core events, converted when read), so a subscriber that reconnects with its last cursor gets
exactly what it missed; when the cursor is older than the ring or from an earlier life of the
host, it first gets ``EventsLost`` (reason ``expired``) and must read the members again.

Subscribers
-----------
A subscriber's buffer is bounded (``buffer`` events). Publishing never waits for it: when the
buffer is full, later events are counted instead of kept, and once the subscriber has read what
its buffer held it gets one ``EventsLost`` (reason ``overflow``, with the count) before the
stream goes on. So a slow subscriber costs the node nothing and never misses events silently.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from typing import Any, Protocol

from hierclust.core.types import (
    Alive,
    Failure,
    LeaderChanged,
    NoticeLearned,
    QuorumChanged,
    SubtreeReachable,
    SubtreeUnreachable,
)
from hierclust.runtime.driver import NodeDriver
from hierclust.runtime.events import EventRecord
from hierclust.runtime.view import members_as_seen
from hierclust.topology import Topology

RING = 16_384
"""Events kept per host for subscribers that reconnect (a few MB at most)."""
DEFAULT_BUFFER = 4_096
"""A subscriber's bounded buffer, in events, unless it asks for another size."""
MAX_BUFFER = 1 << 20


class ServiceError(Exception):
    """A request the service refuses. ``kind`` names the API exception it becomes:
    ``UnknownNode``, ``NodeDown``, ``NotPrimary`` or ``RequestFailed``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Sink(Protocol):
    """Where a subscription hands events on at once instead of queueing them (the control
    socket's connection): ``backlog()`` is how many events it holds not yet taken by the reader,
    ``write`` hands one more on, ``closed`` says the reader is gone."""

    closed: bool

    def backlog(self) -> int: ...

    def write(self, event: dict[str, Any]) -> None: ...


LOST_RETRY_S = 0.005
"""While events are being lost, how often a sink subscription looks whether its reader caught
up enough to be told (and to take events again)."""


class Subscription:
    """One subscriber's bounded buffer of API events (dicts) of one observer.

    In-process, events wait in the subscription's own queue for :meth:`get`. With a ``sink``
    (a socket), each is written to it as it is published, so nothing waits for the event loop
    to run another task: the sink's own backlog is the bounded buffer."""

    def __init__(
        self, service: ApiService, rank: int, limit: int, sink: Sink | None = None
    ) -> None:
        self.service = service
        self.rank = rank
        self.limit = limit
        self.sink = sink
        self.queue: deque[dict[str, Any]] = deque()
        self.lost = 0
        self.lost_cursor = ""
        self.closed = False
        self._wake: asyncio.Future[None] | None = None
        self._retry: asyncio.TimerHandle | None = None

    def push(self, event: dict[str, Any]) -> None:
        # once events are lost, nothing is kept until the subscriber has been told: the stream
        # never shows a later event across an unannounced gap
        sink = self.sink
        held = len(self.queue) if sink is None else sink.backlog()
        if self.lost or held >= self.limit:
            self.lost += 1
            self.lost_cursor = event["cursor"]
            if sink is not None and self._retry is None:
                self._retry = asyncio.get_running_loop().call_later(LOST_RETRY_S, self._tell_lost)
        elif sink is not None:
            sink.write(event)
        else:
            self.queue.append(event)
        self._notify()

    def _lost_event(self) -> dict[str, Any]:
        event = self.service.lost_event(self.rank, self.lost, "overflow", self.lost_cursor)
        self.lost = 0
        return event

    def _tell_lost(self) -> None:
        """A sink's reader fell behind: once it has taken half its buffer, tell it how many
        events it lost, and go on."""
        self._retry = None
        sink = self.sink
        if sink is None or self.closed or sink.closed or not self.lost:
            return
        if sink.backlog() <= self.limit // 2:
            sink.write(self._lost_event())
        else:
            self._retry = asyncio.get_running_loop().call_later(LOST_RETRY_S, self._tell_lost)

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.service._drop(self)
        self._notify()

    async def get(self) -> dict[str, Any] | None:
        """The next event (in-process subscriptions); None once closed."""
        while True:
            if self.queue:
                return self.queue.popleft()
            if self.lost:
                return self._lost_event()
            if self.closed:
                return None
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
            self._wake = None

    async def wait_closed(self) -> None:
        """Until :meth:`close` (the host stopping, or the subscriber leaving)."""
        while not self.closed:
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
            self._wake = None


class ApiService:
    """The API's view of one host's nodes (``drivers``, by rank)."""

    def __init__(self, topology: Topology, drivers: dict[int, NodeDriver]) -> None:
        self.topology = topology
        self.drivers = drivers
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.ring: deque[tuple[int, int, int, Any]] = deque(maxlen=RING)  # seq, rank, t_ns, ev
        self.subscribers: dict[int, list[Subscription]] = {}
        self.primary: dict[int, bool] = {}
        self.deadlines: dict[int, tuple[int, asyncio.TimerHandle]] = {}
        for driver in drivers.values():
            driver.on_crash = self._crashed

    # -- events -----------------------------------------------------------------------------------
    def on_record(self, record: EventRecord) -> None:
        """The bus's subscriber: keep what the API shows, then ask the node whether it is still
        in the primary component."""
        if record.rank in self.drivers:
            if isinstance(record.event, _SHOWN):
                self._append(record.rank, record.t_ns, record.event)
            self.check_primary(record.rank)

    def _append(self, rank: int, t_ns: int, event: Any) -> None:
        if isinstance(event, NoticeLearned) and not isinstance(event.notice, Failure | Alive):
            return  # admin and subtree notices: the Subtree events say the latter
        self.seq += 1
        self.ring.append((self.seq, rank, t_ns, event))
        subs = self.subscribers.get(rank)
        if subs:
            fields = self.fields(self.seq, rank, t_ns, event)
            for sub in subs:
                sub.push(fields)

    def cursor(self, seq: int) -> str:
        return f"{self.epoch}:{seq}"

    def fields(self, seq: int, rank: int, t_ns: int, event: Any) -> dict[str, Any]:
        """An API event as JSON-ready fields: ``{"type": "NodeFailed", "cursor": ..., ...}``."""
        topo = self.topology
        name = topo.node_name
        out: dict[str, Any] = {"cursor": self.cursor(seq), "observer": name(rank), "t_ns": t_ns}
        if isinstance(event, NoticeLearned):
            notice = event.notice
            assert isinstance(notice, Failure | Alive)  # the others are never kept (_append)
            out["node"] = name(notice.node)
            out["rank"] = notice.node
            out["incarnation"] = notice.incarnation
            if isinstance(notice, Failure):
                out["type"] = "NodeLeft" if notice.planned else "NodeFailed"
                out["group"] = topo.by_index[notice.group].name
                out["detected_by"] = name(notice.detected_by)
            else:
                out["type"] = "NodeAlive"
        elif isinstance(event, SubtreeUnreachable | SubtreeReachable):
            group = topo.by_index[event.group]
            out["type"] = type(event).__name__
            out["group"] = group.name
            out["nodes"] = [name(r) for r in range(event.first, event.first + event.count)]
            out["hostlist"] = topo.hostlist(group)
        elif isinstance(event, LeaderChanged):
            out["type"] = "LeaderChanged"
            out["group"] = topo.by_index[event.group].name
            out["leader"] = None if event.leader is None else name(event.leader)
            out["term"] = event.term
        elif isinstance(event, QuorumChanged):
            out["type"] = "QuorumChanged"
            out["group"] = topo.by_index[event.group].name
            out["quorate"] = event.quorate
        elif isinstance(event, _Primary):
            out["type"] = "PrimaryChanged"
            out["in_primary"] = event.in_primary
        return out

    def lost_event(self, rank: int, count: int | None, reason: str, cursor: str) -> dict[str, Any]:
        return {
            "type": "EventsLost",
            "cursor": cursor,
            "observer": self.topology.node_name(rank),
            "t_ns": time.monotonic_ns(),
            "count": count,
            "reason": reason,
        }

    def check_subscription(self, rank: int, since: str | None, buffer: int) -> int | None:
        """:class:`ServiceError` unless :meth:`subscribe` can take these arguments; the
        sequence number ``since`` names."""
        self.driver(rank)
        if not 1 <= buffer <= MAX_BUFFER:
            raise ServiceError("RequestFailed", f"buffer {buffer}: expected 1..{MAX_BUFFER}")
        if since is None:
            return None
        try:
            return int(since.partition(":")[2])
        except ValueError:
            raise ServiceError(
                "RequestFailed", f"cursor {since!r}: not a cursor (pass an event's .cursor)"
            ) from None

    def subscribe(
        self,
        rank: int,
        since: str | None,
        buffer: int = DEFAULT_BUFFER,
        sink: Sink | None = None,
    ) -> Subscription:
        """A subscription to ``rank``'s events, from now on, or from after cursor ``since``
        (what the ring still holds; ``EventsLost`` first when it cannot hold it all)."""
        after = self.check_subscription(rank, since, buffer)
        sub = Subscription(self, rank, buffer, sink)
        if since is not None and after is not None:
            epoch = since.partition(":")[0]
            oldest = self.ring[0][0] if self.ring else self.seq + 1
            if epoch != self.epoch or after > self.seq:
                sub.push(self.lost_event(rank, None, "expired", self.cursor(self.seq)))
            else:
                if after + 1 < oldest:
                    sub.push(self.lost_event(rank, None, "expired", self.cursor(oldest - 1)))
                for seq, r, t_ns, event in self.ring:
                    if seq > after and r == rank:
                        sub.push(self.fields(seq, r, t_ns, event))
        self.subscribers.setdefault(rank, []).append(sub)
        return sub

    def _drop(self, sub: Subscription) -> None:
        subs = self.subscribers.get(sub.rank)
        if subs and sub in subs:
            subs.remove(sub)

    def close(self) -> None:
        for subs in list(self.subscribers.values()):
            for sub in list(subs):
                sub.close()
        for _, handle in self.deadlines.values():
            handle.cancel()
        self.deadlines.clear()

    # -- the primary component --------------------------------------------------------------------
    def check_primary(self, rank: int, passed_ns: int | None = None) -> None:
        """Publish ``PrimaryChanged`` when ``rank``'s answer changed, and be back when its leases
        would run out (``passed_ns``: the deadline that brought us here)."""
        driver = self.drivers[rank]
        node = driver.node
        now = time.monotonic_ns()
        until = node.primary_until(now) if node is not None else None
        now_primary = until is not None
        known = self.deadlines.get(rank)
        if self.primary.get(rank, False) != now_primary:
            self.primary[rank] = now_primary
            self._append(rank, now, _Primary(now_primary))
            # in the event log too, with the instant the answer turns false if nothing renews
            # it (entering) or the deadline that just passed (leaving): a timer that ran late
            # does not make the node look primary for longer than its leases said
            if passed_ns is None and known is not None and known[0] <= now:
                passed_ns = known[0]
            ended = passed_ns if not now_primary else None
            driver.ctx.bus.note(
                {
                    "event": "PrimaryChanged",
                    "node": driver.name,
                    "rank": rank,
                    "in_primary": now_primary,
                    "until_ns": until if now_primary else ended,
                }
            )
        if until is None:
            if known is not None:
                known[1].cancel()
                del self.deadlines[rank]
            return
        if known is not None and known[0] == until:
            return
        if known is not None:
            known[1].cancel()
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(0, until - now) / 1e9, self._deadline, rank)
        self.deadlines[rank] = (until, handle)

    def _deadline(self, rank: int) -> None:
        passed = self.deadlines.pop(rank, None)
        self.check_primary(rank, None if passed is None else passed[0])

    def tick(self) -> None:
        """Every heartbeat: a node can enter the primary component without an event."""
        for rank in self.drivers:
            self.check_primary(rank)

    def _crashed(self, driver: NodeDriver, reason: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.check_primary(driver.rank)

    # -- queries ----------------------------------------------------------------------------------
    def driver(self, rank: int) -> NodeDriver:
        driver = self.drivers.get(rank)
        if driver is None:
            name = self.topology.node_name(rank)
            raise ServiceError("UnknownNode", f"node {name} is not run here")
        return driver

    def running(self, rank: int) -> Any:
        node = self.driver(rank).node
        if node is None:
            driver = self.drivers[rank]
            raise ServiceError(
                "NodeDown",
                f"node {driver.name} is not running ({driver.stop_reason or 'stopped'}); "
                "`hierclust restart` brings it back",
            )
        return node

    def hello(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "topology": self.topology.source,
            "ranks": list(self.drivers),
            "running": [r for r, d in self.drivers.items() if d.node is not None],
        }

    def members(self, rank: int, view: dict[str, Any]) -> list[dict[str, Any]]:
        """Every node as ``rank`` sees it (``view``: its host's :meth:`NodeHost.view`)."""
        self.running(rank)
        rows = members_as_seen(self.topology, view)
        by_name = self.topology.group
        for row in rows:
            row["tier"] = max((by_name(g).tier + 1 for g in row["leads"]), default=0)
        return rows

    def in_primary(self, rank: int) -> bool:
        return bool(self.running(rank).in_primary(time.monotonic_ns()))

    def leads(self, rank: int) -> list[str]:
        node = self.running(rank)
        now = time.monotonic_ns()
        by_index = self.topology.by_index
        return [by_index[g].name for g in node.groups() if node.lease_valid(g, now)]

    def fencing_token(self, rank: int, group: str | None) -> dict[str, Any]:
        """``{"term", "group", "leader"}`` of ``group`` (default: ``rank``'s leaf group) while
        ``rank`` is in the primary component and holds the group quorate under a known leader."""
        node = self.running(rank)
        topo = self.topology
        name = topo.node_name(rank)
        if group is None:
            gi = topo.leaf_of(rank).index
        else:
            try:
                gi = topo.group(group).index
            except KeyError:
                raise ServiceError("RequestFailed", f"group {group}: not in the topology") from None
        gname = topo.by_index[gi].name
        if gi not in node.groups():
            sits = ", ".join(topo.by_index[g].name for g in node.groups()) or "none"
            raise ServiceError(
                "RequestFailed",
                f"node {name} does not sit in group {gname} (it sits in {sits}); ask a node "
                f"of {gname} for its token",
            )
        now = time.monotonic_ns()
        leader = node.leader_of(gi)
        if not node.in_primary(now) or not node.quorate(gi, now) or leader is None:
            raise ServiceError(
                "NotPrimary",
                f"node {name} is not in the primary component (or holds no quorate leader of "
                f"{gname}): no token",
            )
        return {"term": node.term(gi), "group": gname, "leader": topo.node_name(leader)}


class _Primary:
    """The ring's record of a change of a node's primary-component answer."""

    __slots__ = ("in_primary",)

    def __init__(self, in_primary: bool) -> None:
        self.in_primary = in_primary


_SHOWN = (NoticeLearned, SubtreeUnreachable, SubtreeReachable, LeaderChanged, QuorumChanged)
