"""A benchmark's JSON report as one self-contained HTML file (``hierclust bench --html OUT``).

Self-contained: inline CSS and inline SVG drawn here, no script, no font, no image and no
address fetched; the report itself rides along as JSON in a ``<script type="application/json">``
block (data, not code), so the file is the figure and its numbers at once. It shows:

- the summary (the report fields of docs/architecture.md §5, and where the run came from);
- the CDF of notice times: for each series (hierclust's runs, Serf's when compared), the share
  of survivors that held the notice against the time after the kill;
- the timeline of the first run that names who learned the notice (udp runs:
  ``udp.notify_nodes``, ``udp.notify_via``): one dot per survivor, at its time, coloured by the
  tier of the group it learned it through;
- the tree: the topology's groups by tier (top first), each with how many of its nodes are in
  that timeline and the victim's groups marked.

The simulator's runs carry no per-survivor times: their page shows p50/p99/max per run instead.
"""

from __future__ import annotations

import html
import json
import math
from bisect import bisect_left
from typing import Any

from hierclust.sim.scenario import REPORT_FIELDS
from hierclust.topology import Topology

WIDTH, HEIGHT = 720, 320
PAD_L, PAD_R, PAD_T, PAD_B = 60, 20, 20, 44
COLOURS = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#57606a")
TIER_COLOURS = ("#0969da", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#57606a")
MAX_TREE_GROUPS = 400
SUMMARY_FIELDS = (
    *(f for f in REPORT_FIELDS if f not in ("kill_at_ms", "seed", "version")),
    "repeats",
    "version",
)


def series_of(document: dict[str, Any]) -> dict[str, list[float]]:
    """Per-survivor notice times (ms after the kill) of each side of the report."""
    runs = document.get("runs", [])
    mode = runs[0].get("mode", "") if runs else ""
    found: dict[str, list[float]] = {}
    for label, key, part in (
        (f"hierclust {mode}".strip(), "runs", "udp"),
        ("hierclust, Serf's datagram budget", "budget_runs", "udp"),
        ("serf", "serf_runs", "serf"),
    ):
        values = [
            float(v)
            for r in document.get(key, [])
            for v in (r.get(part) or {}).get("notify_ms", [])
        ]
        if values:
            found[label] = values
    return found


def _ticks(top: float, count: int = 5, low: float = 0.0) -> list[float]:
    """Round tick values from at most ``low`` to at least ``top``."""
    span = top - low
    if span <= 0:
        return [low, low + 1.0]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 6))
    return ticks


def _axes(x_ticks: list[float], y_ticks: list[float], x_label: str, y_label: str) -> list[str]:
    """SVG of the grid, ticks and labels over ``x_ticks`` and ``y_ticks``."""
    bottom, right = HEIGHT - PAD_B, WIDTH - PAD_R
    parts = []
    for x in x_ticks:
        px = _x(x, x_ticks)
        parts.append(_line(px, PAD_T, px, bottom))
        parts.append(_text(px, bottom + 16, f"{x:g}", "middle", "tick"))
    for y in y_ticks:
        py = _y(y, y_ticks[-1])
        parts.append(_line(PAD_L, py, right, py))
        parts.append(_text(PAD_L - 6, py + 4, f"{y:g}", "end", "tick"))
    middle = (PAD_T + bottom) / 2
    parts.append(_text((PAD_L + right) / 2, HEIGHT - 8, x_label, "middle"))
    parts.append(
        f'<text x="14" y="{middle}" text-anchor="middle" transform="rotate(-90 14 {middle})">'
        f"{html.escape(y_label)}</text>"
    )
    return parts


def _line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="grid"/>'


def _text(x: float, y: float, text: str, anchor: str, kind: str = "label") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="{kind}" text-anchor="{anchor}">'
        f"{html.escape(text)}</text>"
    )


def _x(value: float, ticks: list[float]) -> float:
    low, top = ticks[0], ticks[-1]
    return PAD_L + (WIDTH - PAD_L - PAD_R) * ((value - low) / (top - low) if top > low else 0)


def _y(value: float, top: float) -> float:
    return HEIGHT - PAD_B - (HEIGHT - PAD_T - PAD_B) * (value / top if top else 0)


