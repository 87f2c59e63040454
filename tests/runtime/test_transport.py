"""The UDP endpoint: ICMP port unreachable is attributed to the destination that bounced."""

from __future__ import annotations

import asyncio
import sys

import pytest

from hierclust.runtime.transport import UdpEndpoint
from tests.runtime.conftest import free_base_port

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux-only")
async def test_port_unreachable_names_the_destination() -> None:
    base = free_base_port(2)
    endpoint = await UdpEndpoint.open("127.0.0.1", base)
    try:
        closed = ("127.0.0.1", base + 1)  # nobody listens there
        assert endpoint.send(b"hello", closed) == []
        # the error is reported by the next recv() once the ICMP message is in
        refused = False
        for _ in range(40):
            try:
                await asyncio.wait_for(endpoint.recv(), 0.05)
            except ConnectionRefusedError:
                refused = True
                break
            except TimeoutError:
                continue
        assert refused
        assert endpoint.unreachable() == [closed]
        assert endpoint.unreachable() == []
    finally:
        endpoint.close()
        await asyncio.sleep(0)


async def test_two_endpoints_exchange_datagrams() -> None:
    base = free_base_port(2)
    a = await UdpEndpoint.open("127.0.0.1", base)
    b = await UdpEndpoint.open("127.0.0.1", base + 1)
    try:
        a.send(b"ping", ("127.0.0.1", base + 1))
        got = await asyncio.wait_for(b.recv(), 2.0)
        assert got == (b"ping", ("127.0.0.1", base))
    finally:
        a.close()
        b.close()
        await asyncio.sleep(0)
    assert await b.recv() is None


async def _callback_endpoint(
    port: int, *, fail_first: bool = False
) -> tuple[UdpEndpoint, list[tuple[bytes, tuple[str, int]]], asyncio.Event, asyncio.Event]:
    got: list[tuple[bytes, tuple[str, int]]] = []
    arrived = asyncio.Event()
    refused = asyncio.Event()

    def receiver(data: bytes, addr: tuple[str, int]) -> None:
        got.append((data, addr))
        arrived.set()
        if fail_first and len(got) == 1:
            raise RuntimeError("a receiver bug")

    endpoint = await UdpEndpoint.open("127.0.0.1", port, receiver=receiver, on_refused=refused.set)
    return endpoint, got, arrived, refused


async def test_a_receiver_gets_each_datagram_directly() -> None:
    base = free_base_port(2)
    a = await UdpEndpoint.open("127.0.0.1", base)
    b, got, arrived, _ = await _callback_endpoint(base + 1, fail_first=True)
    try:
        with pytest.raises(RuntimeError, match="receiver"):
            await b.recv()
        a.send(b"one", ("127.0.0.1", base + 1))
        await asyncio.wait_for(arrived.wait(), 2.0)
        arrived.clear()
        # the receiver raised on the first datagram: the endpoint still delivers the next one
        a.send(b"two", ("127.0.0.1", base + 1))
        await asyncio.wait_for(arrived.wait(), 2.0)
        assert got == [(b"one", ("127.0.0.1", base)), (b"two", ("127.0.0.1", base))]
    finally:
        a.close()
        b.close()
        await asyncio.sleep(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux-only")
async def test_a_receiver_endpoint_reports_port_unreachable() -> None:
    base = free_base_port(2)
    endpoint, _, _, refused = await _callback_endpoint(base)
    try:
        closed = ("127.0.0.1", base + 1)  # nobody listens there
        assert endpoint.send(b"hello", closed) == []
        await asyncio.wait_for(refused.wait(), 2.0)
        assert endpoint.unreachable() == [closed]
    finally:
        endpoint.close()
        await asyncio.sleep(0)
