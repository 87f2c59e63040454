"""A 9-node cluster (fan-out 3) over real UDP on 127.0.0.1, in one process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from hierclust.codec import Codec, DropReason, Keyring, MessageRegistry, new_secret
from hierclust.core.messages import Ping
from hierclust.core.types import Failure, NoticeLearned, ViewChanged
from tests.runtime.conftest import Cluster, init_states, make_topology, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


def learned_failure(cluster: Cluster, victim: int) -> set[int]:
    return {
        r.rank
        for r in cluster.records
        if type(r.event) is NoticeLearned
        and type(r.event.notice) is Failure
        and r.event.notice.node == victim
    }


async def test_every_group_gets_a_leader(cluster9: Cluster) -> None:
    await wait_for(cluster9.all_led, 5.0, "a leader in every group")
    leaders = cluster9.leaders()
    assert set(leaders) == {g.index for g in cluster9.topology.by_index}
    for group in cluster9.topology.leaves:
        assert leaders[group.index] in group.ranks


async def test_leaf_crash_is_learned_by_every_survivor(cluster9: Cluster) -> None:
    await wait_for(cluster9.settled, 6.0, "leaders and quiet views")
    leaders = set(cluster9.leaders().values())
    victim = max(r for r in range(9) if r not in leaders)
    leaf = cluster9.topology.leaf_of(victim).index
    kill_ns = cluster9.host.kill(victim)
    survivors = set(range(9)) - {victim}
    await wait_for(lambda: learned_failure(cluster9, victim) >= survivors, 5.0, "the notice")
    # transitions stay local: no view changed outside the victim's leaf group
    disturbed = {
        r.event.group
        for r in cluster9.records
        if type(r.event) is ViewChanged and r.t_ns >= kill_ns and r.event.group != leaf
    }
    assert disturbed == set()
    assert cluster9.all_led()


async def test_leader_crash_reelects_and_is_learned(cluster9: Cluster) -> None:
    await wait_for(cluster9.all_led, 5.0, "a leader in every group")
    leaders = cluster9.leaders()
    root = cluster9.topology.root.index
    victim = next(
        r for g, r in leaders.items() if g != root and r != leaders[root]
    )  # leads its leaf group and sits in the root group, does not lead it
    cluster9.host.kill(victim)
    survivors = set(range(9)) - {victim}
    await wait_for(lambda: learned_failure(cluster9, victim) >= survivors, 8.0, "the notice")
    await wait_for(cluster9.all_led, 8.0, "a new leader of the victim's group")
    assert victim not in cluster9.leaders().values()


async def test_garbage_forged_and_replayed_datagrams_are_dropped_and_counted(
    cluster9: Cluster,
) -> None:
    await wait_for(cluster9.all_led, 5.0, "a leader in every group")
    target = 4
    driver = cluster9.host.drivers[target]
    address = cluster9.ctx.addresses[target]
    assert address is not None and driver.codec is not None
    registry = MessageRegistry.from_module()
    # a stranger with another key, and a datagram properly signed by "node 5" that we replay
    forger = Codec(
        cluster="t", node=5, incarnation=1, keyring=Keyring(1, {1: new_secret()}), registry=registry
    )
    insider = Codec(
        cluster="t",
        node=5,
        incarnation=99,
        keyring=cluster9.keyring,
        registry=registry,
        first_seq=1,
    )
    other = Codec(
        cluster="other", node=5, incarnation=1, keyring=cluster9.keyring, registry=registry
    )
    ping = Ping(0, 0, 0, 1, 0, 0, 0)
    genuine = insider.encode(ping, target)
    datagrams = [
        b"",
        os.urandom(200),
        b"h\x01" + os.urandom(30),
        forger.encode(ping, target),
        other.encode(ping, target),
        genuine,
        genuine,
        genuine[:-3],
        b"h" * 3000,
    ]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for data in datagrams:
            sender.sendto(data, address)
        for _ in range(200):
            sender.sendto(b"\x00" + os.urandom(63), address)  # never the magic byte
    finally:
        sender.close()
    counters = driver.codec.counters
    await wait_for(lambda: counters.total_dropped >= 207, 3.0, "every bad datagram counted")
    dropped = counters.dropped
    assert dropped[DropReason.BAD_TAG] >= 1
    assert dropped[DropReason.WRONG_CLUSTER] == 1
    assert dropped[DropReason.REPLAYED] == 1
    assert dropped[DropReason.TRUNCATED] >= 2
    assert dropped[DropReason.GARBAGE] >= 200
    assert dropped[DropReason.OVERSIZED] == 1
    # nothing fell over: the node still runs and every group still has its leader
    assert driver.running
    await wait_for(cluster9.all_led, 2.0, "leaders still in place")


async def test_a_clean_stop_is_logged_as_stopped_and_a_kill_as_crashed(tmp_path: Path) -> None:
    topology = make_topology(3, 3)
    init_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path)
    await cluster.host.start()
    cluster.host.kill(2)
    await cluster.host.stop()
    cluster.bus.close()
    lines = (tmp_path / "events-test.jsonl").read_text().splitlines()
    ends = {
        (r["node"], r["event"], r["reason"])
        for r in map(json.loads, lines)
        if r["event"] in ("Crashed", "Stopped")
    }
    assert ends == {
        ("cn1", "Stopped", "stopped"),
        ("cn2", "Stopped", "stopped"),
        ("cn3", "Crashed", "killed"),
    }
