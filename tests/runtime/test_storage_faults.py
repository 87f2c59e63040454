"""Storage faults: a node whose state file cannot be written (read-only or full state directory)
stays up, grants no vote and stands for no election, says why (log, event, status, metrics),
and votes and stands again once a write succeeds. ``save_state`` is replaced by one that raises
the ``OSError`` a broken disk gives (the core and the rest of the runtime are the real ones).

Over real UDP on 127.0.0.1: node 0 of a 3-node group, with the test playing nodes 1 and 2 (it sees
exactly which datagrams node 0 sends); and a 5-node group in one host, where the group elects
around the node that cannot persist and nobody declares it failed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tomli_w
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.core.messages import RequestVote, VoteResp
from hierclust.core.types import ElectionStarted, Failure, NoticeLearned, VoteGranted
from hierclust.runtime import state as state_module
from hierclust.runtime.control import ControlServer
from hierclust.runtime.metrics import HostMetrics
from hierclust.runtime.state import load_state
from hierclust.runtime.status import aggregate
from hierclust.runtime.storage import StorageFault, StorageRecovered
from hierclust.topology import generate_document, load
from tests.runtime.conftest import (
    FAST,
    Cluster,
    FakePeer,
    free_base_port,
    init_states,
    one_node_of_three,
    wait_for,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(40)]

TERM = 5
REAL_SAVE = state_module.save_state


class Peer(FakePeer):
    def answers(self) -> list[VoteResp]:
        return [d.msg for d in self.inbox if type(d.msg) is VoteResp]

    def requests(self) -> list[RequestVote]:
        return [d.msg for d in self.inbox if type(d.msg) is RequestVote]


def broken_disk(monkeypatch: pytest.MonkeyPatch, code: int, only: Path | None = None) -> None:
    """``save_state`` raises ``OSError(code)`` (for ``only``'s path, or every path)."""

    def save(path: Path, st: Any) -> None:
        if only is None or path == only:
            raise OSError(code, os.strerror(code), str(path))
        REAL_SAVE(path, st)

    monkeypatch.setattr("hierclust.runtime.driver.save_state", save)


async def past_boot_block(cluster: Cluster, rank: int = 0) -> None:
    """A (re)started node grants no vote for one election timeout (a core rule); wait it out."""
    driver = cluster.host.drivers[rank]
    election_ns = cluster.topology.tuning.election_timeout_ms * 1_000_000
    until = driver.stats.started_ns + election_ns + 20_000_000
    await wait_for(lambda: time.monotonic_ns() > until, 3.0, "the end of the boot block")


@pytest_asyncio.fixture(params=["pool", "inline"])
async def one_node(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Cluster, Peer, Peer]]:
    """Node 0 of a 3-node group, writing in the persist pool or inline; the test is 1 and 2."""
    async with one_node_of_three(tmp_path, Peer, request.param == "inline") as found:
        yield found


def log_lines(cluster: Cluster) -> list[dict[str, Any]]:
    path = cluster.state_dir / "events-test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["full", "read-only"])
