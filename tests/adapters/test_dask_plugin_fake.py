"""The Dask plugin's event loop on a real in-process Dask scheduler, fed by a scripted source of
hierclust events (the same interface as ``hierclust.api.Client``): removal, rescheduling, the
primary-component rule, reconnection with the last cursor. The real hierclust deployment is in
``test_dask_plugin.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from distributed import Scheduler

from hierclust.adapters.dask import HierclustPlugin
from hierclust.api.errors import ConnectionLost
from hierclust.api.types import Event, Member, NodeFailed, PrimaryChanged, SubtreeUnreachable
from hierclust.topology import Topology, from_dict, generate_document
from tests.adapters.dask_helpers import dask_cluster, hang_on, wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

TOPOLOGY = from_dict(generate_document(4, 3, base_port=7000, name="t"), source="test")
"""cn1..cn4, all on 127.0.0.1: workers match by name only."""
NAMES = ("cn2", "cn3", "other")
"""The Dask workers: two named after nodes, one after none."""


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

    async def cursor(self) -> str:
        return "c0"

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


def failed(node: str, cursor: str) -> NodeFailed:
    return NodeFailed(
        cursor=cursor, observer="cn1", t_ns=0, node=node, rank=1, incarnation=1, group="t-1",
        detected_by="cn1",
    )  # fmt: skip


async def test_a_failed_node_loses_its_worker_and_its_task_runs_elsewhere() -> None:
    source = ScriptedSource()
    plugin = HierclustPlugin(source=source.factory())
    async with dask_cluster(plugin, NAMES) as dask:
        assert await plugin.wait_connected(5)
        victim = dask.address("cn2")
        future = dask.client.submit(
            hang_on, "cn2", 30, workers=[victim], allow_other_workers=True, pure=False
        )
        cn2 = dask.workers["cn2"]
        await wait_for(lambda: cn2.state.executing_count == 1, 10, "the task running on cn2")
        source.queue.put_nowait(failed("cn2", "c1"))
        await wait_for(lambda: victim not in dask.scheduler.workers, 5, "cn2's removal")
        assert dask.removals.seen == [(victim, "hierclust-NodeFailed-c1")]
        assert await asyncio.wait_for(future, 10) in {"cn3", "other"}
        assert set(dask.scheduler.workers) == {dask.address("cn3"), dask.address("other")}
        assert [r.address for r in plugin.removed] == [victim]


async def test_outside_the_primary_component_the_plugin_removes_nothing() -> None:
    source = ScriptedSource()
    source.primary = False
    plugin = HierclustPlugin(source=source.factory())
    async with dask_cluster(plugin, NAMES) as dask:
        assert await plugin.wait_connected(5)
        cut = SubtreeUnreachable(
            cursor="c1", observer="cn1", t_ns=0, group="t-1", nodes=("cn2", "cn3"),
            hostlist="cn[2-3]",
        )  # fmt: skip
        source.queue.put_nowait(cut)
        source.queue.put_nowait(failed("cn4", "c2"))  # a marker: handled after the cut
        await wait_for(lambda: plugin.cursor == "c2", 5, "both events handled")
        assert len(dask.scheduler.workers) == 3 and dask.removals.seen == []
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
        cn2 = dask.address("cn2")
        await wait_for(lambda: cn2 not in dask.scheduler.workers, 5, "the resync")
        assert dask.removals.seen == [(cn2, "hierclust-resync-c3")]
        assert dask.address("cn3") in dask.scheduler.workers


async def test_after_the_connection_is_lost_the_plugin_resumes_from_its_last_cursor() -> None:
    source = ScriptedSource()
    plugin = HierclustPlugin(source=source.factory(), min_backoff_s=0.05, max_backoff_s=0.2)
    async with dask_cluster(plugin, NAMES) as dask:
        assert await plugin.wait_connected(5)
        source.queue.put_nowait(failed("cn4", "c5"))  # no worker of cn4: nothing to remove
        source.queue.put_nowait(ConnectionLost("the worker went away"))
        await wait_for(lambda: source.opened_since == ["c0", "c5"], 5, "the reconnection")
        source.queue.put_nowait(failed("cn3", "c6"))
        cn3 = dask.address("cn3")
        await wait_for(lambda: cn3 not in dask.scheduler.workers, 5, "cn3's removal")
        assert dask.removals.seen == [(cn3, "hierclust-NodeFailed-c6")]
        assert plugin.connects == 2


async def test_close_ends_the_plugins_task() -> None:
    source = ScriptedSource()
    plugin = HierclustPlugin(source=source.factory())
    async with dask_cluster(plugin, NAMES):
        assert await plugin.wait_connected(5)
        task = plugin._task
        assert task is not None and not task.done()
        await plugin.close()
        assert task.done() and plugin._task is None


async def test_dask_scheduler_preload_installs_the_plugin_with_its_options(tmp_path: Path) -> None:
    """``dask scheduler --preload hierclust.adapters.dask --hierclust-node ...``: the plugin is
    there and started; with nothing deployed it keeps retrying, the scheduler unharmed."""
    argv = ["--hierclust-node", "cn1", "--hierclust-state-dir", str(tmp_path)]
    async with Scheduler(
        host="127.0.0.1",
        port=0,
        dashboard=False,
        dashboard_address=":0",
        preload=["hierclust.adapters.dask"],
        preload_argv=[argv],
    ) as scheduler:
        plugin = scheduler.plugins["hierclust"]
        assert isinstance(plugin, HierclustPlugin)
        assert (plugin.node, plugin.state_dir) == ("cn1", str(tmp_path))
        assert not await plugin.wait_connected(0.3)
        assert plugin._task is not None and not plugin._task.done()
    assert plugin._task is None, "the scheduler's close closes the plugin"
