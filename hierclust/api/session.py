"""The one interface of :class:`~hierclust.api.Agent` and :class:`~hierclust.api.Client`.

Both ask one host's :class:`~hierclust.runtime.service.ApiService` the same requests, through the
same dispatcher (:meth:`~hierclust.runtime.control.ControlServer.handle`): a client over the
worker's unix control socket, an agent in-process. Only the transport differs (a
:class:`Backend`), so what one answers the other answers too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

from hierclust.api.errors import (
    ConnectionLost,
    HierclustError,
    NodeDown,
    NotPrimary,
    QuorumLost,
    RequestFailed,
    UnknownNode,
)
from hierclust.api.types import EVENT_TYPES, ClusterEvent, FencingToken, Member
from hierclust.topology import Topology
from hierclust.topology.names import HostlistError, expand_nodeset

DEFAULT_BUFFER = 4_096
"""Events a subscriber's buffer holds before the node counts them as lost (see
:class:`~hierclust.api.types.EventsLost`)."""
ACTIVE, MAINTENANCE, DRAINED = 0, 1, 2

ERRORS: dict[str, type[HierclustError]] = {
    "UnknownNode": UnknownNode,
    "NodeDown": NodeDown,
    "NotPrimary": NotPrimary,
    "RequestFailed": RequestFailed,
}


def raise_for(response: dict[str, Any], where: str) -> dict[str, Any]:
    """``response`` when it says ok; else the typed exception it names."""
    if response.get("ok"):
        return response
    error = ERRORS.get(str(response.get("kind")), RequestFailed)
    raise error(f"{where}: {response.get('error')}")


class Stream(Protocol):
    """A subscription's events, as the service's dicts; None when it ended."""

    async def get(self) -> dict[str, Any] | None: ...

    async def aclose(self) -> None: ...


class Backend(Protocol):
    """How a session reaches the host that runs its node."""

    where: str

    async def call(self, request: dict[str, Any]) -> dict[str, Any]: ...

    async def subscribe(self, request: dict[str, Any]) -> Stream: ...


def to_event(fields: dict[str, Any]) -> ClusterEvent:
    """The frozen dataclass of an event's fields (lists become tuples)."""
    data = dict(fields)
    cls = EVENT_TYPES[data.pop("type")]
    if "nodes" in data:
        data["nodes"] = tuple(data["nodes"])
    return cls(**data)  # type: ignore[return-value]


def to_member(row: dict[str, Any]) -> Member:
    return Member(**{**row, "leads": tuple(row["leads"])})


