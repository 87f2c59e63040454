"""``hierclust bench --vs corosync`` and ``hierclust bench partition``: hierclust beside Corosync
on lab hosts (network + time namespaces, root only).

Thin: options are checked here, the work is in :mod:`hierclust.bench.labkill` and
:mod:`hierclust.bench.partition`. Input errors exit 2; a lab or Corosync that cannot run here,
or a run that does not reach its state, exits 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from hierclust.bench.report import document, notify_shortfall, ratio, summarize
from hierclust.cli.common import (
    EXIT_INTERRUPTED,
    err,
    fail,
    out,
    output_file,
    progress_bar,
    refuse,
    terminate_as_interrupt,
    write_report,
)

MAX_LAB_HOSTS = 64
KILL_ROWS = (
    "detect_ms", "notify_p50_ms", "notify_max_ms", "notified", "survivors", "false_positives",
    "msgs_per_node_per_s", "bytes_per_node_per_s", "cpu_cores",
)  # fmt: skip


def lab_unavailable(need_corosync: bool) -> str | None:
    from hierclust.runtime.netns import unavailable

    reason = unavailable()
    if reason is None and need_corosync:
        from hierclust.bench.corosync import skip_reason

        reason = skip_reason()
    return reason


def corosync_ratios(
    hier_runs: list[dict[str, Any]], coro_runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """``notify_max_ratio`` = corosync / hierclust notify_max_ms (above 1: hierclust sooner),
    only when both sides notified every survivor in every run; else ``ratio_invalid`` says who
    fell short."""
    reasons = [
        r
        for r in (notify_shortfall("hierclust", hier_runs), notify_shortfall("corosync", coro_runs))
        if r is not None
    ]
    if reasons:
        return {"notify_max_ratio": None, "ratio_invalid": "; ".join(reasons)}
    return {
        "notify_max_ratio": ratio(
            summarize(coro_runs).get("notify_max_ms"), summarize(hier_runs).get("notify_max_ms")
        )
    }


def kill_vs_corosync(
    *,
    mode: str,
    topology_file: Path | None,
    nodes: int | None,
    fanout: int,
    kill: str,
    repeats: int,
    seed: int,
    steady_s: float,
    as_json: bool,
    out_path: Path | None,
) -> None:
    """``bench --mode udp --nodes N --kill leaf --vs corosync``: one node per lab host."""
    if mode != "udp":
        fail("--vs corosync: needs --mode udp (real processes on lab hosts)", as_json)
    if topology_file is not None or nodes is None:
        fail("--vs corosync: give --nodes N (a generated topology, one node per lab host)", as_json)
    if not 3 <= nodes <= MAX_LAB_HOSTS:
        fail(f"--vs corosync: --nodes 3..{MAX_LAB_HOSTS} (one lab host each), got {nodes}", as_json)
    if kill != "leaf":
        fail(f"--vs corosync: --kill leaf only for now, got {kill!r}", as_json)
    if out_path is not None:
        output_file(out_path, "a file for the JSON document", as_json)
    reason = lab_unavailable(need_corosync=True)
    if reason is not None:
        refuse(f"--vs corosync: {reason}", as_json)
    from hierclust.bench.labkill import lab_kill_runs

    with terminate_as_interrupt():
        try:
            with progress_bar("hierclust vs corosync") as bar:
                task = bar.add_task("starting", total=1.0)

                def step(phase: str, done: float, total: float) -> None:
                    bar.update(task, completed=done, total=max(total, 1e-9), description=phase)

                hier, coro = lab_kill_runs(
                    nodes, fanout, kill, repeats, seed, steady_s=steady_s, progress=step
                )
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: every process this run started was stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except RuntimeError as exc:
            refuse(str(exc), as_json)
    result = document(hier)
    coro_summary = summarize(coro)
    result["summary"]["corosync"] = coro_summary
    result["summary"].update(corosync_ratios(hier, coro))
    result["corosync_runs"] = coro
    write_report(result, as_json, out_path)
    console = err if as_json else out
    table = Table(title=f"{nodes} lab hosts, cut a {kill}'s host, {repeats} repeat(s), medians")
    table.add_column("measure")
    table.add_column("hierclust", justify="right")
    table.add_column("corosync", justify="right")
    for key in KILL_ROWS:
        table.add_row(key, str(result["summary"].get(key)), str(coro_summary.get(key)))
    console.print(table)
    summary = result["summary"]
    if summary.get("notify_max_ratio") is not None:
        console.print(f"notify_max_ratio (corosync / hierclust): {summary['notify_max_ratio']}")
    else:
        console.print(f"notify_max_ratio: none, {summary.get('ratio_invalid')}", highlight=False)
