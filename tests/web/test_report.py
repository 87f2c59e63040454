"""``bench --html``: one self-contained page (no address fetched) holding the CDF, the timeline,
the tree and the report itself."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.web.report import bench_html, series_of
from tests.runtime.test_status import demo


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = dict(attrs).get("id")

    def handle_data(self, data: str) -> None:
        if self._in:
            self.data[self._in] = self.data.get(self._in, "") + data


def udp_document() -> dict[str, Any]:
    """A udp report of dn07's kill on the demo topology, as `bench --out` writes it."""
    learners = [f"dn{i:02d}" for i in range(1, 64) if i != 7]
    times = [300.0 + 7.5 * k for k in range(len(learners))]
    via = [None] + ["rack-a.t0.0"] * 5 + ["rack-a"] * 15 + ["demo"] * (len(learners) - 21)
    run = {
        "mode": "udp", "nodes": 63, "victim": "dn07", "victim_role": "leaf",
        "notify_max_ms": times[-1], "notified": 62, "survivors": 62,
        "udp": {"notify_ms": times, "notify_nodes": learners, "notify_via": via},
    }  # fmt: skip
    return {"runs": [run], "summary": {**run, "repeats": 1}, "provenance": {"commit": "abc123"}}


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def test_page_is_self_contained_and_draws_every_survivor() -> None:
    document = udp_document()
    page = bench_html(document, demo())
    tags = parse(page)
    assert not re.search(r"https?://", page)  # nothing to fetch, not even a namespace URL
    assert not [t for t, a in tags.tags if t in ("img", "link", "iframe") or a.get("src")]
    cdf = [a for t, a in tags.tags if t == "polyline"]
    assert [(a["data-series"], a["data-points"]) for a in cdf] == [("hierclust udp", "62")]
    dots = [a["data-node"] for t, a in tags.tags if t == "circle"]
    assert sorted(dots) == sorted(document["runs"][0]["udp"]["notify_nodes"])
    groups = [a for t, a in tags.tags if t == "div" and a.get("data-group")]
    assert len(groups) == 13
    marked = {a["data-group"] for a in groups if "victim" in (a.get("class") or "")}
    assert marked == {"demo", "rack-a", "rack-a.t0.0"}  # dn07's path
    assert json.loads(tags.data["report"]) == document  # the numbers ride along
    assert "abc123" in page


def test_a_name_cannot_break_out_of_the_page() -> None:
    document = udp_document()
    document["summary"]["victim"] = "</script><script>alert(1)</script>"
    page = bench_html(document)
    assert "<script>alert" not in page
    assert page.count("<script") == 1


def test_series_of_every_side() -> None:
    document = udp_document()
    document["serf_runs"] = [{"serf": {"notify_ms": [1.0, 2.0]}}]
    assert {k: len(v) for k, v in series_of(document).items()} == {"hierclust udp": 62, "serf": 2}


def test_bench_html_from_the_command_line(tmp_path: Path) -> None:
    """A simulator run: no per-survivor times, so bars per run; the tree of its topology."""
    out = tmp_path / "bench.html"
    result = CliRunner().invoke(
        app, ["bench", "--nodes", "40", "--fanout", "5", "--html", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    tags = parse(page)
    assert sum(1 for t, a in tags.tags if t == "rect" and a.get("class") == "bar") == 3
    assert json.loads(tags.data["report"])["summary"]["nodes"] == 40
    assert len([a for t, a in tags.tags if t == "div" and a.get("data-group")]) > 8


def test_bench_html_to_a_directory_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--nodes", "40", "--html", str(tmp_path)])
    assert result.exit_code == 2 and str(tmp_path) in result.stderr
