"""Sweeps: one benchmark mode over growing sizes; one row (a report, docs/architecture.md §5) per
size and kill, and the spread of datagrams per node across sizes (flat is the goal)."""

from __future__ import annotations

from typing import Any


def parse_sizes(text: str) -> list[int]:
    """``"1000,10k,1e5"``-style lists: integers, ``k``/``m`` suffixes, ``_`` separators."""
    sizes: list[int] = []
    for part in text.replace("_", "").split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1
        if part[-1] in "km":
            scale = 1000 if part[-1] == "k" else 1_000_000
            part = part[:-1]
        try:
            value = int(float(part) * scale)
        except ValueError:
            raise ValueError(f"--sizes: {part!r} is not a number") from None
        if value < 2:
            raise ValueError(f"--sizes: expected sizes of at least 2 nodes, got {value}")
        sizes.append(value)
    if not sizes:
        raise ValueError("--sizes: expected a comma-separated list such as 1000,10000")
    return sizes


def flatness(rows: list[dict[str, Any]], key: str = "msgs_per_node_per_s") -> float | None:
    """Largest relative deviation of ``key`` from its mean over ``rows`` (0.05 = within 5 %)."""
    values = [float(r[key]) for r in rows if isinstance(r.get(key), int | float)]
    if not values:
        return None
    mean = sum(values) / len(values)
    if mean == 0:
        return None
    return round(max(abs(v - mean) for v in values) / mean, 4)