class Session:
    """What a scheduler asks of one node (``node``): members, events, the primary component,
    fencing tokens and administration. Use :class:`~hierclust.api.Agent` or
    :class:`~hierclust.api.Client`."""

    node: str
    rank: int
    topology: Topology
    _backend: Backend

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        response = await self._backend.call({"op": op, "rank": self.rank, **args})
        return raise_for(response, f"{self._backend.where}: node {self.node}")

    async def _subscribe(self, since: str | None, buffer: int) -> Stream:
        return await self._backend.subscribe(
            {"op": "subscribe", "rank": self.rank, "since": since, "buffer": buffer}
        )

    # -- membership -------------------------------------------------------------------------------
    async def members(self) -> list[Member]:
        """Every node of the topology as this node sees it now."""
        rows = (await self._call("members"))["members"]
        return [to_member(row) for row in rows]

    async def cursor(self) -> str:
        """The cursor of the newest event so far: ``events(since=await session.cursor())``
        then gets every event from this moment on, however late it starts iterating (a stream
        without ``since`` starts when it is first iterated)."""
        return str((await self._backend.call({"op": "cursor"}))["cursor"])

    async def events(
        self, since: str | None = None, *, buffer: int = DEFAULT_BUFFER
    ) -> AsyncIterator[ClusterEvent]:
        """This node's events as it concludes them, from when iteration starts (use
        :meth:`subscribe` to be subscribed before you go on) or from after cursor ``since`` (an
        event's ``cursor``: nothing lost or repeated while the host keeps them, else an
        :class:`~hierclust.api.types.EventsLost` first). Ends with :class:`ConnectionLost` when
        the host goes away. ``buffer``: how many events may wait for you before the host counts
        them as lost (you then get one ``EventsLost`` with the count)."""
        async with self.subscribe(since, buffer=buffer) as events:
            async for event in events:
                yield event

    @contextlib.asynccontextmanager
    async def subscribe(
        self, since: str | None = None, *, buffer: int = DEFAULT_BUFFER
    ) -> AsyncIterator[AsyncIterator[ClusterEvent]]:
        """:meth:`events`, subscribed when the ``async with`` is entered::

        async with session.subscribe() as events:
            start_something()          # whatever it causes is in events
            async for event in events:
                ...
        """
        stream = await self._subscribe(since, buffer)
        try:
            yield self._iterate(stream)
        finally:
            await stream.aclose()

    async def _iterate(self, stream: Stream) -> AsyncIterator[ClusterEvent]:
        while True:
            fields = await stream.get()
            if fields is None:
                raise ConnectionLost(
                    f"{self._backend.where}: node {self.node}: the event stream ended (its "
                    "host stopped or restarted); reconnect and pass the last cursor as since="
                )
            yield to_event(fields)

    # -- the primary component --------------------------------------------------------------------
    async def in_primary(self) -> bool:
        """Whether this node is in the primary component now (every group on its path up to
        the root quorate): only there may a scheduler act."""
        return bool((await self._call("in-primary"))["in_primary"])

    async def wait_primary(self, timeout: float | None = None) -> bool:
        """Wait until this node is in the primary component; False after ``timeout`` seconds."""
        stream = await self._subscribe(None, 64)
        try:
            async with asyncio.timeout(timeout):
                while not await self.in_primary():
                    while True:
                        fields = await stream.get()
                        if fields is None:
                            raise ConnectionLost(f"{self._backend.where}: the host went away")
                        if fields["type"] in ("PrimaryChanged", "EventsLost"):
                            break
                return True
        except TimeoutError:
            return False
        finally:
            await stream.aclose()

    async def leads(self) -> tuple[str, ...]:
        """The groups this node leads with a valid lease (its leaf group and, for a leader of a
        leader, the groups above)."""
        return tuple((await self._call("leads"))["leads"])

    async def fencing_token(self, group: str | None = None) -> FencingToken:
        """A fencing token of ``group`` (default: this node's leaf group), which this node must
        sit in. :class:`NotPrimary` unless the node is in the primary component and holds the
        group quorate under a known leader."""
        answer = await self._call("token", group=group)
        return FencingToken(
            term=int(answer["term"]), group=answer["group"], leader=answer["leader"]
        )

    @contextlib.asynccontextmanager
    async def primary(self) -> AsyncIterator[None]:
        """``async with session.primary():`` runs its body only in the primary component:
        :class:`NotPrimary` at once when the node is not in it, and the body is cancelled with
        :class:`QuorumLost` as soon as the node leaves it (or its host can no longer tell)."""
        stream = await self._subscribe(None, 64)
        try:
            primary = await self.in_primary()
        except BaseException:  # NodeDown, ConnectionLost: the subscription must not outlive it
            await stream.aclose()
            raise
        if not primary:
            await stream.aclose()
            raise NotPrimary(
                f"{self._backend.where}: node {self.node} is not in the primary component"
            )
        task = asyncio.current_task()
        assert task is not None
        lost: list[str] = []

        async def watch() -> None:
            while True:
                fields = await stream.get()
                if fields is None:
                    why = "its host went away"
                elif fields["type"] == "PrimaryChanged" and not fields["in_primary"]:
                    why = "it left the primary component"
                elif fields["type"] == "EventsLost" and not await self._still_primary():
                    why = "it left the primary component (or its host can no longer tell)"
                else:
                    continue
                lost.append(why)
                task.cancel()
                return

        watcher = asyncio.ensure_future(watch())
        cancelling = task.cancelling()
        try:
            yield
        except asyncio.CancelledError:
            if lost and task.uncancel() <= cancelling:
                raise QuorumLost(f"node {self.node}: {lost[0]}") from None
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, HierclustError):
                await watcher
            await stream.aclose()

    async def _still_primary(self) -> bool:
        """:meth:`in_primary` for the watcher of :meth:`primary`: an error (the node stopped,
        the host went away) counts as not primary instead of ending the watch unseen."""
        try:
            return await self.in_primary()
        except HierclustError:
            return False

    # -- administration ---------------------------------------------------------------------------
    async def drain(self, nodes: str | Iterable[str]) -> None:
        """Drain ``nodes`` (a nodeset like ``cn[01-04]`` or names): schedulers place no new work
        there; their departure is planned (``NodeLeft``)."""
        await self._admin(nodes, DRAINED)

    async def resume(self, nodes: str | Iterable[str]) -> None:
        """Back to active: the opposite of :meth:`drain` and :meth:`maintenance`."""
        await self._admin(nodes, ACTIVE)

    async def maintenance(self, nodes: str | Iterable[str], on: bool = True) -> None:
        """Put ``nodes`` in maintenance (``on``) or back to active."""
        await self._admin(nodes, MAINTENANCE if on else ACTIVE)

    async def _admin(self, nodes: str | Iterable[str], mode: int) -> None:
        ranks = sorted(resolve_ranks(self.topology, nodes))
        ranges: list[list[int]] = []
        for rank in ranks:
            if ranges and ranges[-1][0] + ranges[-1][1] == rank:
                ranges[-1][1] += 1
            else:
                ranges.append([rank, 1])
        response = await self._backend.call({"op": "admin", "mode": mode, "ranges": ranges})
        raise_for(response, f"{self._backend.where}: admin")


def resolve_ranks(topology: Topology, nodes: str | Iterable[str]) -> list[int]:
    """The ranks of a nodeset string or of node names; :class:`UnknownNode` naming the first
    unknown one (and a close match)."""
    try:
        names = expand_nodeset(nodes) if isinstance(nodes, str) else list(nodes)
    except HostlistError as exc:
        raise UnknownNode(f"{nodes}: {exc}") from None
    if not names:
        raise UnknownNode(f"{nodes!r}: no node named")
    return [rank_of(topology, name) for name in names]


def rank_of(topology: Topology, name: str) -> int:
    """The rank of node ``name``; :class:`UnknownNode` naming the nodes there are (folded, as
    the command line does) when it is not one of them."""
    found = topology.names.rank(name)
    if found is None:
        nodes = topology.hostlist(topology.root)
        raise UnknownNode(f"node {name}: not in the topology {topology.source} (nodes: {nodes})")
    return found
