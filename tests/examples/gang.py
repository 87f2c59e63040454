"""Helpers for the gang scheduler's tests: the example loaded as a module, a deployment run by
one in-process ``Agent`` (every node, so ``agent.host.partition`` cuts any set of nodes), a client
per node, and waits on the schedulers' own notifications instead of sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import tomli_w

from hierclust.api import Agent, Client
from hierclust.topology import Topology, generate_document, load
from tests.runtime.conftest import FAST, free_base_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gang_scheduler.py"


def example() -> ModuleType:
    """``examples/gang_scheduler.py`` as a module (loaded once)."""
    module = sys.modules.get("gang_scheduler")
    if module is None:
        spec = importlib.util.spec_from_file_location("gang_scheduler", EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["gang_scheduler"] = module
        spec.loader.exec_module(module)
    return module


def write_topology(directory: Path, nodes: int = 12, fanout: int = 4) -> Path:
    """A topology file on free ports of 127.0.0.1 with the runtime tests' short timings."""
    document = generate_document(nodes, fanout, base_port=free_base_port(nodes), name="t")
    document["defaults"] = dict(FAST)
    path = directory / "topology.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def deployment(directory: Path) -> AsyncIterator[tuple[Agent, Topology, list[Client]]]:
    """Every node of a 12-node topology (four leaf groups of three) in one agent, and a client
    attached to each node over the agent's control socket, as the example's CLI attaches."""
    path = write_topology(directory)
    topology = load(path)
    state = directory / "state"
    every = f"cn[01-{topology.num_nodes:02d}]"
    async with Agent(path, every, state) as agent:
        clients = [Client(state, topology.node_name(r)) for r in range(topology.num_nodes)]
        for client in clients:
            await client.connect()
        assert await agent.wait_primary(timeout=15), "the cluster never formed"
        try:
            yield agent, topology, clients
        finally:
            agent.host.partition(None)


async def root_leader(clients: list[Client], timeout: float = 10.0) -> str:
    """The node that leads the root group now (a bounded poll, as ``wait_for`` in the runtime
    tests: the cluster, not a sleep, decides when it holds)."""
    root = clients[0].topology.root.name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for client in clients:
            if root in await client.leads():
                return client.node
        await asyncio.sleep(0.02)
    raise AssertionError(f"no node led {root} within {timeout} s")


def write_jobs(path: Path, jobs: list[dict[str, Any]]) -> None:
    """Replace the jobs file (atomically: a scheduler may be reading it)."""
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(jobs), encoding="utf-8")
    temp.replace(path)


class Watch:
    """Woken by every scheduler note; :meth:`until` waits for a condition with a timeout."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def poke(self) -> None:
        self.event.set()

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), left)


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def check_invariants(table: dict[str, Any], submitted: set[str]) -> None:
    """Nothing lost, nothing run twice at once, no group given to two jobs at once, and the
    table's token never went down."""
    jobs = table["jobs"]
    assert set(jobs) == submitted, f"lost or unexpected jobs: {set(jobs) ^ submitted}"
    for name, job in jobs.items():
        runs = job["runs"]
        assert job["state"] == "done", f"{name} is {job['state']}"
        assert [r["outcome"] for r in runs] == ["requeued"] * job["requeued"] + ["done"], name
        for a, b in zip(runs, runs[1:], strict=False):
            assert a["end"] <= b["start"], f"{name} ran twice at once: {a} and {b}"
    spans = [
        (g, r["start"], r["end"], name)
        for name, job in jobs.items()
        for r in job["runs"]
        for g in r["groups"]
    ]
    for g, start, end, name in spans:
        for g2, start2, end2, name2 in spans:
            if g == g2 and name != name2:
                assert end <= start2 or end2 <= start, f"{g} given to {name} and {name2} at once"
    terms = [t["term"] for t in table["tokens"]]
    assert terms == sorted(set(terms)), f"the table's token went down: {terms}"
    assert table["token"]["term"] == terms[-1]
