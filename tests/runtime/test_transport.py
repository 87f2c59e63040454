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
