"""A host process's share of a cluster: many :class:`NodeDriver` s in one event loop.

:class:`NodeHost` owns the drivers and witness servers of one process (which share one
:class:`~hierclust.runtime.context.HostContext`), the lag monitor (one ``LoopLag`` per heartbeat
to every node), the lab operations (kill, pause, restart, partition) and the snapshots that
``status`` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from hierclust.codec import Keyring
from hierclust.core.timeouts import MS
from hierclust.core.types import Command, LoopLag, WallClock
from hierclust.runtime.context import HostContext, local_witnesses
from hierclust.runtime.driver import NodeDriver, wall_offset_ns
from hierclust.runtime.errors import NodeFailedError
from hierclust.runtime.service import ApiService
from hierclust.runtime.tiebreak import WitnessServer

_LOG = logging.getLogger("hierclust.runtime")
WALL_MOVED_NS = MS
"""How far the wall clock must move against the monotonic clock before the nodes are told."""
BOOT_BATCH = 8
BOOT_PAUSE_S = 0.02
"""Boot pacing: ``BOOT_BATCH`` nodes, then a pause that also runs whatever the loop has queued
(at most 400 nodes/s per process, slower when the loop is busy). Booting 512 nodes at once made
their first elections coincide: on a 2-core box with one core taken by other work the 1,024-node
topology then did not settle (split votes while the loop was backlogged); paced, it was led in
5.6-7 s. With both cores taken by other work it still does not settle."""


class NodeHost:
    """Runs ``ranks`` of ``topology`` in the current event loop (and, with ``witnesses``, the
    topology's local witness daemons)."""

    def __init__(self, ctx: HostContext, ranks: list[int], *, witnesses: bool = False) -> None:
        self.ctx = ctx
        self.drivers: dict[int, NodeDriver] = {r: NodeDriver(ctx, r) for r in ranks}
        self.witnesses: list[WitnessServer] = (
            [WitnessServer(ctx, a, gs) for a, gs in local_witnesses(ctx.topology).items()]
            if witnesses
            else []
        )
        self.api = ApiService(ctx.topology, self.drivers)
        self._unsubscribe = ctx.bus.subscribe(self.api.on_record)
        self._lag_task: asyncio.Task[None] | None = None
        self.stopped = asyncio.Event()
        self.started_ns = 0

    async def start(self) -> None:
        """Bind every socket first (a port clash fails before any node talks), then boot."""
        try:
            for witness in self.witnesses:
                await witness.start()
            for driver in self.drivers.values():
                await driver.bind()
        except OSError:
            for witness in self.witnesses:
                witness.close()
            for driver in self.drivers.values():
                if driver.endpoint is not None:
                    driver.endpoint.close()
            raise
        self.started_ns = time.monotonic_ns()
        for i, driver in enumerate(self.drivers.values()):
            driver.boot()
            if i % BOOT_BATCH == BOOT_BATCH - 1:
                # let the timers of nodes already up run on time: a long blocking boot makes
                # every early node late at once, and late candidates split the votes
                await asyncio.sleep(BOOT_PAUSE_S)
        self._lag_task = asyncio.get_running_loop().create_task(self._lag_monitor())

    async def _lag_monitor(self) -> None:
        """Every heartbeat: sample our own lateness, report the worst lag to every node; and when
        the wall clock moved against the monotonic clock (a step, a slew, NTP), tell every node
        the new offset."""
        ctx = self.ctx
        period = ctx.heartbeat_ns
        due = time.monotonic_ns() + period
        wall = wall_offset_ns()
        while True:
            await asyncio.sleep(max(0, due - time.monotonic_ns()) / 1e9)
            now = time.monotonic_ns()
            ctx.note_lag(now - due)
            lag_ms = ctx.lag_max_ns // MS
            ctx.lag_total_max_ns = max(ctx.lag_total_max_ns, ctx.lag_max_ns)
            ctx.last_lag_ms = int(lag_ms)
            ctx.count_lag(int(lag_ms))
            ctx.lag_max_ns = 0
            offset = wall_offset_ns()
            moved = abs(offset - wall) >= WALL_MOVED_NS
            if moved:
                wall = offset
            for driver in self.drivers.values():
                if driver.running:
                    driver.feed(LoopLag(int(lag_ms)))
                    if moved:
                        driver.feed(WallClock(offset))
            self.api.tick()
            due = max(due + period, now)

    # -- lab operations ---------------------------------------------------------------------------
    def driver(self, rank: int) -> NodeDriver:
        try:
            return self.drivers[rank]
        except KeyError:
            raise KeyError(f"node rank {rank} is not run by this host") from None

    def kill(self, rank: int, *, silent: bool = False) -> int:
        """Crash a node now (``silent``: as a power loss, see :meth:`NodeDriver.crash`);
        returns the monotonic time of the kill."""
        t = time.monotonic_ns()
        self.driver(rank).crash("killed", silent=silent)
        return t

    async def restart(self, rank: int, *, wipe: bool = False) -> None:
        """Bring a crashed or failed (or running: crash it first) node back, optionally without
        its disk. :class:`NodeFailedError` if it fails again on its ``Start``."""
        driver = self.driver(rank)
        driver.crash("restart")
        pending = driver.pending_persist
        if pending is not None:  # the old life's last write lands before the new life reads
            with contextlib.suppress(Exception):
                await pending
        if wipe:
            driver.state_path.unlink(missing_ok=True)
        await driver.bind()
        driver.boot()
        if not driver.running:
            raise NodeFailedError(f"stopped again as it started: {driver.stop_reason}")

    def pause(self, rank: int, seconds: float) -> None:
        """Stall a node (no timers, no receive) for ``seconds``, like a long GC pause."""
        driver = self.driver(rank)
        driver.paused_until_ns = time.monotonic_ns() + int(seconds * 1e9)

    def set_keyring(self, keyring: Keyring) -> None:
        """Rotate keys without a restart: every node signs with the new primary from now on and
        accepts exactly the new keyring's keys."""
        self.ctx.keyring = keyring
        for witness in self.witnesses:
            witness.set_keyring(keyring)
        for driver in self.drivers.values():
            if driver.codec is not None:
                driver.codec.keyring = keyring

    def partition(self, ranks: set[int] | None) -> None:
        self.ctx.isolated = None if ranks is None else frozenset(ranks)

    # -- administration ---------------------------------------------------------------------------
    def admin(self, mode: int, ranges: list[tuple[int, int]]) -> int:
        """Set the admin mode of rank ranges cluster-wide: one running node here issues the
        admin notices, the tree carries them everywhere. Returns the issuing rank;
        :class:`NodeFailedError` if that node stopped on an error carrying the command out."""
        now = time.monotonic_ns()
        for rank, driver in self.drivers.items():
            if driver.running and now >= driver.paused_until_ns:
                driver.feed(Command("admin", (mode, tuple(ranges))))
                if not driver.running:
                    raise NodeFailedError(f"issuing the command: {driver.stop_reason}")
                return rank
        raise ValueError("no running node in this worker to issue the command")

    # -- queries ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        return {
            "pid": os.getpid(),
            "topology": self.ctx.topology.source,
            "ranks": list(self.drivers),
            "now_ns": now,
            "started_ns": self.started_ns,
            "lag_ms": self.ctx.last_lag_ms,
            "lag_max_ms": self.ctx.lag_total_max_ns // MS,
            "lag_hist": self.ctx.lag_histogram(),
            "partition": None if self.ctx.isolated is None else sorted(self.ctx.isolated),
            "nodes": [d.snapshot(now) for d in self.drivers.values()],
            "witnesses": [w.snapshot() for w in self.witnesses],
            "admin": self.admin_notices(),
        }

    def view(self, rank: int) -> dict[str, Any] | None:
        """Node ``rank``'s own view (:meth:`NodeDriver.view`), with this host's clock and
        topology; None when this host does not run that rank."""
        driver = self.drivers.get(rank)
        if driver is None:
            return None
        now = time.monotonic_ns()
        return {"topology": self.ctx.topology.source, "now_ns": now, **driver.view(now)}

    def admin_notices(self) -> list[list[int]]:
        """Every admin notice the local nodes hold, ``[first, count, mode, seq, issuer]``."""
        found: set[tuple[int, int, int, int, int]] = set()
        for driver in self.drivers.values():
            node = driver.node
            if node is not None and node.admin:
                found.update(
                    (a.node, a.count, a.mode, a.seq, a.issuer) for a in node.admin.values()
                )
        return [list(a) for a in sorted(found)]

    def leading(self) -> dict[str, Any]:
        """The cheap part of a snapshot: which local node leads which group with a valid lease."""
        now = time.monotonic_ns()
        leading: list[list[int]] = []
        running = 0
        for rank, driver in self.drivers.items():
            node = driver.node
            if node is None:
                continue
            running += 1
            leading.extend([rank, g] for g in node.groups() if node.lease_valid(g, now))
        return {"running": running, "leading": leading}

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        for driver in self.drivers.values():
            driver.crash("stopped", event="Stopped")
            if driver.silenced is not None:
                driver.silenced.close()
                driver.silenced = None
        self.api.close()
        self._unsubscribe()
        for witness in self.witnesses:
            witness.close()
        pool = self.ctx.persist_pool
        if pool is not None:  # writes in flight finish (their nodes are gone: nothing follows)
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        # let the transports run their close callbacks before the loop goes away
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.stopped.set()
