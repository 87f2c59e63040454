"""A node driver's receive path: datagrams that arrive before boot or during a pause are kept
and handled afterwards, in order; nothing one datagram does escapes into the event loop."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from hierclust.codec import Codec, Keyring, MessageRegistry, new_secret
from hierclust.core.messages import LeaderHint
from hierclust.runtime.context import HostContext
from hierclust.runtime.driver import NodeDriver
from hierclust.runtime.events import EventBus
from tests.runtime.conftest import init_states, make_topology, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]


def _context(tmp_path: Path) -> HostContext:
    topology = make_topology(3, 3)
    init_states(topology, tmp_path)
    bus = EventBus(tmp_path / "events-test.jsonl")
    return HostContext(topology, Keyring(1, {1: new_secret()}), tmp_path, bus)


def _sender(ctx: HostContext, rank: int) -> Codec:
    return Codec(
        cluster=ctx.topology.name,
        node=rank,
        incarnation=1,
        keyring=ctx.keyring,
        registry=MessageRegistry.from_module(),
    )


async def test_datagrams_before_boot_are_handled_after_start(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    driver = NodeDriver(ctx, 1)
    await driver.bind()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        address = ctx.addresses[1]
        assert address is not None
        codec = _sender(ctx, 0)
        for term in (1, 2):
            sock.sendto(codec.encode(LeaderHint(0, 0, term), 1), address)
        await wait_for(lambda: len(driver.early or ()) == 2, 5.0, "the early datagrams")
        assert driver.stats.received == 0
        driver.boot()
        assert driver.stats.received == 0  # Start first; the early datagrams on the next turn
        await wait_for(lambda: driver.stats.received == 2, 5.0, "the early datagrams handled")
        assert driver.early is None
        assert driver.codec is not None and driver.codec.counters.accepted == 2
    finally:
        sock.close()
        driver.crash("stopped")
        ctx.bus.close()
        await asyncio.sleep(0)


async def test_a_paused_driver_holds_datagrams_until_the_pause_ends(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    driver = NodeDriver(ctx, 1)
    await driver.bind()
    driver.boot()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        address = ctx.addresses[1]
        assert address is not None
        codec = _sender(ctx, 0)
        pause_end = time.monotonic_ns() + 200_000_000
        driver.paused_until_ns = pause_end
        for term in (1, 2, 3):
            sock.sendto(codec.encode(LeaderHint(0, 0, term), 1), address)
        await wait_for(lambda: len(driver.held or ()) == 3, 5.0, "the held datagrams")
        assert driver.stats.received == 0
        await wait_for(lambda: driver.stats.received == 3, 5.0, "the pause to end")
        assert time.monotonic_ns() >= pause_end
        assert driver.held is None and driver.paused_until_ns == 0
        # garbage is a counted drop, never an exception out of the receive path
        sock.sendto(b"\x68\x01garbage", address)
        assert driver.codec is not None
        await wait_for(lambda: driver.codec.counters.total_dropped == 1, 5.0, "the drop")  # type: ignore[union-attr]
    finally:
        sock.close()
        driver.crash("stopped")
        ctx.bus.close()
        await asyncio.sleep(0)
