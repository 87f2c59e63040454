"""The library API against a real deployment (``Client``): worker processes started by
``hierclust deploy``, faults through the CLI, the client over the workers' control sockets."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hierclust.api import (
    Client,
    ConnectionLost,
    LeaderChanged,
    NodeFailed,
    NoDeployment,
    NotPrimary,
    QuorumLost,
    UnknownNode,
)
from tests.runtime.test_cli_runtime import write_topology

pytestmark = [pytest.mark.timeout(90)]


def hierclust(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hierclust", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("api")
    topology = write_topology(base / "t.toml", 12, 4)
    state = base / "state"
    done = hierclust(
        "deploy", str(topology), "--processes", "2", "--state-dir", str(state), "--json"
    )
    assert done.returncode == 0, done.stderr
    pids = [w["pid"] for w in json.loads(done.stdout)["workers"]]
    try:
        yield state
    finally:
        stopped = hierclust("stop", "--state-dir", str(state), "--json")
        if stopped.returncode != 0:
            for pid in pids:
                subprocess.run(["kill", "-9", str(pid)], check=False)


def test_a_client_sees_a_crash_and_resumes_after_a_reconnect(deployment: Path) -> None:
    async def scenario() -> None:
        async with Client(deployment, node="cn01") as client:
            assert client.node == "cn01"
            assert await client.wait_primary(timeout=15)
            members = {m.name: m for m in await client.members()}
            mine = members["cn01"].group
            victims = []
            for m in members.values():
                if not m.leads and m.group != mine and m.group not in {v.group for v in victims}:
                    victims.append(m)
            first, second = victims[:2]
            mark = await client.cursor()
            assert hierclust("kill", first.name, "--state-dir", str(deployment)).returncode == 0
            seen = None
            async for event in client.events(since=mark):
                if isinstance(event, NodeFailed):
                    seen = event
                    break
            assert seen is not None and seen.node == first.name and seen.observer == "cn01"
        # a new client, later: resumes right after the last event handled
        assert hierclust("kill", second.name, "--state-dir", str(deployment)).returncode == 0
        async with Client(deployment, node="cn01") as again:
            resumed = []
            async for event in again.events(since=seen.cursor):
                resumed.append(event)
                if isinstance(event, NodeFailed):
                    break
            assert resumed[-1].node == second.name  # type: ignore[union-attr]
            assert all(e.cursor != seen.cursor for e in resumed)
            cursors = [int(e.cursor.split(":")[1]) for e in resumed]
            assert cursors == sorted(cursors) and cursors[0] > int(seen.cursor.split(":")[1])
            states = {m.name: m.state for m in await again.members()}
            assert states[first.name] == states[second.name] == "failed"
        for name in (first.name, second.name):
            hierclust("restart", name, "--state-dir", str(deployment))

    asyncio.run(scenario())


def test_primary_is_cancelled_on_the_cut_off_side_and_tokens_grow(deployment: Path) -> None:
    async def scenario() -> None:
        async with Client(deployment) as anyone:
            assert await anyone.wait_primary(timeout=15)
            follower = next(m.name for m in await anyone.members() if not m.leads)
        async with Client(deployment, node=follower) as client:
            assert await client.wait_primary(timeout=15)
            before = await client.fencing_token()
            group = before.group
            members = await client.members()
            leaf = [m.name for m in members if m.group == group]
            entered = asyncio.Event()

            async def body() -> None:
                async with client.primary():
                    entered.set()
                    await asyncio.sleep(60)

            task = asyncio.ensure_future(body())
            await asyncio.wait_for(entered.wait(), 5)
            cut = hierclust("partition", ",".join(leaf), "--state-dir", str(deployment))
            assert cut.returncode == 0, cut.stderr
            try:
                with pytest.raises(QuorumLost):
                    await asyncio.wait_for(task, 15)
                with pytest.raises(NotPrimary):
                    await client.fencing_token()
            finally:
                assert hierclust("heal", "--state-dir", str(deployment)).returncode == 0
            assert await client.wait_primary(timeout=20)
            # a leadership change of the group: the token is larger afterwards
            mark = await client.cursor()
            assert before.leader != follower
            killed = hierclust("kill", before.leader, "--state-dir", str(deployment))
            assert killed.returncode == 0, killed.stderr
            async for event in client.events(since=mark):
                if isinstance(event, LeaderChanged) and event.group == group and event.leader:
                    break
            assert await client.wait_primary(timeout=20)
            after = await client.fencing_token()
            assert after.term > before.term and after.leader != before.leader
            hierclust("restart", before.leader, "--state-dir", str(deployment))

    asyncio.run(scenario())


def test_the_stream_ends_with_connection_lost_when_the_worker_goes(tmp_path: Path) -> None:
    topology = write_topology(tmp_path / "t.toml", 3, 3)
    state = tmp_path / "s"
    done = hierclust("deploy", str(topology), "--state-dir", str(state), "--json")
    assert done.returncode == 0, done.stderr

    async def scenario() -> None:
        async with Client(state) as client, client.subscribe() as events:
            assert await client.wait_primary(timeout=15)
            assert hierclust("stop", "--state-dir", str(state)).returncode == 0
            with pytest.raises(ConnectionLost, match="since="):
                async for _ in events:
                    pass

    try:
        asyncio.run(scenario())
    finally:  # a failure above must not leave the workers running
        hierclust("stop", "--state-dir", str(state))


def test_clear_errors_without_a_deployment_or_with_an_unknown_node(
    deployment: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with pytest.raises(NoDeployment, match="no such state directory"):
            await Client(tmp_path / "none").connect()
        (tmp_path / "empty").mkdir()
        with pytest.raises(NoDeployment, match="no worker answers here"):
            await Client(tmp_path / "empty").connect()
        with pytest.raises(UnknownNode, match="cn99: not in the topology"):
            await Client(deployment, node="cn99").connect()

    asyncio.run(scenario())
