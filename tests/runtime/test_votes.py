"""Votes survive restarts; a node that lost its state directory does not vote twice in a term.

The host runs node 0 of a 3-node group; the test plays nodes 1 and 2 over real UDP with their own
codecs (same keyring), so it sees exactly which datagrams node 0 sends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from hierclust.core.messages import RequestVote, VoteResp
from hierclust.runtime.state import load_state
from tests.runtime.conftest import Cluster, FakePeer, one_node_of_three, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


class Peer(FakePeer):
    def votes(self, term: int) -> list[VoteResp]:
        return [d.msg for d in self.inbox if type(d.msg) is VoteResp and d.msg.term == term]


@pytest_asyncio.fixture
async def one_node(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Peer, Peer]]:
    async with one_node_of_three(tmp_path, Peer) as found:
        yield found


TERM = 5


async def past_boot_block(cluster: Cluster) -> None:
    """A (re)started node grants no vote for one election timeout (a core rule); wait it out."""
    driver = cluster.host.drivers[0]
    election_ns = cluster.topology.tuning.election_timeout_ms * 1_000_000
    until = driver.stats.started_ns + election_ns + 20_000_000
    await wait_for(lambda: time.monotonic_ns() > until, 3.0, "the end of the boot block")


async def test_a_restarted_node_keeps_its_vote(one_node: tuple[Cluster, Peer, Peer]) -> None:
    cluster, one, two = one_node
    group = cluster.topology.root.index
    await past_boot_block(cluster)
    await one.send(RequestVote(group, TERM, 1))
    await wait_for(lambda: one.votes(TERM), 3.0, "node 0's answer to node 1")
    assert one.votes(TERM)[0].granted
    persisted = load_state(cluster.ctx.state_path(0))
    assert persisted is not None and (group, TERM, 1) in persisted.votes
    inc_before = persisted.incarnation

    await cluster.host.restart(0)
    assert cluster.host.drivers[0].node is not None
    assert cluster.host.drivers[0].node.incarnation > inc_before
    await past_boot_block(cluster)
    await two.send(RequestVote(group, TERM, 2))
    await wait_for(lambda: two.votes(TERM), 3.0, "node 0's answer to node 2")
    assert not two.votes(TERM)[0].granted, "a second vote in the same term after a restart"


async def test_a_node_that_lost_its_state_does_not_vote_twice(
    one_node: tuple[Cluster, Peer, Peer],
) -> None:
    cluster, one, two = one_node
    group = cluster.topology.root.index
    await past_boot_block(cluster)
    await one.send(RequestVote(group, TERM, 1))
    await wait_for(lambda: one.votes(TERM), 3.0, "node 0's answer to node 1")
    assert one.votes(TERM)[0].granted
    inc_before = cluster.host.drivers[0].node.incarnation  # type: ignore[union-attr]

    await cluster.host.restart(0, wipe=True)
    driver = cluster.host.drivers[0]
    assert driver.amnesiac and driver.node is not None
    assert driver.node.incarnation > inc_before, "peers must not drop it as a stale incarnation"
    booted = driver.stats.started_ns
    # the rival candidate of the same term asks once the core's own boot block is over, while
    # node 0 cannot know it already voted: only the runtime's quarantine stands in the way
    await past_boot_block(cluster)
    assert time.monotonic_ns() < driver.muted_until_ns
    await two.send(RequestVote(group, TERM, 2))
    sent_before = len(one.inbox) + len(two.inbox)
    await wait_for(
        lambda: time.monotonic_ns() > driver.muted_until_ns, 5.0, "the end of the quarantine"
    )
    assert not [v for v in two.votes(TERM) if v.granted], "voted twice in one term"
    assert len(one.inbox) + len(two.inbox) == sent_before, "an amnesiac node stays mute"
    assert driver.muted_until_ns - booted >= cluster.ctx.quarantine_ns - 50_000_000
    # and it comes back afterwards: it talks to its group again
    await wait_for(lambda: len(one.inbox) + len(two.inbox) > sent_before, 3.0, "node 0 rejoining")


async def test_a_vote_that_cannot_be_persisted_is_never_sent(
    one_node: tuple[Cluster, Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, one, _ = one_node
    group = cluster.topology.root.index
    await past_boot_block(cluster)

    def disk_full(path: Path, state: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("hierclust.runtime.driver.save_state", disk_full)
    await one.send(RequestVote(group, TERM, 1))
    driver = cluster.host.drivers[0]
    await wait_for(lambda: driver.storage is not None, 3.0, "the storage fault")
    await asyncio.sleep(0.3)
    assert not [v for v in one.votes(TERM) if v.granted]
    # the node stays up (a storage fault, test_storage_faults.py), and says why
    assert driver.running and driver.stop_event is None
    assert driver.storage.errno == "ENOSPC" and driver.stats.promises_dropped == 1
    log = (cluster.state_dir / "events-test.jsonl").read_text().splitlines()
    events = [r["event"] for r in map(json.loads, log)]
    assert "StorageFault" in events and "Failed" not in events and "VoteGranted" not in events


async def test_a_slow_disk_delays_the_vote_not_the_event_loop(
    one_node: tuple[Cluster, Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """State files are written in the host's persist threads: the vote waits for its write,
    the event loop (every other node of the process) does not."""
    from hierclust.runtime import state

    cluster, one, _ = one_node
    group = cluster.topology.root.index
    await past_boot_block(cluster)
    landed: list[float] = []

    def slow_save(path: Path, st: object) -> None:
        time.sleep(0.4)
        state.save_state(path, st)  # type: ignore[arg-type]
        landed.append(time.monotonic())

    monkeypatch.setattr("hierclust.runtime.driver.save_state", slow_save)
    await one.send(RequestVote(group, TERM, 1))
    started = time.monotonic()
    worst = 0.0
    while not one.votes(TERM) and time.monotonic() - started < 3.0:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - before)
    got = time.monotonic()
    assert one.votes(TERM) and one.votes(TERM)[0].granted
    assert landed and landed[0] <= got, "the vote went out before its write was durable"
    assert got - started >= 0.35
    assert worst < 0.2, f"the event loop stalled {worst:.2f} s during the write"
    persisted = load_state(cluster.ctx.state_path(0))
    assert persisted is not None and (group, TERM, 1) in persisted.votes
