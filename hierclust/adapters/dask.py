"""Dask: a scheduler plugin that removes at once the workers of hosts hierclust holds lost.

**Why.** A Dask scheduler learns that a worker is gone when the worker's TCP connection breaks.
A host that loses power, or a switch that stops forwarding, sends no RST: the connection only
breaks when TCP gives up (``distributed.comm.timeouts.tcp``, 30 s by default) or when the
worker's heartbeats have been missing for ``distributed.scheduler.worker-ttl``. Until then the
tasks running there look like they are running, and the job waits. hierclust declares such a host
failed in about a second; :class:`HierclustPlugin` passes that on: it calls
``Scheduler.remove_worker`` for each worker of a failed, departed or cut-off host, and the
scheduler reschedules that worker's tasks on the others right away.

**Theory of operation.** On :meth:`HierclustPlugin.start` the plugin starts one task on the
scheduler's event loop. The task opens a :class:`hierclust.api.Client` (``state_dir``, ``node``:
the hierclust node running on the scheduler's host), takes its current ``cursor()`` and reads
its events from there, so nothing concluded after the plugin started is missed. ``NodeFailed``,
``NodeLeft`` and ``SubtreeUnreachable`` name the lost nodes; :func:`plan_removals`, a pure
function, turns one such event and the scheduler's workers into the removals to make. When the
worker goes away (``ConnectionLost``) the task reopens the client and resumes with
``events(since=last cursor)``, waiting between attempts with a doubling back-off capped at
``max_backoff_s``; every failed attempt is logged. ``EventsLost`` (events dropped) and a return
to the primary component after events were skipped both resynchronise from ``members()``
(:func:`plan_resync`).

**Worker to node.** A worker belongs to node ``X`` when its ``name`` is ``X`` (start workers
with ``--name`` set to the host's hierclust node: the only exact rule); else when the worker's
IP is the host in ``X``'s topology address and *no other node* has that host. Several nodes on one
IP (every node of a single-machine deployment on 127.0.0.1, or several nodes per host) make the
IP ambiguous: then only name matching applies to the workers of that IP, and they are left alone
rather than guessed. Topology hosts are compared as written (no DNS lookup): write IPs in the
topology, or name the workers.

**Only from the primary component.** A scheduler cut off with a minority of the cluster would
see the majority as lost; removing its workers would wreck the job the majority goes on running.
So the plugin acts only while its node is in the primary component: it asks the node
(``in_primary()``) just before each removal, and skips the event otherwise (logged). hierclust
itself bounds how long a node that is cut off still believes it is primary
(``docs/architecture.md``, Quorum service); an event concluded in that window and acted upon is
what the bound costs.

**Packaging.** ``distributed`` is an optional dependency (``pip install 'hierclust[dask]'``):
a cluster manager must not pull a scheduler into every installation. The ``dev`` extra carries it
so the tests run a real scheduler and mypy checks this module against it.

**Use.** ``scheduler.add_plugin(HierclustPlugin(node="cn01", state_dir=...))`` in the scheduler
process, ``client.register_plugin(HierclustPlugin(...))`` from a Dask client, or
``dask scheduler --preload hierclust.adapters.dask --hierclust-node cn01``.

This module never touches a socket of its own: it speaks to hierclust only through
``hierclust.api`` and to Dask only through the scheduler it was handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click
from distributed.diagnostics.plugin import SchedulerPlugin

from hierclust.api.errors import HierclustError
from hierclust.api.types import (
    Event,
    EventsLost,
    Member,
    NodeFailed,
    NodeLeft,
    PrimaryChanged,
    SubtreeUnreachable,
)
from hierclust.topology import Topology

if TYPE_CHECKING:
    from distributed.scheduler import Scheduler

logger = logging.getLogger(__name__)

STIMULUS_PREFIX = "hierclust"
"""Every ``stimulus_id`` the plugin passes to ``remove_worker`` starts with it, so the scheduler's
logs and the task transitions show which removals hierclust caused."""

LOST_STATES = frozenset({"failed", "left", "unreachable"})
"""Member states whose workers a resynchronisation removes."""


# -- pure logic: which workers go, and why ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WorkerRef:
    """What the plugin needs of a scheduler's worker: its ``address`` (``tcp://IP:port``), its
    ``name`` (as a string: Dask names may be integers) and its ``host`` (the IP of the address)."""

    address: str
    name: str
    host: str


@dataclass(frozen=True, slots=True)
class Removal:
    """One worker to remove: ``node`` is the hierclust node it was matched to, ``reason`` says
    what hierclust concluded (for the log), ``stimulus_id`` goes to ``remove_worker``."""

    address: str
    node: str
    reason: str
    stimulus_id: str


class NodeMatcher:
    """Worker -> hierclust node for one topology: by name, else by an IP only one node has."""

    def __init__(self, topology: Topology) -> None:
        self.names = frozenset(topology.node_name(r) for r in range(topology.num_nodes))
        on_host: dict[str, list[str]] = {}
        for rank in range(topology.num_nodes):
            address = topology.address(rank)
            if address is not None:
                on_host.setdefault(address.host, []).append(topology.node_name(rank))
        self.by_host = {host: names[0] for host, names in on_host.items() if len(names) == 1}
        self.shared_hosts = frozenset(h for h, names in on_host.items() if len(names) > 1)
        """Hosts of several nodes: their workers match by name only."""

    def node_of(self, worker: WorkerRef) -> str | None:
        """The node ``worker`` runs next to, or None when neither rule names one."""
        if worker.name in self.names:
            return worker.name
        return self.by_host.get(worker.host)


def lost_nodes(event: Event) -> tuple[str, ...]:
    """The nodes ``event`` says are lost (failed, departed or cut off); () for any other event."""
    if isinstance(event, NodeFailed | NodeLeft):
        return (event.node,)
    if isinstance(event, SubtreeUnreachable):
        return event.nodes
    return ()


def describe(event: Event) -> str:
    """What hierclust concluded, in words, for the log line of a removal."""
    if isinstance(event, NodeFailed):
        return f"{event.node} failed (declared by {event.detected_by} in {event.group})"
    if isinstance(event, NodeLeft):
        return f"{event.node} left (declared by {event.detected_by} in {event.group})"
    if isinstance(event, SubtreeUnreachable):
        return f"subtree {event.group} ({event.hostlist}) unreachable"
    return type(event).__name__


def stimulus_id(event: Event) -> str:
    """``hierclust-<Event>-<cursor>``: one per event, the same for every worker it removes."""
    return f"{STIMULUS_PREFIX}-{type(event).__name__}-{event.cursor}"


def plan_removals(
    event: Event, workers: Iterable[WorkerRef], matcher: NodeMatcher, *, in_primary: bool
) -> list[Removal]:
    """The workers to remove for ``event``, as seen by a node that is (or is not) in the primary
    component: none outside it, none for an event that names no lost node."""
    lost = set(lost_nodes(event))
    if not lost or not in_primary:
        return []
    found = []
    for worker in workers:
        node = matcher.node_of(worker)
        if node is not None and node in lost:
            found.append(Removal(worker.address, node, describe(event), stimulus_id(event)))
    return found


def plan_resync(
    members: Sequence[Member], workers: Iterable[WorkerRef], matcher: NodeMatcher, *, tag: str
) -> list[Removal]:
    """After events were lost or skipped: the workers of every member the node holds failed,
    left or unreachable. ``tag`` tells the stimulus apart (``hierclust-resync-<tag>``)."""
    lost = {m.name: m.state for m in members if m.state in LOST_STATES}
    found = []
    for worker in workers:
        node = matcher.node_of(worker)
        if node is not None and node in lost:
            reason = f"{node} {lost[node]} (resynchronised from members)"
            found.append(Removal(worker.address, node, reason, f"{STIMULUS_PREFIX}-resync-{tag}"))
    return found


# -- the plugin ------------------------------------------------------------------------------------
class Source(Protocol):
    """What the plugin uses of a :class:`hierclust.api.Client` (an ``Agent`` serves too)."""

    @property
    def node(self) -> str: ...

    @property
    def topology(self) -> Topology: ...

    async def members(self) -> list[Member]: ...

    async def cursor(self) -> str: ...

    def events(self, since: str | None = None) -> AsyncIterator[Event]: ...

    async def in_primary(self) -> bool: ...


SourceFactory = Callable[[], AbstractAsyncContextManager[Source]]


class HierclustPlugin(SchedulerPlugin):
    """Remove the workers of hosts that hierclust's ``node`` holds failed, left or cut off.

    ``node``/``state_dir``: passed to :class:`hierclust.api.Client` (None: the one local node, the
    default state directory). ``source``: a factory of an async context manager yielding what
    the plugin reads (default: that ``Client``); tests and embedders running an ``Agent`` in the
    scheduler's process pass their own. ``min_backoff_s``/``max_backoff_s``: the wait before
    reopening after the connection was lost or could not be made, doubling up to the cap.
    """

    name = "hierclust"

    def __init__(
        self,
        node: str | None = None,
        state_dir: str | Path | None = None,
        *,
        source: SourceFactory | None = None,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        if not 0 < min_backoff_s <= max_backoff_s:
            raise ValueError(
                f"backoff: need 0 < min_backoff_s ({min_backoff_s}) <= max_backoff_s "
                f"({max_backoff_s})"
            )
        self.node = node
        self.state_dir = None if state_dir is None else str(state_dir)
        self.source = source
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.cursor: str | None = None
        """The cursor of the last event handled: where a reconnection resumes."""
        self.in_primary = False
        self.removed: list[Removal] = []
        """Every removal made (``remove_worker`` answered), oldest first."""
        self.skipped: list[Removal] = []
        """Removals not made because the node was outside the primary component."""
        self.connects = 0
        self._stale = False  # events were skipped or lost: resync on the way back
        self._scheduler: Scheduler | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected: asyncio.Event | None = None

    def __getstate__(self) -> dict[str, Any]:
        # register_plugin pickles the plugin before start: send the settings only
        state = dict(self.__dict__)
        state.update(_scheduler=None, _task=None, _connected=None)
        return state

    # SchedulerPlugin hooks --------------------------------------------------------------------
    async def start(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._connected = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hierclust-events")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_connected(self, timeout_s: float) -> bool:
        """True once the plugin reads events (False if not within ``timeout_s``)."""
        if self._connected is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self._connected.is_set()

    # the event loop ------------------------------------------------------------------------------
    def _open(self) -> AbstractAsyncContextManager[Source]:
        if self.source is not None:
            return self.source()
        from hierclust.api import Client

        opened: AbstractAsyncContextManager[Source] = Client(
            state_dir=self.state_dir, node=self.node
        )
        return opened

    async def _run(self) -> None:
        backoff_s = self.min_backoff_s
        while True:
            try:
                async with self._open() as source:
                    await self._follow(source)
                    backoff_s = self.min_backoff_s
            except asyncio.CancelledError:
                raise
            except (HierclustError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "hierclust: connection lost or refused (%s); retry in %.1f s", why, backoff_s
                )
            else:
                logger.warning("hierclust: the event stream ended; reopening")
            if self._connected is not None:
                self._connected.clear()
            await asyncio.sleep(backoff_s)
            backoff_s = min(2 * backoff_s, self.max_backoff_s)

    async def _follow(self, source: Source) -> None:
        matcher = NodeMatcher(source.topology)
        if self.cursor is None:
            # from this moment on, however long the first iteration takes to begin
            self.cursor = await source.cursor()
        self.in_primary = await source.in_primary()
        self.connects += 1
        logger.info(
            "hierclust: following %s (in the primary component: %s, from cursor %s)",
            source.node,
            self.in_primary,
            self.cursor,
        )
        if self._stale and self.in_primary:
            await self._resync(source, matcher, "reconnect")
        assert self._connected is not None
        self._connected.set()
        async for event in source.events(since=self.cursor):
            await self._handle(source, matcher, event)
            self.cursor = event.cursor

    async def _handle(self, source: Source, matcher: NodeMatcher, event: Event) -> None:
        if isinstance(event, PrimaryChanged):
            self.in_primary = event.in_primary
            logger.info("hierclust: %s in the primary component: %s", source.node, event.in_primary)
            if event.in_primary and self._stale:
                await self._resync(source, matcher, event.cursor)
            return
        if isinstance(event, EventsLost):
            logger.warning(
                "hierclust: %s events lost (%s); resynchronising", event.count, event.reason
            )
            self._stale = True
            if await source.in_primary():
                await self._resync(source, matcher, event.cursor)
            return
        if not lost_nodes(event):
            return
        workers = self._workers()
        planned = plan_removals(event, workers, matcher, in_primary=True)
        if not planned:
            return
        # Ask now rather than trust the last PrimaryChanged: the node's current word.
        self.in_primary = await source.in_primary()
        if not self.in_primary:
            self._stale = True
            self.skipped += planned
            for r in planned:
                logger.warning(
                    "hierclust: NOT removing worker %s (%s): %s, but %s is outside the primary "
                    "component",
                    r.address,
                    r.node,
                    r.reason,
                    source.node,
                )
            return
        await self._remove(planned)

    async def _resync(self, source: Source, matcher: NodeMatcher, tag: str) -> None:
        planned = plan_resync(await source.members(), self._workers(), matcher, tag=tag)
        self._stale = False
        await self._remove(planned)

    def _workers(self) -> list[WorkerRef]:
        assert self._scheduler is not None
        return [
            WorkerRef(ws.address, str(ws.name), ws.host) for ws in self._scheduler.workers.values()
        ]

    async def _remove(self, planned: list[Removal]) -> None:
        assert self._scheduler is not None
        for r in planned:
            logger.warning(
                "hierclust: removing worker %s (%s): %s [%s]",
                r.address,
                r.node,
                r.reason,
                r.stimulus_id,
            )
            answer = await self._scheduler.remove_worker(r.address, stimulus_id=r.stimulus_id)
            if answer == "OK":
                self.removed.append(r)


# -- dask scheduler --preload hierclust.adapters.dask --------------------------------------------
@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--hierclust-node", default=None, help="the hierclust node on the scheduler's host")
@click.option("--hierclust-state-dir", default=None, help="that node's hierclust state directory")
def dask_setup(
    scheduler: Scheduler, hierclust_node: str | None, hierclust_state_dir: str | None
) -> None:
    """Add :class:`HierclustPlugin` to a scheduler started with ``--preload`` (preloads run
    before the scheduler starts its plugins, so it starts with the others)."""
    scheduler.add_plugin(HierclustPlugin(node=hierclust_node, state_dir=hierclust_state_dir))
