"""A subscription's bounded buffer when its events go straight to a connection (a sink)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hierclust.runtime.service import LOST_RETRY_S, ApiService, Subscription
from tests.runtime.conftest import make_topology

pytestmark = pytest.mark.asyncio


class FakeSink:
    """A connection whose reader takes nothing until told to."""

    def __init__(self) -> None:
        self.closed = False
        self.unread: list[dict[str, Any]] = []
        self.read: list[dict[str, Any]] = []

    def backlog(self) -> int:
        return len(self.unread)

    def write(self, event: dict[str, Any]) -> None:
        self.unread.append(event)

    def take(self) -> None:
        self.read.extend(self.unread)
        self.unread.clear()


def event(seq: int) -> dict[str, Any]:
    return {"type": "QuorumChanged", "cursor": f"e:{seq}", "seq": seq}


async def test_a_full_sink_counts_the_lost_events_and_says_so_once_the_reader_catches_up() -> None:
    service = ApiService(make_topology(3, 3), {})
    sink = FakeSink()
    sub = Subscription(service, 0, 4, sink)
    for seq in range(1, 11):
        sub.push(event(seq))
    assert [e["seq"] for e in sink.unread] == [1, 2, 3, 4]  # the buffer, then nothing
    await asyncio.sleep(3 * LOST_RETRY_S)
    assert len(sink.unread) == 4  # the reader has not caught up: not told yet, nothing more
    sink.take()
    sub.push(event(11))  # still counted: the reader has not been told of the gap yet
    await asyncio.sleep(3 * LOST_RETRY_S)
    lost = sink.unread[-1]
    assert lost["type"] == "EventsLost" and lost["reason"] == "overflow"
    assert lost["count"] == 7 and lost["cursor"] == "e:11"
    sink.take()
    sub.push(event(12))  # after the notice the stream goes on
    assert sink.unread == [event(12)]
    sub.close()


async def test_an_in_process_subscriber_gets_the_notice_after_what_its_buffer_held() -> None:
    service = ApiService(make_topology(3, 3), {})
    sub = Subscription(service, 0, 2)
    for seq in range(1, 6):
        sub.push(event(seq))
    got = [await sub.get() for _ in range(3)]
    assert [g["seq"] for g in got[:2] if g] == [1, 2]
    assert got[2] is not None and got[2]["type"] == "EventsLost" and got[2]["count"] == 3
    sub.push(event(6))
    assert await sub.get() == event(6)
    sub.close()
    assert await sub.get() is None
