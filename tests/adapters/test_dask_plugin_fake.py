"""The Dask plugin's event loop on a real in-process Dask scheduler, fed by a scripted source of
hierclust events (the same interface as ``hierclust.api.Client``): removal, rescheduling, the
primary-component rule, reconnection with the last cursor. The real hierclust deployment is in
``test_dask_plugin.py``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from distributed import Client, Scheduler, Worker, get_worker
from distributed.diagnostics.plugin import SchedulerPlugin

from hierclust.adapters.dask import HierclustPlugin
from hierclust.api.errors import ConnectionLost
from hierclust.api.types import Event, Member, NodeFailed, PrimaryChanged, SubtreeUnreachable
from hierclust.topology import Topology, from_dict, generate_document

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

TOPOLOGY = from_dict(generate_document(4, 3, base_port=7000, name="t"), source="test")
"""cn1..cn4, all on 127.0.0.1: workers match by name only."""


class ScriptedSource:
    """Events the test pushes, an ``in_primary`` flag it sets; ``ConnectionLost`` when the test
    pushes an exception; records each ``since`` it was opened with."""

    def __init__(self) -> None:
        self.node = "cn1"
        self.topology: Topology = TOPOLOGY
        self.primary = True
        self.queue: asyncio.Queue[Event | Exception] = asyncio.Queue()
        self.opened_since: list[str | None] = []
        self.member_list: list[Member] = []

    async def members(self) -> list[Member]:
        return self.member_list

    async def in_primary(self) -> bool:
        return self.primary

    async def events(self, since: str | None = None) -> AsyncIterator[Event]:
        self.opened_since.append(since)
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            yield item

    def factory(self) -> Callable[[], Any]:
        @asynccontextmanager
        async def open_source() -> AsyncIterator[ScriptedSource]:
            yield self

        return open_source


class Removals(SchedulerPlugin):
    """Every remove_worker the scheduler carried out, with its stimulus id."""

    name = "test-removals"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def remove_worker(self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kw: Any):  # type: ignore[override]
        self.seen.append((worker, stimulus_id))


RELEASE = threading.Event()


def busy(seconds: float) -> str:
    """Runs until RELEASE on cn2 (the host the test loses), returns at once elsewhere."""
    me = str(get_worker().name)
    if me == "cn2":
        RELEASE.wait(seconds)
    return me


async def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def dask_cluster(
    plugin: HierclustPlugin,
) -> AsyncIterator[tuple[Scheduler, dict[str, Worker], Client, Removals]]:
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
        for name in ("cn2", "cn3", "other"):
            workers[name] = await stack.enter_async_context(
                Worker(scheduler.address, name=name, nthreads=1, host="127.0.0.1", dashboard=False)
            )
        client = await stack.enter_async_context(Client(scheduler.address, asynchronous=True))
        stack.callback(RELEASE.set)  # before the workers close: their threads must end
        yield scheduler, workers, client, removals


def failed(node: str, cursor: str) -> NodeFailed:
    return NodeFailed(
        cursor=cursor, observer="cn1", t_ns=0, node=node, rank=1, incarnation=1, group="t-1",
        detected_by="cn1",
    )  # fmt: skip


async def test_a_failed_node_loses_its_worker_and_its_task_runs_elsewhere() -> None:
    source = ScriptedSource()
    plugin = HierclustPlugin(source=source.factory())
    async with dask_cluster(plugin) as (scheduler, workers, client, removals):
        assert await plugin.wait_connected(5)
        victim = workers["cn2"].address
        future = client.submit(busy, 30, workers=[victim], allow_other_workers=True, pure=False)
        await wait_for(lambda: workers["cn2"].state.executing_count == 1, 10, "the task on cn2")
        source.queue.put_nowait(failed("cn2", "c1"))
        await wait_for(lambda: victim not in scheduler.workers, 5, "cn2's removal")
        assert removals.seen == [(victim, "hierclust-NodeFailed-c1")]
        assert await asyncio.wait_for(future, 10) in {"cn3", "other"}
        assert set(scheduler.workers) == {workers["cn3"].address, workers["other"].address}
        assert [r.address for r in plugin.removed] == [victim]


async def test_outside_the_primary_component_the_plugin_removes_nothing() -> None:
    source = ScriptedSource()
    source.primary = False
    plugin = HierclustPlugin(source=source.factory())
    async with dask_cluster(plugin) as (scheduler, workers, _client, removals):
        assert await plugin.wait_connected(5)
        cut = SubtreeUnreachable(
            cursor="c1", observer="cn1", t_ns=0, group="t-1", nodes=("cn2", "cn3"),
            hostlist="cn[2-3]",
        )  # fmt: skip
        source.queue.put_nowait(cut)
        source.queue.put_nowait(failed("cn4", "c2"))  # a marker: handled after the cut
        await wait_for(lambda: plugin.cursor == "c2", 5, "both events handled")
        assert len(scheduler.workers) == 3 and removals.seen == []
        assert sorted(r.node for r in plugin.skipped) == ["cn2", "cn3"]
        # Back in the primary component: what was skipped is caught up from members().
        source.member_list = [
            Member(name=n, rank=0, group="t-1", tier=0, state=s, mode="active", incarnation=1,
                   leads=())
            for n, s in (("cn1", "alive"), ("cn2", "unreachable"), ("cn3", "alive"))
        ]  # fmt: skip
        source.primary = True
        source.queue.put_nowait(
            PrimaryChanged(cursor="c3", observer="cn1", t_ns=0, in_primary=True)
        )
        await wait_for(lambda: workers["cn2"].address not in scheduler.workers, 5, "the resync")
        assert removals.seen == [(workers["cn2"].address, "hierclust-resync-c3")]
        assert workers["cn3"].address in scheduler.workers


async def test_after_the_connection_is_lost_the_plugin_resumes_from_its_last_cursor() -> None:
    source = ScriptedSource()
    plugin = HierclustPlugin(source=source.factory(), min_backoff_s=0.05, max_backoff_s=0.2)
    async with dask_cluster(plugin) as (scheduler, workers, _client, removals):
        assert await plugin.wait_connected(5)
        source.queue.put_nowait(failed("cn4", "c5"))  # no worker of cn4: nothing to remove
        source.queue.put_nowait(ConnectionLost("the worker went away"))
        await wait_for(lambda: source.opened_since == [None, "c5"], 5, "the reconnection")
        source.queue.put_nowait(failed("cn3", "c6"))
        await wait_for(lambda: workers["cn3"].address not in scheduler.workers, 5, "cn3's removal")
        assert removals.seen == [(workers["cn3"].address, "hierclust-NodeFailed-c6")]
        assert plugin.connects == 2


async def test_close_ends_the_plugins_task() -> None:
    source = ScriptedSource()
    plugin = HierclustPlugin(source=source.factory())
    async with dask_cluster(plugin):
        assert await plugin.wait_connected(5)
        task = plugin._task
        assert task is not None and not task.done()
        await plugin.close()
        assert task.done() and plugin._task is None
