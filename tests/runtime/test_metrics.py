"""Prometheus metrics of a worker: served over HTTP, read from a sample, never from live state."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request

import pytest

from hierclust.runtime.metrics import serve_metrics, stop_metrics
from tests.runtime.conftest import Cluster, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_metrics_endpoint(cluster9: Cluster) -> None:
    await wait_for(cluster9.all_led, 5.0, "a leader in every group")

    def all_in_primary() -> bool:
        now = time.monotonic_ns()
        nodes = [d.node for d in cluster9.host.drivers.values()]
        return all(n is not None and n.in_primary(now) for n in nodes)

    await wait_for(all_in_primary, 5.0, "every node in the primary component")
    port = free_tcp_port()
    metrics = serve_metrics(cluster9.host, port)
    try:
        metrics.refresh()
        text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/metrics")
    finally:
        stop_metrics(metrics)
    assert "hierclust_nodes_running 9.0" in text
    led = re.search(r"^hierclust_groups_led (\S+)$", text, re.M)
    quorate = re.search(r"^hierclust_groups_quorate (\S+)$", text, re.M)
    assert led and quorate and float(led[1]) == float(quorate[1]) == 4.0  # one host leads all
    assert "hierclust_nodes_in_primary 9.0" in text
    assert 'hierclust_notice_age_ms_bucket{le="+Inf"}' in text
    assert "hierclust_datagrams_sent_total" in text
    assert 'hierclust_datagrams_dropped_total{reason="bad_tag"} 0.0' in text
