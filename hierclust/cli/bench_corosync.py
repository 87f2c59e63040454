"""``hierclust bench --vs corosync`` and ``hierclust bench partition``: hierclust beside Corosync
on lab hosts (network + time namespaces, root only).

Thin: options are checked here, the work is in :mod:`hierclust.bench.labkill` and
:mod:`hierclust.bench.partition`. Input errors exit 2; a lab or Corosync that cannot run here,
or a run that does not reach its state, exits 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hierclust.bench.report import document, notify_shortfall, ratio, summarize
from hierclust.cli.common import (
    JsonFlag,
    OutOpt,
    err,
    fail,
    measuring,
    out,
    output_file,
    refuse,
    write_report,
)

MAX_LAB_HOSTS = 64
PARTITION_ROWS = ("minority_stopped_ms", "majority_decided_ms", "heal_ms")
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
    plot: Path | None = None,
) -> None:
    """``bench --mode udp --nodes N --kill leaf --vs corosync``: one node per lab host;
    ``plot``: a CDF of every survivor's notification time on both sides."""
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

    with measuring("hierclust vs corosync", 1.0, as_json, unable=(RuntimeError,)) as step:
        hier, coro = lab_kill_runs(
            nodes, fanout, kill, repeats, seed, steady_s=steady_s, progress=step
        )
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
    if plot is not None:
        from hierclust.bench.plots import notify_cdf

        series = {
            "hierclust": [v for r in hier for v in r["lab"]["notify_ms"]],
            "corosync": [v for r in coro for v in r["corosync"]["notify_ms"]],
        }
        notify_cdf(plot, series, f"notification time per survivor: {table.title}")
        console.print(f"wrote {plot}")


def partition(
    nodes: Annotated[int, typer.Option("--nodes", help="Lab hosts, one node each.")] = 8,
    minority: Annotated[
        int, typer.Option("--minority", help="Nodes cut off (hosts 1..M), at most half.")
    ] = 3,
    fanout: Annotated[
        int | None,
        typer.Option(
            "--fanout",
            help="Group size (default: --minority, so the minority is one leaf group).",
            show_default=False,
        ),
    ] = None,
    witness: Annotated[
        bool,
        typer.Option(
            "--witness", help="Run the root's witness on one more host, on the majority's side."
        ),
    ] = False,
    vs: Annotated[
        str | None, typer.Option("--vs", help="Also run the same cut on: corosync.")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=20, help="Runs (medians).")] = 1,
    tuning_opts: Annotated[
        list[str] | None,
        typer.Option(
            "--tuning",
            help="hierclust timing KEY=MS for every group (repeatable), e.g. slot_grace_ms=400.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
    out_path: OutOpt = None,
) -> None:
    """A minority cut off, then healed, on lab hosts (and Corosync).

    When the minority stops, when the majority decides, how soon everyone is one again:
    hierclust, one node per lab host, and with --vs corosync Corosync on the same hosts.

    --json prints the document ({"config", "summary", "runs"}) on stdout, --out writes it.
    """
    if vs not in (None, "corosync"):
        fail(f"--vs: expected corosync, got {vs!r}", as_json)
    if not 3 <= nodes <= MAX_LAB_HOSTS:
        fail(f"--nodes: 3..{MAX_LAB_HOSTS} (one lab host each), got {nodes}", as_json)
    if not 1 <= minority <= nodes // 2:
        fail(
            f"--minority: 1..{nodes // 2} (at most half of --nodes {nodes}), got {minority}",
            as_json,
        )
    group = minority if fanout is None else fanout
    if not 2 <= group <= nodes:
        fail(f"--fanout: 2..{nodes}, got {group} (give --fanout when --minority is 1)", as_json)
    tuning = parse_tuning(tuning_opts or [], nodes, group, as_json)
    if out_path is not None:
        output_file(out_path, "a file for the JSON document", as_json)
    reason = lab_unavailable(need_corosync=vs == "corosync")
    if reason is not None:
        refuse(f"bench partition: {reason}", as_json)
    from hierclust.bench.partition import partition_runs, partition_summary

    with measuring("partition", 1.0, as_json, unable=(RuntimeError,)) as step:
        hier, coro = partition_runs(
            nodes, minority, fanout=group, witness=witness, corosync=vs == "corosync",
            tuning=tuning, repeats=repeats, progress=step,
        )  # fmt: skip
    summary = partition_summary(hier)
    result: dict[str, Any] = {
        "config": {
            "nodes": nodes,
            "minority": minority,
            "fanout": group,
            "witness": witness,
            "vs": vs,
            "repeats": repeats,
        },  # fmt: skip
        "summary": summary,
        "runs": hier,
    }
    if coro:
        summary["corosync"] = partition_summary(coro)
        result["corosync_runs"] = coro
    write_report(result, as_json, out_path)
    console = err if as_json else out
    table = Table(title=f"{nodes} lab hosts, {minority} cut off, {repeats} repeat(s), medians")
    table.add_column("measure")
    table.add_column("hierclust", justify="right")
    if coro:
        table.add_column("corosync", justify="right")
    for key in (*PARTITION_ROWS, "primary_side"):
        row = [str(summary.get(key))]
        if coro:
            row.append(str(summary["corosync"].get(key)))
        table.add_row(key, *row)
    console.print(table)


def parse_tuning(pairs: list[str], nodes: int, fanout: int, as_json: bool) -> dict[str, int]:
    """``--tuning KEY=MS`` pairs, checked the way a topology's ``[defaults]`` is (exit 2 with
    the key and the rule it breaks)."""
    from hierclust.topology import TopologyError, from_dict, generate_document

    tuning: dict[str, int] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value.strip().isdigit():
            fail(f"--tuning {pair}: expected KEY=MS, e.g. slot_grace_ms=400", as_json)
        tuning[key.strip()] = int(value)
    if tuning:
        document = generate_document(nodes, fanout)
        document = {"cluster": document.pop("cluster"), "defaults": tuning, **document}
        try:
            from_dict(document, source="--tuning")
        except TopologyError as exc:
            fail(str(exc), as_json)
    return tuning
