"""Small statistics shared by the simulator, the demo and the benchmarks, so their reports agree."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the value at rank ``round(q * (n - 1))`` of the sorted values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
