"""The benchmark document: runs, their median summary, and the Serf comparison ratios (pure)."""

from __future__ import annotations

from typing import Any

from hierclust.sim.scenario import REPORT_FIELDS, median_summary
from hierclust.stats import percentile

__all__ = [
    "REPORT_FIELDS",
    "SchemaError",
    "check_report",
    "document",
    "median_summary",
    "notify_shortfall",
    "percentile",
    "ratio",
    "serf_ratios",
    "summarize",
]


class SchemaError(ValueError):
    """A report that lacks a report field (docs/architecture.md §5) or has one of the wrong type."""


def check_report(report: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` unless ``report`` has every field of the report schema
    (docs/architecture.md §5)."""
    missing = [key for key in REPORT_FIELDS if key not in report]
    if missing:
        raise SchemaError(f"report lacks {', '.join(missing)}")
    for key in ("nodes", "notified", "survivors"):
        if not isinstance(report[key], int) or isinstance(report[key], bool):
            raise SchemaError(f"{key}: expected an integer, got {report[key]!r}")
    for key in REPORT_FIELDS:
        if key.endswith("_ms") or key.endswith("_per_s") or key == "cpu_cores":
            value = report[key]
            if value is not None and not isinstance(value, int | float):
                raise SchemaError(f"{key}: expected a number or null, got {value!r}")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field medians over ``runs`` (non-numeric fields from the first run)."""
    if not runs:
        raise ValueError("no runs to summarize")
    summary = median_summary(runs)
    for key, value in summary.items():
        # a median of whole numbers that is whole stays an integer (nodes, notified, ...)
        if isinstance(value, float) and value.is_integer():
            if all(isinstance(r.get(key), int) for r in runs):
                summary[key] = int(value)
    summary["repeats"] = len(runs)
    return summary


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded to 3 places, or None when either is missing or the
    denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def notify_shortfall(side: str, reports: list[dict[str, Any]]) -> str | None:
    """Why ``side``'s notify_max cannot be compared, or None: a report (a run or a summary)
    in which not every survivor was notified has a notify_max over only those that were, which
    understates the time and flatters that side."""
    for i, report in enumerate(reports):
        notified, survivors = report.get("notified"), report.get("survivors")
        if notified is None or survivors is None or notified != survivors:
            where = f" (run {i + 1} of {len(reports)})" if len(reports) > 1 else ""
            return f"{side} notified {notified} of {survivors} survivors{where}"
    return None


def serf_ratios(
    hierclust: dict[str, Any],
    serf: dict[str, Any],
    *,
    hierclust_runs: list[dict[str, Any]] | None = None,
    serf_runs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``notify_max_ratio`` = serf / hierclust notify_max_ms (above 1: hierclust is faster);
    ``datagrams_ratio`` = hierclust / serf msgs_per_node_per_s (above 1: hierclust costs more).

    ``notify_max_ratio`` is computed only when both sides notified every survivor (in every
    run, when the runs are given, else in the summaries); otherwise it is None and
    ``ratio_invalid`` names the side that fell short, by how much."""
    reasons = [
        reason
        for reason in (
            notify_shortfall("hierclust", hierclust_runs or [hierclust]),
            notify_shortfall("serf", serf_runs or [serf]),
        )
        if reason is not None
    ]
    result: dict[str, Any] = {
        "notify_max_ratio": None
        if reasons
        else ratio(serf.get("notify_max_ms"), hierclust.get("notify_max_ms")),
        "datagrams_ratio": ratio(
            hierclust.get("msgs_per_node_per_s"), serf.get("msgs_per_node_per_s")
        ),
    }
    if reasons:
        result["ratio_invalid"] = "; ".join(reasons)
    return result


def document(runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """``{"runs": runs, "summary": medians}``, plus ``extra`` keys merged into the summary."""
    for run in runs:
        check_report(run)
    summary = summarize(runs)
    summary.update(extra)
    return {"runs": runs, "summary": summary}
