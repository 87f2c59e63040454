"""Delay between lab hosts: every frame across the bridge held, then let go (no ``netem`` here).

Root only (skipped with the reason otherwise). Two lab hosts; a UDP echo server on one, a client
on the other timing 20 round trips: unheld, with 40 ms each way (plus up to 10 ms of jitter),
and unheld again once the delay is off. The round trips are bounded by the datagrams' own
timeout; the holder's account of what it held must match what crossed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from hierclust.runtime.netns import NetnsLab, delay_unavailable, unavailable
from tests.runtime.netns_lab import netns_lab, stop_processes

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(unavailable() is not None, reason=str(unavailable())),
    pytest.mark.skipif(delay_unavailable() is not None, reason=str(delay_unavailable())),
]

TAG = "hcd"
SUBNET = "10.236.0"
PORT = 7999
ROUNDS = 20

SERVER = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{SUBNET}.2", {PORT}))
s.settimeout(60)
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(64)
    s.sendto(data, peer)
"""

CLIENT = f"""
import json, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
took = []
for i in range({ROUNDS}):
    t = time.monotonic()
    s.sendto(str(i).encode(), ("{SUBNET}.2", {PORT}))
    while s.recvfrom(64)[0] != str(i).encode():
        pass
    took.append((time.monotonic() - t) * 1000)
print(json.dumps(took))
"""


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab(TAG, 2, SUBNET) as lab:
        yield lab


def round_trips_ms(lab: NetnsLab) -> list[float]:
    done = lab.run_on(0, ["python3", "-c", CLIENT], timeout_s=60)
    assert done.returncode == 0, done.stderr
    took: list[float] = json.loads(done.stdout)
    assert len(took) == ROUNDS
    return sorted(took)


def test_a_delay_holds_every_frame_both_ways_and_ends_cleanly(lab: NetnsLab) -> None:
    server = lab.popen(1, ["python3", "-c", SERVER], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        before = round_trips_ms(lab)
        lab.delay(40, 10, seed=3)
        held = round_trips_ms(lab)
        summary = lab.undelay()
        after = round_trips_ms(lab)
    finally:
        stop_processes([server])
        if server.stdout is not None:
            server.stdout.close()
    assert before[ROUNDS // 2] < 20, before
    # each round trip crosses the bridge twice: 80-100 ms of hold, plus the hop itself
    assert held[0] >= 80 and held[ROUNDS // 2] < 140, held
    assert after[ROUNDS // 2] < 20, after
    # the holder held both directions' frames (ARP is not IPv4: it passes unheld)
    assert summary["packets"] >= 2 * ROUNDS, summary
    assert 40 <= summary["mean_hold_ms"] <= 55 and summary["max_hold_ms"] < 100, summary
    assert lab.holder is None


def test_a_second_delay_needs_the_first_ended(lab: NetnsLab) -> None:
    lab.delay(5)
    try:
        with pytest.raises(RuntimeError, match="undelay"):
            lab.delay(5)
    finally:
        lab.undelay()
    assert lab.undelay() == {}, "nothing left to end"
