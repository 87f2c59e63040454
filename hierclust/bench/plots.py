"""Benchmark plots (matplotlib, Agg backend): notification-time CDFs and sweep curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cdf_points(values: list[float]) -> tuple[list[float], list[float]]:
    """(sorted values, fraction of survivors notified by then) for a step CDF."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def notify_cdf(path: Path, series: dict[str, list[float]], title: str) -> Path:
    """One CDF line per series: time after the kill (ms) against the share of survivors that
    hold the notice."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    log = False
    for label, values in series.items():
        if not values:
            continue
        xs, ys = cdf_points(values)
        ax.step(xs, ys, where="post", label=f"{label} (n={len(values)}, max {xs[-1]:,.0f} ms)")
    every = [x for v in series.values() for x in v]
    if every and max(every) / max(1.0, min(every)) > 20:
        log = True
        ax.set_xscale("log")
    ax.set_xlabel("time after the kill (ms" + (", log scale)" if log else ")"))
    ax.set_ylabel("survivors notified (fraction)")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_plot(path: Path, rows: list[dict[str, Any]], title: str) -> Path:
    """Notify time (p50, max) and datagrams per node per second against N, one line per kill."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    kills = sorted({r["victim_role"] for r in rows})
    for kill in kills:
        mine = sorted((r for r in rows if r["victim_role"] == kill), key=lambda r: r["nodes"])
        sizes = [r["nodes"] for r in mine]
        left.plot(sizes, [r["notify_max_ms"] for r in mine], "o-", label=f"{kill} max")
        left.plot(sizes, [r["notify_p50_ms"] for r in mine], "x--", label=f"{kill} p50")
        right.plot(sizes, [r["msgs_per_node_per_s"] for r in mine], "o-", label=kill)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("nodes")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("notification time after the kill (ms)")
    left.set_ylim(bottom=0)
    right.set_ylabel("datagrams per node per second (steady)")
    right.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def repeat_bars(path: Path, runs: list[dict[str, Any]], title: str) -> Path:
    """p50/p99/max notify time per repeat (sim runs have no per-survivor times to draw a CDF)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.25
    for j, key in enumerate(("notify_p50_ms", "notify_p99_ms", "notify_max_ms")):
        xs = [i + (j - 1) * width for i in range(len(runs))]
        ax.bar(xs, [r[key] or 0 for r in runs], width, label=key.removesuffix("_ms"))
    ax.set_xticks(range(len(runs)), [f"seed {r['seed']}" for r in runs])
    ax.set_ylabel("ms after the kill")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
