"""Key rotation in a running cluster split over two hosts (two contexts, as two processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from hierclust.codec import DropReason, Keyring, new_secret
from hierclust.runtime.host import NodeHost
from tests.runtime.conftest import Cluster, init_states, make_topology, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


class Split:
    def __init__(self, a: Cluster, b: Cluster) -> None:
        self.a, self.b = a, b

    def all_led(self) -> bool:
        leaders = {**self.a.leaders(), **self.b.leaders()}
        return len(leaders) == len(self.a.topology.by_index)

    def dropped(self, reason: DropReason) -> int:
        return sum(
            d.codec.counters.dropped[reason]
            for c in (self.a, self.b)
            for d in c.host.drivers.values()
            if d.codec is not None
        )


@pytest_asyncio.fixture
async def split(tmp_path: Path) -> AsyncIterator[Split]:
    topology = make_topology(9, 3)
    init_states(topology, tmp_path)
    old = Keyring(1, {1: new_secret()})
    a = Cluster(topology, tmp_path, ranks=list(range(5)), keyring=old, events="a")
    b = Cluster(topology, tmp_path, ranks=list(range(5, 9)), keyring=old, events="b")
    await a.host.start()
    await b.host.start()
    try:
        yield Split(a, b)
    finally:
        for c in (a, b):
            await c.host.stop()
            c.bus.close()


async def test_rotation_step_by_step_drops_nothing(split: Split) -> None:
    await wait_for(split.all_led, 5.0, "leaders across both hosts")
    hosts: list[NodeHost] = [split.a.host, split.b.host]
    old = split.a.keyring
    new_secret_bytes = new_secret()
    steps = [
        old.with_key(2, new_secret_bytes),  # 1. everyone accepts key 2
        old.with_key(2, new_secret_bytes).with_primary(2),  # 2. everyone signs with key 2
        old.with_key(2, new_secret_bytes).with_primary(2).without_key(1),  # 3. key 1 retired
    ]
    for keyring in steps:
        for host in hosts:  # one host after the other, as an operator's rollout would
            host.set_keyring(keyring)
            await wait_for(split.all_led, 3.0, "leaders during the rollout")
    assert split.dropped(DropReason.BAD_TAG) == 0
    assert split.dropped(DropReason.UNKNOWN_KEY) == 0
    sent = sum(d.stats.sent for d in split.a.host.drivers.values())
    await wait_for(
        lambda: sum(d.stats.sent for d in split.a.host.drivers.values()) > sent + 20, 3.0, "traffic"
    )
    assert split.all_led()


async def test_a_host_with_an_unknown_key_is_shut_out(split: Split) -> None:
    await wait_for(split.all_led, 5.0, "leaders across both hosts")
    split.b.host.set_keyring(Keyring(7, {7: new_secret()}))
    await wait_for(lambda: split.dropped(DropReason.UNKNOWN_KEY) > 10, 3.0, "unknown_key drops")
