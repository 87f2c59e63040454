"""``hierclust bench api``: how long after a node learns of a failure its API subscriber has it.

A deployment of ``nodes`` on 127.0.0.1 (background workers, as ``hierclust deploy``), and in this
process one :class:`~hierclust.api.Client` subscriber per observed node (``subscribers`` of them,
spread over the ranks). Each of ``kills`` rounds kills one node (a leaf member, in a different
group each time) and waits until every subscriber holds its ``NodeFailed``. The *latency* of one
delivery is the subscriber's receive time minus the event's ``t_ns`` (when the observing node's
worker published it): both read the monotonic clock of this one host, so the difference is a
duration. ``notified_ms`` (kill to the node learning) is given for scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.api import Client, NodeFailed
from hierclust.bench.udp import check_local, write_generated
from hierclust.runtime.control import request
from hierclust.runtime.deploy import Deployment, deploy, groups_led, stop, wait_ready
from hierclust.runtime.errors import DeployError
from hierclust.stats import percentile
from hierclust.topology import Topology

Progress = Callable[[str, float, float], None]


def observers(num_nodes: int, count: int) -> list[int]:
    """``count`` ranks spread evenly over ``0 .. num_nodes - 1``."""
    count = max(1, min(count, num_nodes - 1))
    return sorted({(i * num_nodes) // count for i in range(count)})


async def _rounds(
    state_dir: Path,
    topology: Topology,
    ranks: list[int],
    victims: list[int],
    progress: Progress | None,
) -> list[dict[str, Any]]:
    sessions = []
    for rank in ranks:
        session = Client(state_dir, node=topology.node_name(rank))
        await session.connect()
        sessions.append(session)
    rounds: list[dict[str, Any]] = []
    for i, victim in enumerate(victims):
        if progress is not None:
            progress(f"kill {i + 1}/{len(victims)}", i, len(victims))
        worker = _worker_of(state_dir, victim)
        async with contextlib.AsyncExitStack() as stack:
            streams = [await stack.enter_async_context(s.subscribe()) for s in sessions]
            killed_ns = int(request(worker, {"op": "kill", "rank": victim})["t_ns"])
            waits = (
                _delivery(s, events, topology.node_name(victim), killed_ns)
                for s, events in zip(sessions, streams, strict=True)
                if s.rank != victim
            )
            got = await asyncio.wait_for(asyncio.gather(*waits), 30)
        rounds.append({"victim": topology.node_name(victim), "deliveries": got})
        request(worker, {"op": "restart", "rank": victim})
        await asyncio.sleep(1.0)  # the restarted node rejoins before the next round
    return rounds


async def _delivery(
    session: Client, events: AsyncIterator[Any], victim: str, killed_ns: int
) -> dict[str, Any]:
    async for event in events:
        if isinstance(event, NodeFailed) and event.node == victim:
            received = time.monotonic_ns()
            return {
                "observer": session.node,
                "latency_ms": (received - event.t_ns) / 1e6,
                "notified_ms": (event.t_ns - killed_ns) / 1e6,
            }
    raise DeployError(f"{session.node}: the event stream ended before {victim} was declared")


def _worker_of(state_dir: Path, rank: int) -> Path:
    deployment = Deployment.load(state_dir)
    for record in deployment.workers:
        if rank in record.ranks:
            return record.socket_path(state_dir)
    raise DeployError(f"rank {rank}: no worker runs it")


def run(
    nodes: int = 64,
    fanout: int = 8,
    *,
    subscribers: int = 16,
    kills: int = 5,
    base_port: int = 21000,
    processes: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure; the report is ``{"config", "summary", "rounds"}``."""
    directory = Path(tempfile.mkdtemp(prefix="hcapi-", dir="/tmp"))
    topology = write_generated(nodes, fanout, base_port, directory / "topology.toml")
    check_local(topology)
    state_dir = directory / "state"
    deployment, children = deploy(topology, directory / "topology.toml", state_dir, processes)
    try:
        groups = len(topology.by_index)
        if not wait_ready(deployment, children, 60, None, lambda a: (groups_led(a), groups)):
            raise DeployError(f"not every group of {nodes} nodes had a leader after 60 s")
        ranks = observers(nodes, subscribers)
        leaves = [g for g in topology.leaves if not set(g.ranks) & set(ranks)] or list(
            topology.leaves
        )
        victims = [
            next(r for r in reversed(g.ranks) if r not in ranks) for g in leaves[: max(1, kills)]
        ]
        rounds = asyncio.run(_rounds(state_dir, topology, ranks, victims, progress))
    finally:
        stop(state_dir)
    latencies = [d["latency_ms"] for r in rounds for d in r["deliveries"]]
    notified = [d["notified_ms"] for r in rounds for d in r["deliveries"]]
    return {
        "benchmark": "api-latency",
        "version": __version__,
        "config": {
            "nodes": nodes,
            "fanout": fanout,
            "subscribers": len(ranks),
            "kills": len(victims),
            "processes": processes,
        },
        "summary": {
            "deliveries": len(latencies),
            "latency_ms_p50": percentile(latencies, 0.5) if latencies else None,
            "latency_ms_p99": percentile(latencies, 0.99) if latencies else None,
            "latency_ms_max": max(latencies, default=None),
            "notified_ms_max": max(notified, default=None),
        },
        "rounds": rounds,
    }


if __name__ == "__main__":  # pragma: no cover - a measuring aid
    print(json.dumps(run(), indent=2))
