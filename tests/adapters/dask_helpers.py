"""Shared by the Dask adapter's tests: an in-process Dask scheduler with named workers, a
recorder of the scheduler's worker removals, a task that hangs on one worker only."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from distributed import Client, Scheduler, Worker, get_worker
from distributed.diagnostics.plugin import SchedulerPlugin

from hierclust.adapters.dask import HierclustPlugin

RELEASE = threading.Event()
"""Lets the hanging task (:func:`hang_on`) end: set when a test's cluster closes."""


def hang_on(victim: str, seconds: float) -> str:
    """Hangs (at most ``seconds``) on the worker named ``victim``; elsewhere returns at once the
    name of the worker that ran it."""
    me = str(get_worker().name)
    if me == victim:
        RELEASE.wait(seconds)
    return me


class Removals(SchedulerPlugin):
    """Every worker removal the scheduler carried out, with its stimulus id."""

    name = "test-removals"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def remove_worker(  # type: ignore[override]
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        self.seen.append((worker, stimulus_id))


@dataclass
class DaskCluster:
    scheduler: Scheduler
    workers: dict[str, Worker]
    client: Client
    removals: Removals

    def address(self, name: str) -> str:
        return str(self.workers[name].address)


@asynccontextmanager
async def dask_cluster(plugin: HierclustPlugin, names: Sequence[str]) -> AsyncIterator[DaskCluster]:
    """A scheduler on 127.0.0.1 with ``plugin`` started, one single-thread worker per name."""
    RELEASE.clear()
    async with AsyncExitStack() as stack:
        scheduler = await stack.enter_async_context(
            Scheduler(host="127.0.0.1", port=0, dashboard=False, dashboard_address=":0")
        )
        removals = Removals()
        scheduler.add_plugin(removals)
        scheduler.add_plugin(plugin)
        await plugin.start(scheduler)
        stack.push_async_callback(plugin.close)
        workers = {}
        for name in names:
            workers[name] = await stack.enter_async_context(
                Worker(scheduler.address, name=name, nthreads=1, host="127.0.0.1", dashboard=False)
            )
        client = await stack.enter_async_context(Client(scheduler.address, asynchronous=True))
        stack.callback(RELEASE.set)  # before the workers close: their threads must end
        yield DaskCluster(scheduler, workers, client, removals)


async def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took (bounded wait for real processes)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start