def cdf_svg(series: dict[str, list[float]]) -> str:
    """Step CDFs, one polyline per series (a point per survivor)."""
    x_top = max((max(v) for v in series.values() if v), default=1.0)
    x_ticks = _ticks(x_top)
    parts = _axes(
        x_ticks, [0, 0.25, 0.5, 0.75, 1.0], "time after the kill (ms)", "survivors notified"
    )
    for i, (label, values) in enumerate(series.items()):
        ordered = sorted(values)
        n = len(ordered)
        points = [f"{_x(0, x_ticks):.1f},{_y(0, 1):.1f}"]
        for k, v in enumerate(ordered):
            points.append(f"{_x(v, x_ticks):.1f},{_y(k / n, 1):.1f}")
            points.append(f"{_x(v, x_ticks):.1f},{_y((k + 1) / n, 1):.1f}")
        colour = COLOURS[i % len(COLOURS)]
        parts.append(
            f'<polyline class="cdf" data-series="{html.escape(label)}" data-points="{n}" '
            f'fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'
        )
        parts.append(
            f'<text x="{WIDTH - PAD_R - 8}" y="{PAD_T + 14 + 16 * i}" text-anchor="end" '
            f'fill="{colour}">{html.escape(label)} (n={n}, max {ordered[-1]:,.0f} ms)</text>'
        )
    return _svg("cdf", parts)


def timeline_svg(
    times: list[float], nodes: list[str], via: list[str | None], tiers: dict[str, int]
) -> str:
    """One dot per survivor: x its time, y its place in the learning order, colour the tier of
    the group it learned through (black: the detector)."""
    n = len(times)
    order = sorted(range(n), key=lambda i: times[i])
    x_top = max(times, default=1.0)
    # from the first learning (the detection) to the last: on one box the spread after the
    # detection takes milliseconds, which an axis from the kill would squeeze into a line
    x_ticks = _ticks(x_top, low=min(times, default=0.0))
    y_ticks = _ticks(float(n))
    parts = _axes(x_ticks, y_ticks, "time after the kill (ms)", "survivors, in learning order")
    seen_tiers: set[int] = set()
    for place, i in enumerate(order, start=1):
        group = via[i] if i < len(via) else None
        tier = tiers.get(group or "", -1)
        seen_tiers.add(tier)
        colour = "#1f2328" if tier < 0 else TIER_COLOURS[tier % len(TIER_COLOURS)]
        how = f"via {group} (tier {tier})" if group else "detected it"
        name = nodes[i] if i < len(nodes) else "?"
        parts.append(
            f'<circle class="learned" data-node="{html.escape(name)}" '
            f'cx="{_x(times[i], x_ticks):.1f}" cy="{_y(place, y_ticks[-1]):.1f}" r="3" '
            f'fill="{colour}"><title>'
            f"{html.escape(name)} +{times[i]:.1f} ms {html.escape(how)}</title></circle>"
        )
    for k, tier in enumerate(sorted(seen_tiers)):
        colour = "#1f2328" if tier < 0 else TIER_COLOURS[tier % len(TIER_COLOURS)]
        label = "detected it" if tier < 0 else f"via a tier-{tier} group"
        parts.append(
            f'<text x="{PAD_L + 8}" y="{PAD_T + 14 + 16 * k}" fill="{colour}">{label}</text>'
        )
    return _svg("timeline", parts)


def bars_svg(runs: list[dict[str, Any]]) -> str:
    """p50/p99/max notice time per run (the simulator gives no per-survivor times)."""
    keys = ("notify_p50_ms", "notify_p99_ms", "notify_max_ms")
    top = max((float(r.get(k) or 0) for r in runs for k in keys), default=1.0)
    y_ticks = _ticks(top)
    parts = _axes(_ticks(float(len(runs))), y_ticks, "run", "ms after the kill")
    slot = (WIDTH - PAD_L - PAD_R) / max(1, len(runs))
    for i, run in enumerate(runs):
        for j, key in enumerate(keys):
            value = float(run.get(key) or 0)
            x = PAD_L + slot * i + slot * (0.15 + 0.23 * j)
            y = _y(value, y_ticks[-1])
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.2:.1f}" '
                f'height="{HEIGHT - PAD_B - y:.1f}" fill="{COLOURS[j]}"><title>run {i + 1} '
                f"{key.removesuffix('_ms')}: {value:g} ms</title></rect>"
            )
    for j, key in enumerate(keys):
        parts.append(
            f'<text x="{WIDTH - PAD_R - 8}" y="{PAD_T + 14 + 16 * j}" text-anchor="end" '
            f'fill="{COLOURS[j]}">{key.removesuffix("_ms")}</text>'
        )
    return _svg("bars", parts)


def _svg(kind: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        f'<svg class="{kind}" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">\n{body}\n</svg>'
    )


