"""Helpers for real-UDP runtime tests: free ports on 127.0.0.1, topologies, in-process hosts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncio_dgram
import pytest_asyncio

from hierclust.codec import Codec, Decoded, Keyring, MessageRegistry, new_secret
from hierclust.core.state import PersistentState
from hierclust.runtime.context import HostContext
from hierclust.runtime.events import EventBus, EventRecord
from hierclust.runtime.host import NodeHost
from hierclust.runtime.state import save_state
from hierclust.runtime.transport import free_udp_base
from hierclust.topology import Topology, from_dict, generate_document

FAST = {"heartbeat_ms": 100, "suspect_after_ms": 400, "election_timeout_ms": 400, "lease_ms": 250}
"""Shorter timings than the defaults so tests finish quickly (still consistent)."""


def free_base_port(count: int) -> int:
    """A base port with ``count`` consecutive free UDP ports on 127.0.0.1 (checked by binding)."""
    return free_udp_base(count)


def make_topology(nodes: int, fanout: int, **tuning: int) -> Topology:
    document = generate_document(nodes, fanout, base_port=free_base_port(nodes), name="t")
    document["defaults"] = {**FAST, **tuning}
    return from_dict(document, source=f"test-{nodes}x{fanout}")


def init_states(topology: Topology, state_dir: Path) -> None:
    (state_dir / "nodes").mkdir(parents=True, exist_ok=True)
    for rank in range(topology.num_nodes):
        save_state(state_dir / "nodes" / f"{topology.node_name(rank)}.json", PersistentState(0))


class Cluster:
    """An in-process host running some ranks of a topology, with every event recorded."""

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        ranks: list[int] | None = None,
        keyring: Keyring | None = None,
        events: str = "test",
    ):
        self.topology = topology
        self.state_dir = state_dir
        self.keyring = keyring or Keyring(1, {1: new_secret()})
        self.bus = EventBus(state_dir / f"events-{events}.jsonl", topology)
        self.records: list[EventRecord] = []
        self.bus.subscribe(self.records.append)
        self.ctx = HostContext(topology, self.keyring, state_dir, self.bus)
        self.host = NodeHost(self.ctx, list(range(topology.num_nodes)) if ranks is None else ranks)

    def leaders(self) -> dict[int, int]:
        """Group -> the one running node leading it with a valid lease (groups with one only)."""
        now = time.monotonic_ns()
        found: dict[int, list[int]] = {}
        for rank, driver in self.host.drivers.items():
            node = driver.node
            if node is None:
                continue
            for g in node.groups():
                if node.is_leader(g) and node.lease_valid(g, now):
                    found.setdefault(g, []).append(rank)
        return {g: rs[0] for g, rs in found.items() if len(rs) == 1}

    def all_led(self) -> bool:
        return len(self.leaders()) == len(self.topology.by_index)

    def settled(self, quiet_ms: int = 800) -> bool:
        """Every group led and no view changed for ``quiet_ms`` (boot is over)."""
        views = [r.t_ns for r in self.records if type(r.event).__name__ == "ViewChanged"]
        last = max(views, default=0)
        return self.all_led() and time.monotonic_ns() - last > quiet_ms * 1_000_000

    def running(self) -> list[int]:
        return [r for r, d in self.host.drivers.items() if d.running]


class FakePeer:
    """A fake node: a socket on its topology address and its codec; what it receives, decoded,
    lands in ``inbox``."""

    def __init__(self, cluster: Cluster, rank: int) -> None:
        self.cluster = cluster
        self.rank = rank
        self.codec = Codec(
            cluster=cluster.topology.name,
            node=rank,
            incarnation=1,
            keyring=cluster.keyring,
            registry=MessageRegistry.from_module(),
        )
        self.stream: Any = None
        self.inbox: list[Decoded] = []
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        address = self.cluster.ctx.addresses[self.rank]
        assert address is not None
        self.stream = await asyncio_dgram.bind(address)
        self.task = asyncio.get_running_loop().create_task(self._recv())

    async def _recv(self) -> None:
        while True:
            try:
                data, _ = await self.stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError:
                continue
            result = self.codec.decode(data)
            if isinstance(result, Decoded):
                self.inbox.append(result)

    async def send(self, msg: object, dst: int = 0) -> None:
        """Send ``msg`` to node ``dst`` (rank 0 unless said), or to a witness (``dst`` < 0)."""
        address = self.cluster.ctx.address_of(dst)
        await self.stream.send(self.codec.encode(msg, dst), address)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.stream.close()
        await asyncio.sleep(0)


async def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until true (bounded wait for real-network conditions)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def cluster9(tmp_path: Path) -> AsyncIterator[Cluster]:
    topology = make_topology(9, 3)
    init_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path)
    await cluster.host.start()
    try:
        yield cluster
    finally:
        await cluster.host.stop()
        cluster.bus.close()


P = TypeVar("P", bound=FakePeer)


@contextlib.asynccontextmanager
async def one_node_of_three(
    state_dir: Path, peer: type[P], inline_writes: bool = False
) -> AsyncIterator[tuple[Cluster, P, P]]:
    """Node 0 of a 3-node group running in this process, nodes 1 and 2 played by the test
    (``peer``); with ``inline_writes`` the node writes its state on the loop, not in the pool."""
    topology = make_topology(3, 3)
    init_states(topology, state_dir)
    cluster = Cluster(topology, state_dir, ranks=[0])
    if inline_writes:
        pool = cluster.ctx.persist_pool
        assert pool is not None
        pool.shutdown()
        cluster.ctx.persist_pool = None
    peers = peer(cluster, 1), peer(cluster, 2)
    for p in peers:
        await p.open()
    await cluster.host.start()
    try:
        yield cluster, peers[0], peers[1]
    finally:
        await cluster.host.stop()
        for p in peers:
            await p.close()
        cluster.bus.close()
