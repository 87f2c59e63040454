"""``primary()`` when the node's host cannot answer: nothing is left subscribed, and a watcher
that cannot tell whether the node is still primary cancels the body instead of dying unseen."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hierclust.api import Agent, NodeDown, QuorumLost, Session
from tests.api.test_agent import everyone
from tests.runtime.conftest import make_topology

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def test_primary_on_a_stopped_node_leaves_no_subscription(tmp_path: Path) -> None:
    topology = make_topology(6, 3)
    async with Agent(topology, everyone(topology), tmp_path) as agent:
        assert await agent.wait_primary(timeout=15)
        agent.host.kill(agent.rank)
        with pytest.raises(NodeDown):
            async with agent.primary():
                raise AssertionError("the body ran on a stopped node")
        assert agent.host.api.subscribers.get(agent.rank, []) == []


class Stream:
    def __init__(self, events: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.events = events
        self.closed = False

    async def get(self) -> dict[str, Any] | None:
        return await self.events.get()

    async def aclose(self) -> None:
        self.closed = True


class Backend:
    """A host that says primary once, then can no longer answer (its node stopped)."""

    where = "fake"

    def __init__(self) -> None:
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.stream = Stream(self.events)
        self.down = False

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.down:
            return {"ok": False, "kind": "NodeDown", "error": "node cn01 is not running"}
        return {"ok": True, "in_primary": True}

    async def subscribe(self, request: dict[str, Any]) -> Stream:
        return self.stream


async def test_a_watcher_that_cannot_ask_cancels_the_body() -> None:
    backend = Backend()
    session = Session()
    session.node, session.rank, session._backend = "cn01", 0, backend
    entered = asyncio.Event()

    async def body() -> None:
        async with session.primary():
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(body())
    await asyncio.wait_for(entered.wait(), 5)
    backend.down = True
    lost = {"type": "EventsLost", "cursor": "x:1", "observer": "cn01", "t_ns": 0}
    backend.events.put_nowait({**lost, "count": 3, "reason": "overflow"})
    with pytest.raises(QuorumLost, match="can no longer tell"):
        await asyncio.wait_for(task, 5)
    assert backend.stream.closed
