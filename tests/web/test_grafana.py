"""docs/grafana/hierclust.json reads only metrics the agents export, under the names Prometheus
sees (counters with ``_total``, the histogram's ``_bucket``/``_sum``/``_count``), and covers
every family; the notice-age histogram counts what it should."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from hierclust.core.types import Failure, NoticeLearned
from hierclust.runtime.events import EventRecord
from hierclust.runtime.metrics import HostMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "hierclust.json"
NAME = re.compile(r"\bhierclust_[a-zA-Z0-9_]+")


def exported() -> tuple[str, HostMetrics]:
    """The exposition text of a worker's collector (no node runs: every gauge is 0)."""
    subscribers: list[Any] = []
    bus = SimpleNamespace(subscribe=subscribers.append, log_errors=0)
    host: Any = SimpleNamespace(ctx=SimpleNamespace(bus=bus, last_lag_ms=0), drivers={})
    metrics = HostMetrics(host)
    notice = Failure(node=6, incarnation=1, group=0, detected_by=0, term=1, age_ms=300)
    for via in (None, 2, 2):  # the detector (age 0) and two nodes it reached 300 ms after
        subscribers[0](EventRecord(1, 0, "dn01", NoticeLearned(notice, via)))
    metrics.refresh()
    metrics.sample["datagrams_dropped"] = {"bad_tag": 0}  # what a worker with a codec reports
    registry = CollectorRegistry()
    registry.register(metrics)
    return generate_latest(registry).decode(), metrics


def test_notice_age_histogram() -> None:
    text, _ = exported()
    assert 'hierclust_notice_age_ms_bucket{le="25.0"} 1.0' in text
    assert 'hierclust_notice_age_ms_bucket{le="200.0"} 1.0' in text
    assert 'hierclust_notice_age_ms_bucket{le="400.0"} 3.0' in text
    assert 'hierclust_notice_age_ms_bucket{le="+Inf"} 3.0' in text
    assert (
        "hierclust_notice_age_ms_sum 600.0" in text and "hierclust_notice_age_ms_count 3.0" in text
    )


def test_every_dashboard_expression_names_an_exported_metric() -> None:
    text, _ = exported()
    series = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }
    families = {m.group(1) for m in re.finditer(r"^# TYPE (\S+)", text, re.M)}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert expressions
    used: set[str] = set()
    for expr in expressions:
        names = set(NAME.findall(expr))
        assert names, expr
        assert names <= series, f"{expr}: {sorted(names - series)} not exported"
        used |= names
    for topic in (
        "datagrams_sent",
        "datagrams_dropped",
        "groups_led",
        "groups_quorate",
        "notice_age",
    ):
        assert any(topic in name for name in used), topic
    unused = {f for f in families if not any(name.startswith(f) for name in used)}
    assert not unused, f"exported but on no panel: {sorted(unused)}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