async def test_a_node_that_cannot_write_its_vote_never_grants_it_and_says_why(
    one_node: tuple[Cluster, Peer, Peer], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    cluster, one, two = one_node
    group = cluster.topology.root.index
    driver = cluster.host.drivers[0]
    path = cluster.ctx.state_path(0)
    await past_boot_block(cluster)
    before = load_state(path)
    assert before is not None

    # the disk breaks; the next vote request finds out: the core grants it in memory, the write
    # fails, the grant is dropped
    broken_disk(monkeypatch, code)
    await one.send(RequestVote(group, TERM, 1))
    await wait_for(lambda: driver.storage is not None, 3.0, "the storage fault")
    assert driver.stats.promises_dropped == 1, "the grant was decided and dropped"
    await wait_for(lambda: not driver.node.can_persist(), 1.0, "the core told")  # type: ignore[union-attr]
    # a second candidate is refused openly (an answer, not granted)
    await two.send(RequestVote(group, TERM + 1, 2))
    await wait_for(lambda: two.answers(), 3.0, "node 0's refusal")
    assert not two.answers()[0].granted
    await asyncio.sleep(0.3)
    assert not [v for v in one.answers() + two.answers() if v.granted], "a vote left the node"
    assert driver.running and driver.stop_event is None
    assert load_state(path) == before, "the disk changed (the write was to fail)"
    # it stands for no election meanwhile (nobody leads its group: it would, as the lowest rank)
    asked = len(one.requests()) + len(two.requests())

    # ... and says why: status snapshot, status summary, the event on the bus and in the log
    name = cluster.topology.node_name(0)
    snap = cluster.host.snapshot()
    storage = snap["nodes"][0]["storage"]
    assert storage["errno"] == errno.errorcode[code] and storage["path"] == str(path)
    assert storage["error"] == os.strerror(code) and storage["promises_dropped"] >= 1
    summary = aggregate(cluster.topology, [snap])
    assert list(summary["storage_faults"]) == [name]
    assert os.strerror(code) in summary["storage_faults"][name]
    assert "votes for no one" in summary["storage_faults"][name]
    assert summary["failed"] == 0 and summary["alive"] == 1, "it counts as alive"
    faults = [r.event for r in cluster.records if type(r.event) is StorageFault]
    assert faults == [StorageFault(str(path), os.strerror(code), errno.errorcode[code])]
    logged = [r for r in log_lines(cluster) if r["event"] == "StorageFault"]
    assert [(r["node"], r["errno"]) for r in logged] == [(name, errno.errorcode[code])]
    assert not [r for r in cluster.records if type(r.event) is VoteGranted]
    metrics = HostMetrics(cluster.host)
    metrics.refresh()
    assert metrics.sample["nodes_cannot_persist"] == 1 and metrics.sample["promises_dropped"] >= 1

    # the disk works again: the next probe writes the newest state and the fault clears
    monkeypatch.undo()
    await wait_for(lambda: driver.storage is None, 3.0, "the fault to clear")
    assert [type(r.event) for r in cluster.records if type(r.event) is StorageRecovered]
    await wait_for(lambda: driver.node.can_persist(), 1.0, "the core told")  # type: ignore[union-attr]
    assert aggregate(cluster.topology, [cluster.host.snapshot()])["storage_faults"] == {}
    after = load_state(path)
    assert after is not None and after.incarnation >= before.incarnation
    assert len(one.requests()) + len(two.requests()) == asked, "it stood while it could not persist"
    # it votes again, durably
    await two.send(RequestVote(group, TERM + 2, 2))
    await wait_for(lambda: [v for v in two.answers() if v.granted], 3.0, "a granted vote")
    persisted = load_state(path)
    assert persisted is not None and (group, TERM + 2, 2) in persisted.votes


async def cli(*args: str) -> Any:
    """``hierclust ARGS`` in a thread (its control requests are answered by this loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_the_group_elects_around_a_node_that_cannot_persist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = generate_document(5, 5, base_port=free_base_port(5), name="t")
    document["defaults"] = dict(FAST)
    (tmp_path / "t.toml").write_text(tomli_w.dumps(document))
    topology = load(tmp_path / "t.toml")  # (status reads it from the socket's answer)
    init_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path)
    control = ControlServer(cluster.host, tmp_path / "w0.sock")
    s = ("--state-dir", str(tmp_path))
    group = topology.root.index
    try:
        await cluster.host.start()
        await control.start()
        await wait_for(cluster.settled, 15.0, "the group led")
        leader = cluster.leaders()[group]
        victim = min(r for r in range(5) if r != leader)  # stands first once the leader is gone
        driver = cluster.host.drivers[victim]
        name = topology.node_name(victim)
        # its disk goes read-only; nothing writes until the next election finds out
        broken_disk(monkeypatch, errno.EROFS, only=cluster.ctx.state_path(victim))
        t_break = time.monotonic_ns()
        cluster.host.kill(leader)

        def led_by_other() -> bool:
            now = cluster.leaders().get(group)
            return now is not None and now not in (leader, victim)

        await wait_for(led_by_other, 10.0, "a leader other than the victim")
        assert driver.storage is not None and driver.running
        new_leader = cluster.leaders()[group]

        # three election timeouts later: it is a member all along, nobody declared it
        await asyncio.sleep(3 * topology.tuning.election_timeout_ms / 1000)
        accused = {
            r.event.notice.node
            for r in cluster.records
            if type(r.event) is NoticeLearned and type(r.event.notice) is Failure
        }
        assert accused == {leader}, f"declared failed: {accused}"
        assert cluster.leaders()[group] == new_leader
        assert not [
            r
            for r in cluster.records
            if r.rank == victim and r.t_ns > t_break and type(r.event) is VoteGranted
        ]
        assert not [
            r
            for r in cluster.records
            if r.rank == victim and r.t_ns > t_break and type(r.event) is ElectionStarted
        ]

        # what an operator sees
        result = await cli("status", *s, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert list(summary["storage_faults"]) == [name]
        assert "Read-only file system" in summary["storage_faults"][name]
        assert name not in summary["failed_nodes"] and summary["groups_led"] == summary["groups"]
        text = " ".join((await cli("status", *s)).stdout.split())
        assert f"{name} cannot write" in text and "Read-only file system" in text

        # the disk is writable again: the fault clears, and the victim can lead again
        monkeypatch.undo()
        await wait_for(lambda: driver.storage is None, 3.0, "the fault to clear")
        cluster.host.kill(new_leader)
        led_by: Callable[[], bool] = lambda: cluster.leaders().get(group) == victim  # noqa: E731
        await wait_for(led_by, 10.0, "the victim to lead (the lowest rank left)")
        summary = json.loads((await cli("status", *s, "--json")).stdout)
        assert summary["storage_faults"] == {}
    finally:
        await control.close()
        await cluster.host.stop()
        cluster.bus.close()
