"""``hierclust demo``: the main job, end to end on 127.0.0.1 (the work is in
:mod:`hierclust.runtime.demo`; this module checks, runs and prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from hierclust.cli.common import (
    EXIT_NOT_DONE,
    JsonFlag,
    command_group,
    default_topology_path,
    emit_json,
    err,
    fail,
    load_or_fail,
    out,
    plural,
    progress_bar,
)

app = command_group()


@app.command("demo")
def demo(
    topology_file: Annotated[
        Path | None,
        typer.Option(
            "--topology",
            help="Topology file (default: the embedded demo topology).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Deploy on 127.0.0.1, kill a leaf and a leader, report.

    Deploys the topology in the background, kills a leaf node and then a tier-1 leader, prints
    when every node learned of each failure and the re-election, and stops everything.
    """
    from hierclust.runtime.demo import Demo
    from hierclust.runtime.deploy import check_addresses, check_ports_free
    from hierclust.runtime.errors import DeployError

    path = topology_file or default_topology_path()
    topology = load_or_fail(path, as_json)
    try:
        check_addresses(topology)
        check_ports_free(topology)
    except DeployError as exc:
        fail(str(exc), as_json)
    run = Demo(topology, path, processes=2 if topology.num_nodes > 32 else 1)
    report: dict[str, Any] = {}
    failure: str | None = None
    if not as_json:
        where = topology.source if topology_file else "the embedded demo topology"
        out.print(
            f"[bold]hierclust demo[/]: {topology.num_nodes} agents on 127.0.0.1 ({escape(where)})",
            highlight=False,
            soft_wrap=True,
        )
    try:
        with progress_bar("demo") as bar:
            task = bar.add_task("deploying", total=1)

            def progress(what: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, description=what)

            report = run.run(progress)
    except (DeployError, OSError) as exc:
        failure = str(exc)
    finally:
        report.update(run.finish())
    report.setdefault("nodes", topology.num_nodes)
    if failure is not None:
        report["error"] = failure
    if as_json:
        emit_json(report)
    else:
        print_demo(report, out)
    if failure is not None:
        if not as_json:
            err.print(f"[red]error:[/] {escape(failure)}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_NOT_DONE)


def print_demo(report: dict[str, Any], console: Console) -> None:
    """The demo report for people: one paragraph per kill, lines never cut."""

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True, markup=False)

    processes = report.get("processes")
    say(
        f"{report['nodes']} agents in "
        f"{plural(processes, 'process', 'processes') if processes else '? processes'}; "
        f"every group led after {report.get('all_led_ms')} ms; steady state "
        f"{report.get('msgs_per_node_per_s')} datagrams/node/s "
        f"({report.get('bytes_per_datagram')} B each)"
    )
    for kill in report.get("kills", []):
        console.rule(f"kill {kill['victim']} ({kill['victim_role']})")
        say(
            f"detected by {kill['detected_by']} after {kill['detect_ms']} ms; "
            f"{kill['notified']}/{kill['survivors']} survivors notified: p50 "
            f"{kill['notify_p50_ms']} ms, p99 {kill['notify_p99_ms']} ms, max "
            f"{kill['notify_max_ms']} ms"
        )
        if kill["reelected"]:
            taken = ", ".join(f"{g} -> {n}" for g, n in kill["reelected"].items())
            say(f"re-elected after {kill['reelect_ms']} ms: {taken}")
        say(
            f"groups_disturbed {kill['groups_disturbed']}, elections elsewhere "
            f"{kill['elections_elsewhere']}"
        )
        say("timeline (ms after the kill, one monotonic clock):")
        cells = [f"{t['node']} +{t['ms']:.0f}" for t in kill["timeline"]]
        for i in range(0, len(cells), 4):
            say("  " + "".join(f"{c:<18}" for c in cells[i : i + 4]).rstrip())
    left = report.get("left_running")
    left_text = plural(left, "process", "processes") if isinstance(left, int) else "? processes"
    say(f"stopped; {left_text} left running; {report.get('seconds')} s in all")
