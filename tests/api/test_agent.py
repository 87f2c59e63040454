"""The library API in-process (``Agent``): events, the primary component, tokens, admin, buffers.

Every node of a small topology runs in one ``Agent`` in the test's loop; lab faults
(``agent.host.kill``, ``agent.host.partition``) stand in for crashes and cuts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from ClusterShell.NodeSet import NodeSet

from hierclust.api import (
    Agent,
    EventsLost,
    LeaderChanged,
    Member,
    NodeFailed,
    NotPrimary,
    PrimaryChanged,
    QuorumLost,
    RequestFailed,
    UnknownNode,
)
from hierclust.topology import Topology
from tests.runtime.conftest import make_topology

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def everyone(topology: Topology) -> str:
    return str(NodeSet.fromlist([topology.node_name(r) for r in range(topology.num_nodes)]))


def leaf_member(topology: Topology, agent_members: list[Member]) -> Member:
    """A node that leads nothing, in a leaf group other than the observer's."""
    return next(m for m in reversed(agent_members) if not m.leads)


def one_per_group(agent: Agent, members: list[Member]) -> list[Member]:
    """One member that leads nothing from each leaf group but the observer's."""
    mine = agent.topology.leaf_of(agent.rank).name
    chosen: dict[str, Member] = {}
    for m in members:
        if not m.leads and m.group != mine:
            chosen.setdefault(m.group, m)
    return list(chosen.values())


@pytest_asyncio.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    topology = make_topology(12, 4)
    async with Agent(topology, everyone(topology), tmp_path, observer=topology.node_name(0)) as a:
        assert await a.wait_primary(timeout=15), "the cluster did not form"
        yield a


async def next_of(events: AsyncIterator[object], kind: type, timeout: float = 5.0) -> object:
    async def scan() -> object:
        async for event in events:
            if isinstance(event, kind):
                return event
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), timeout)


async def test_members_show_every_node_alive_and_one_root_leader(agent: Agent) -> None:
    members = await agent.members()
    assert [m.name for m in members] == [agent.topology.node_name(r) for r in range(12)]
    assert all(m.state == "alive" and m.mode == "active" for m in members)
    leaf = agent.topology.leaf_of(agent.rank).name  # what a leaf member knows: its own leader
    assert sum(leaf in m.leads for m in members) == 1
    leaders = [m for m in members if m.leads]
    assert all(m.tier >= 1 for m in leaders) and all(m.tier == 0 for m in members if not m.leads)


async def test_a_crash_reaches_the_subscriber_as_node_failed(agent: Agent) -> None:
    victim = leaf_member(agent.topology, await agent.members())
    events = agent.events(since=await agent.cursor())  # from before the kill, however late read
    reading = asyncio.ensure_future(next_of(events, NodeFailed))
    agent.host.kill(victim.rank)
    failed = await reading
    assert isinstance(failed, NodeFailed)
    assert (failed.node, failed.rank, failed.observer) == (victim.name, victim.rank, agent.node)
    assert failed.group == victim.group
    after = {m.name: m.state for m in await agent.members()}
    assert after[victim.name] == "failed"


async def test_resuming_from_a_cursor_loses_and_repeats_nothing(agent: Agent) -> None:
    whole: list[object] = []
    stop = asyncio.Event()

    async def record(mark: str) -> None:
        async for event in agent.events(since=mark):
            whole.append(event)
            if stop.is_set() and isinstance(event, NodeFailed):
                return

    mark = await agent.cursor()
    recorder = asyncio.ensure_future(record(mark))
    members = await agent.members()
    first, second = one_per_group(agent, members)[:2]
    part = agent.events(since=await agent.cursor())
    reader = asyncio.ensure_future(next_of(part, NodeFailed))
    agent.host.kill(first.rank)
    seen = await reader
    await part.aclose()  # the subscriber goes away ...
    stop.set()
    agent.host.kill(second.rank)  # ... while more happens
    await asyncio.wait_for(recorder, 5)
    resumed: list[object] = []
    assert isinstance(seen, NodeFailed)
    async for event in agent.events(since=seen.cursor):
        resumed.append(event)
        if isinstance(event, NodeFailed):
            break
    tail = whole[whole.index(seen) + 1 :]
    assert resumed == tail[: len(resumed)] and resumed
    assert isinstance(resumed[-1], NodeFailed) and resumed[-1].node == second.name


async def test_a_cursor_from_another_life_says_events_were_lost(agent: Agent) -> None:
    stream = agent.events(since="00000000:5")
    first = await asyncio.wait_for(anext(stream), 5)
    assert isinstance(first, EventsLost) and first.reason == "expired"
    await stream.aclose()