def tree_html(topology: Topology, learned: list[str], victim: str | None) -> str:
    """Groups by tier, top first: name, size, how many of its nodes learned the notice; the
    victim's groups marked. Tiers beyond :data:`MAX_TREE_GROUPS` groups list the victim's
    path only."""
    ranks = sorted(r for r in (topology.names.rank(n) for n in learned) if r is not None)
    victim_rank = topology.names.rank(victim) if victim else None
    path = set() if victim_rank is None else {g.name for g in topology.path(victim_rank)}
    by_tier: dict[int, list[Any]] = {}
    for g in topology.by_index:
        by_tier.setdefault(g.tier, []).append(g)
    out = ['<div class="tree">']
    for tier in sorted(by_tier, reverse=True):
        groups = by_tier[tier]
        listed = groups if len(groups) <= MAX_TREE_GROUPS else [g for g in groups if g.name in path]
        more = len(groups) - len(listed)
        out.append(
            f'<details class="tier" open><summary>tier {tier}: {len(groups):,} groups'
            + (f" ({more:,} not listed)" if more else "")
            + '</summary><div class="groups">'
        )
        for g in listed:
            size = g.end_rank - g.first_rank
            got = bisect_left(ranks, g.end_rank) - bisect_left(ranks, g.first_rank)
            mark = " victim" if g.name in path else ""
            out.append(
                f'<div class="group{mark}" data-group="{html.escape(g.name)}">'
                f"<b>{html.escape(g.name)}</b><br>{size:,} nodes, {got:,} learned it</div>"
            )
        out.append("</div></details>")
    out.append("</div>")
    return "\n".join(out)


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1f2328; max-width: 1000px; }
table { border-collapse: collapse; } td, th { border-bottom: 1px solid #d0d7de; padding: 2px 8px;
text-align: left; } svg { border: 1px solid #d0d7de; background: white; } .grid { stroke: #eaeef2; }
.tick { font-size: 11px; fill: #57606a; } .groups { display: flex; flex-wrap: wrap; gap: 6px; }
.group { border: 1px solid #d0d7de; border-radius: 5px; padding: 4px 6px; font-size: 12px; }
.group.victim { border: 2px solid #cf222e; } .note { color: #57606a; font-size: 12px; }
"""


def bench_html(document: dict[str, Any], topology: Topology | None = None) -> str:
    """The whole page for one ``hierclust bench`` document (as written by ``--out``)."""
    summary = document.get("summary", {})
    runs = document.get("runs", [])
    provenance = document.get("provenance") or {}
    title = (
        f"hierclust bench: {summary.get('mode', '?')}, {summary.get('nodes', '?')} nodes, "
        f"kill {summary.get('victim_role', '?')}"
    )
    rows = "".join(
        f"<tr><th>{key}</th><td>{html.escape(str(summary[key]))}</td></tr>"
        for key in SUMMARY_FIELDS
        if key in summary
    )
    origin = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in provenance.items()
        if isinstance(v, str | int | float)
    )
    parts = [f"<h1>{html.escape(title)}</h1>", f"<table>{rows}{origin}</table>"]
    series = series_of(document)
    if series:
        parts += ["<h2>Notice times (CDF)</h2>", cdf_svg(series)]
    else:
        parts += ["<h2>Notice times per run</h2>", bars_svg(runs)]
        parts.append('<p class="note">Simulator runs give percentiles, not per-survivor times.</p>')
    timed = next((r for r in runs if (r.get("udp") or {}).get("notify_nodes")), None)
    if timed is not None:
        udp = timed["udp"]
        tiers = {} if topology is None else {g.name: g.tier for g in topology.by_index}
        parts += [
            f"<h2>Timeline: who learned that {html.escape(str(timed.get('victim')))} failed, "
            "and through which tier</h2>",
            timeline_svg(udp["notify_ms"], udp["notify_nodes"], udp.get("notify_via", []), tiers),
            '<p class="note">Times are from the kill, on the monotonic clock of the one host '
            "that ran every agent (docs/web.md).</p>",
        ]
    if topology is not None:
        learned = list((timed or {}).get("udp", {}).get("notify_nodes", []))
        first = timed if timed is not None else (runs[0] if runs else {})
        victim = first.get("victim")
        parts += [
            f"<h2>Tree: {html.escape(topology.name)}</h2>",
            tree_html(topology, learned, victim),
        ]
    # "<" as \u003c: still the same JSON, and nothing in it can close the script block
    data = json.dumps(document, separators=(",", ":")).replace("<", "\\u003c")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + f'\n<script type="application/json" id="report">{data}</script>\n</body></html>\n'
    )
