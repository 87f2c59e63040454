"""Prometheus metrics of one worker process (``--metrics-port``; needs prometheus-client).

The HTTP server runs in prometheus-client's thread; it never touches live node state. A task in
the event loop refreshes an immutable sample every second and the collector reads only that.

``hierclust_notice_age_ms`` is how old a failure notice was when a local node learned it, by
the age the notice carries (its sender's reckoning of the time since detection, a duration:
the last hop's transit is not in it; the detector itself counts 0). It is the notice latency
across hosts without comparing their clocks. The Grafana dashboard in docs/grafana/ reads these
metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from hierclust.core.types import ElectionStarted, Failure, NoticeLearned, ViewChanged
from hierclust.runtime.events import EventRecord
from hierclust.runtime.host import NodeHost

REFRESH_S = 1.0
AGE_BUCKETS_MS = (25, 50, 100, 200, 400, 800, 1600, 3200, 6400)
"""Upper bounds of the notice-age histogram (ms); +Inf follows."""


class HostMetrics:
    server: Any = None

    def __init__(self, host: NodeHost) -> None:
        self.host = host
        self.counts = {"notices": 0, "elections": 0, "view_changes": 0}
        self.ages = [0] * (len(AGE_BUCKETS_MS) + 1)  # per bucket, the last one +Inf
        self.age_sum_ms = 0
        self.sample: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None
        host.ctx.bus.subscribe(self._on_event)

    def _on_event(self, record: EventRecord) -> None:
        kind = type(record.event)
        if kind is NoticeLearned:
            self.counts["notices"] += 1
            notice = record.event.notice
            if isinstance(notice, Failure):
                age = 0 if record.event.via is None else max(0, notice.age_ms)
                self.age_sum_ms += age
                self.ages[bisect_left(AGE_BUCKETS_MS, age)] += 1
        elif kind is ElectionStarted:
            self.counts["elections"] += 1
        elif kind is ViewChanged:
            self.counts["view_changes"] += 1

    def refresh(self) -> None:
        now = time.monotonic_ns()
        running = led = quorate = in_primary = cannot_persist = 0
        sent = received = sent_bytes = promises_dropped = 0
        dropped: dict[str, int] = {}
        for driver in self.host.drivers.values():
            node = driver.node
            sent += driver.stats.sent
            sent_bytes += driver.stats.sent_bytes
            received += driver.stats.received
            promises_dropped += driver.stats.promises_dropped
            if driver.codec is not None:
                for reason, n in driver.codec.counters.dropped.items():
                    dropped[reason.value] = dropped.get(reason.value, 0) + n
            if node is None:
                continue
            running += 1
            cannot_persist += driver.storage is not None
            in_primary += node.in_primary(now)
            for g in node.groups():
                if node.is_leader(g) and node.lease_valid(g, now):
                    led += 1
                    quorate += node.quorate(g, now)
        self.sample = {
            "nodes_running": running,
            "groups_led": led,
            "groups_quorate": quorate,
            "nodes_in_primary": in_primary,
            "notice_ages": list(self.ages),
            "notice_age_sum_ms": self.age_sum_ms,
            "datagrams_sent": sent,
            "datagram_bytes_sent": sent_bytes,
            "datagrams_received": received,
            "datagrams_dropped": dict(dropped),
            "loop_lag_ms": self.host.ctx.last_lag_ms,
            "nodes_cannot_persist": cannot_persist,
            "promises_dropped": promises_dropped,
            "event_log_errors": self.host.ctx.bus.log_errors,
            **self.counts,
        }

    async def run(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(REFRESH_S)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        s = self.sample
        if not s:
            return
        yield GaugeMetricFamily(
            "hierclust_nodes_running", "Nodes running in this process", value=s["nodes_running"]
        )
        yield GaugeMetricFamily(
            "hierclust_groups_led", "Groups led (with a lease) from here", value=s["groups_led"]
        )
        yield GaugeMetricFamily(
            "hierclust_groups_quorate",
            "Groups led from here whose leader holds a quorate lease",
            value=s["groups_quorate"],
        )
        yield GaugeMetricFamily(
            "hierclust_nodes_in_primary",
            "Nodes running here that are in the primary component",
            value=s["nodes_in_primary"],
        )
        yield GaugeMetricFamily(
            "hierclust_loop_lag_ms", "Event-loop lag at the last sample", value=s["loop_lag_ms"]
        )
        yield GaugeMetricFamily(
            "hierclust_nodes_cannot_persist",
            "Nodes that cannot write their state file (they vote for no one meanwhile)",
            value=s["nodes_cannot_persist"],
        )
        for name, key, doc in (
            ("hierclust_datagrams_sent", "datagrams_sent", "Datagrams sent"),
            ("hierclust_datagram_bytes_sent", "datagram_bytes_sent", "Bytes sent"),
            ("hierclust_datagrams_received", "datagrams_received", "Datagrams accepted"),
            ("hierclust_notices_learned", "notices", "Notices learned by local nodes"),
            ("hierclust_elections_started", "elections", "Elections started by local nodes"),
            ("hierclust_view_changes", "view_changes", "Group view changes seen by local nodes"),
            (
                "hierclust_promises_dropped",
                "promises_dropped",
                "Votes and vote requests not sent because the state write failed",
            ),
            ("hierclust_event_log_errors", "event_log_errors", "Event log lines lost (disk)"),
        ):
            yield CounterMetricFamily(name, doc, value=s[key])
        family = CounterMetricFamily(
            "hierclust_datagrams_dropped", "Datagrams dropped, by reason", labels=["reason"]
        )
        for reason, n in sorted(s["datagrams_dropped"].items()):
            family.add_metric([reason], n)
        yield family
        cumulative, buckets = 0, []
        for bound, n in zip(
            (*(str(float(b)) for b in AGE_BUCKETS_MS), "+Inf"), s["notice_ages"], strict=True
        ):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "hierclust_notice_age_ms",
            "Age of failure notices when local nodes learned them (ms, the notices' own age)",
            buckets=buckets,
            sum_value=s["notice_age_sum_ms"],
        )


def serve_metrics(host: NodeHost, port: int, addr: str = "127.0.0.1") -> HostMetrics:
    """Start the HTTP endpoint on ``addr:port`` and the refresh task; returns the collector."""
    from prometheus_client import CollectorRegistry, start_http_server

    metrics = HostMetrics(host)
    metrics.refresh()
    registry = CollectorRegistry()
    registry.register(metrics)
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    metrics.task = asyncio.get_running_loop().create_task(metrics.run())
    metrics.server = server
    return metrics


def stop_metrics(metrics: HostMetrics) -> None:
    if metrics.task is not None:
        metrics.task.cancel()
    server = metrics.server
    if server is not None:
        with contextlib.suppress(Exception):
            server.shutdown()
            server.server_close()