async def test_a_slow_subscriber_gets_an_overflow_event_not_a_silent_gap(agent: Agent) -> None:
    mark = await agent.cursor()
    slow = agent.events(since=mark, buffer=1)
    fast = agent.events(since=mark)
    victims = one_per_group(agent, await agent.members())
    assert len(victims) >= 2
    for victim in victims:
        agent.host.kill(victim.rank)
    seen_fast: list[object] = []

    async def until_all_failed() -> None:
        failures = 0
        async for event in fast:
            seen_fast.append(event)
            failures += isinstance(event, NodeFailed)
            if failures == len(victims):
                return

    await asyncio.wait_for(until_all_failed(), 10)
    await fast.aclose()
    # the slow subscriber reads only now: its buffer held one event, the rest were counted
    seen_slow = [await asyncio.wait_for(anext(slow), 5)]
    while not isinstance(seen_slow[-1], EventsLost):
        seen_slow.append(await asyncio.wait_for(anext(slow), 5))
    await slow.aclose()
    lost = seen_slow.pop()
    assert isinstance(lost, EventsLost) and lost.reason == "overflow"
    assert seen_slow == seen_fast[: len(seen_slow)] and len(seen_slow) == 1
    cursors = [e.cursor for e in seen_fast]  # type: ignore[attr-defined]
    assert lost.cursor in cursors  # the last event lost: events(since=...) could replay them
    assert lost.count == cursors.index(lost.cursor) + 1 - len(seen_slow)


async def test_primary_body_is_cancelled_on_the_minority_side(agent: Agent) -> None:
    topology = agent.topology
    me = topology.rank(agent.node)
    leaf = topology.leaf_of(me)
    minority = set(leaf.ranks)  # the observer's leaf group, cut off from the rest
    reached = asyncio.Event()

    async def body() -> None:
        async with agent.primary():
            reached.set()
            await asyncio.sleep(30)

    task = asyncio.ensure_future(body())
    await asyncio.wait_for(reached.wait(), 5)
    agent.host.partition(minority)
    with pytest.raises(QuorumLost, match="left the primary component"):
        await asyncio.wait_for(task, 10)
    assert not await agent.in_primary()
    with pytest.raises(NotPrimary):
        await agent.fencing_token()
    with pytest.raises(NotPrimary):
        async with agent.primary():
            pass
    agent.host.partition(None)
    assert await agent.wait_primary(timeout=15)


async def test_fencing_tokens_grow_across_re_elections(agent: Agent) -> None:
    topology = agent.topology
    me = topology.rank(agent.node)
    group = topology.leaf_of(me).name
    tokens = [await agent.fencing_token()]
    assert tokens[0].group == group
    events = agent.events(since=await agent.cursor())
    for _ in range(2):
        leader = topology.rank(tokens[-1].leader)
        if leader == me:
            agent.host.pause(me, 1.5)  # the observer leads: it stalls, the others elect
        else:
            agent.host.kill(leader)
        while True:
            event = await asyncio.wait_for(anext(events), 10)
            if (
                isinstance(event, LeaderChanged)
                and event.group == group
                and event.leader not in (None, tokens[-1].leader)
            ):
                break
        assert await agent.wait_primary(timeout=10)
        tokens.append(await agent.fencing_token())
        if leader != me:
            await agent.host.restart(leader)
    await events.aclose()
    assert len(tokens) >= 2
    terms = [t.term for t in tokens]
    assert terms == sorted(terms) and len(set(terms)) == len(terms), terms
    assert tokens[1].leader != tokens[0].leader


async def test_primary_changed_is_published_when_the_observer_stops(agent: Agent) -> None:
    events = agent.events(since=await agent.cursor())
    reading = asyncio.ensure_future(next_of(events, PrimaryChanged))
    agent.host.kill(agent.rank)
    changed = await reading
    assert isinstance(changed, PrimaryChanged) and changed.in_primary is False


async def test_drain_and_resume_reach_the_members_view(agent: Agent) -> None:
    target = [m for m in await agent.members() if not m.leads][-1]
    await agent.drain(target.name)

    async def mode() -> str:
        return next(m.mode for m in await agent.members() if m.name == target.name)

    async def until(expected: str) -> None:
        while await mode() != expected:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until("drained"), 5)
    await agent.maintenance([target.name], on=True)
    await asyncio.wait_for(until("maintenance"), 5)
    await agent.resume(target.name)
    await asyncio.wait_for(until("active"), 5)


async def test_bad_requests_raise_typed_errors(agent: Agent) -> None:
    with pytest.raises(UnknownNode, match="cn99"):
        await agent.drain("cn99")
    with pytest.raises(UnknownNode, match="not a nodeset"):
        await agent.drain("cn[3-")
    with pytest.raises(UnknownNode, match=r"range is reversed .*write cn\[1-3\]"):
        await agent.drain("cn[3-1]")
    elsewhere = next(
        g.name for g in agent.topology.leaves if agent.topology.rank(agent.node) not in g.ranks
    )
    with pytest.raises(RequestFailed, match="does not sit in group"):
        await agent.fencing_token(elsewhere)
    with pytest.raises(RequestFailed, match="not in the topology"):
        await agent.fencing_token("no-such-group")
