"""Prometheus metrics of a worker: served over HTTP, read from a sample, never from live state."""

from __future__ import annotations

import asyncio
import socket
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
    port = free_tcp_port()
    metrics = serve_metrics(cluster9.host, port)
    try:
        metrics.refresh()
        text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/metrics")
    finally:
        stop_metrics(metrics)
    assert "hierclust_nodes_running 9.0" in text
    assert "hierclust_datagrams_sent_total" in text
    assert 'hierclust_datagrams_dropped_total{reason="bad_tag"} 0.0' in text
