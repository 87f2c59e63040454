"""``hierclust chaos``: a seeded nemesis campaign on real agents in lab hosts, then a checker.

Exit codes: 0 when the history is clean (no safety violation, no liveness failure, no crash), 1
when it is not (the JSON lists each finding, and the command that reproduces the run is
printed), 2 for bad options or a box where the lab cannot run (not root, no network or time
namespaces), 130 on Ctrl-C (everything the run started is stopped, its namespaces deleted).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from hierclust.cli.common import (
    EXIT_NOT_DONE,
    JsonFlag,
    OutOpt,
    command_group,
    err,
    fail,
    measuring,
    out,
    output_file,
    write_report,
)

app = command_group()
SUBNET = "10.230.0"
"""The lab's subnet for command-line runs (the tests use their own)."""


@app.command("chaos", short_help="Seeded faults on real agents, then a check of their history.")
def chaos(
    minutes: Annotated[
        float, typer.Option("--minutes", help="Nemesis time, in minutes (faults and quiet).")
    ] = 5.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fault schedule.")] = 1,
    sites: Annotated[int, typer.Option("--sites", help="Sites, 2 to 8 (two nest under uk).")] = 4,
    nodes_per_site: Annotated[
        int, typer.Option("--nodes-per-site", help="Nodes per site, 3 to 64.")
    ] = 25,
    hosts_per_site: Annotated[
        int | None,
        typer.Option(
            "--hosts-per-site",
            help="Lab hosts per site (one agent process each; default: one per leaf group, "
            "at least 2).",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Keep the lab's files (topology, state directories, event logs) in this "
            "directory (default: a temporary one, removed).",
            show_default=False,
        ),
    ] = None,
    out_path: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a seeded nemesis campaign on real agents and check its history.

    Lab hosts in network and time namespaces (clocks days apart), one agent process per host,
    a witness daemon on its own host. The schedule (printed) cuts sites, minorities and
    majorities off (also one way), drops frames at random, kills group leaders at each tier,
    kills host processes with -9 and restarts them with or without their node state, stops
    them (SIGSTOP) for longer than a lease, restarts the witness and steps wall clocks. The
    checker then reads every agent's event log: at most one lease holder per group at any
    instant, terms and fencing tokens only grow, never two primary components, every kill and
    site cut heard of within the bound, and the cluster whole again after each fault. Root
    only.
    """
    from hierclust.bench.chaos_lab import campaign
    from hierclust.bench.chaos_plan import LayoutError, layout
    from hierclust.runtime.netns import NetnsError, delay_unavailable, unavailable

    if not 0 < minutes <= 24 * 60:
        fail(f"--minutes {minutes:g}: expected more than 0 and at most 1440", as_json)
    try:
        lay = layout(sites, nodes_per_site, hosts_per_site)
    except LayoutError as exc:
        fail(str(exc), as_json)
    if keep is not None:
        if keep.exists() and not keep.is_dir():
            fail(f"--keep {keep}: not a directory; give a new or empty directory", as_json)
        if keep.is_dir() and any(keep.iterdir()):
            fail(
                f"--keep {keep}: not empty (the lab of an earlier run?); give a new or empty "
                "directory",
                as_json,
            )
    why = unavailable() or delay_unavailable()  # (loss faults hold frames too)
    if why is not None:
        fail(f"the chaos lab cannot run here: {why}", as_json)
    if out_path is not None:
        output_file(out_path, "a JSON file", as_json)
    prefix = f"hcx{os.getpid() % 100000}"

    def show(schedule: list[Any]) -> None:
        if not as_json:
            err.print(f"schedule (seed {seed}, {len(schedule)} faults planned):", highlight=False)
            for fault in schedule:
                err.print(f"  {fault.describe()}", highlight=False, markup=False)

    with measuring("chaos", minutes * 60, as_json, (NetnsError,)) as progress:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            report = campaign(minutes, seed, lay, keep, prefix, SUBNET, progress, show)
        else:
            with tempfile.TemporaryDirectory(prefix="hierclust-chaos-") as tmp:
                report = campaign(minutes, seed, lay, Path(tmp), prefix, SUBNET, progress, show)
    write_report(report, as_json, out_path)
    findings = report["violations"] + report["liveness_failures"] + report["crashes"]
    if not as_json:
        s = report["summary"]
        out.print(
            f"{report['nemesis_events']} faults in {report['nemesis_seconds']:.0f} s on "
            f"{report['nodes']} nodes ({report['hosts']} lab hosts): "
            f"{len(report['violations'])} violations, "
            f"{len(report['liveness_failures'])} liveness failures, "
            f"{len(report['crashes'])} crashes; healed in at most {s['settle_max_s']} s",
            highlight=False,
        )
        for f in findings[:20]:
            out.print(f"  {f['kind']} at {f['t_s']} s: {f['detail']}", highlight=False)
    if findings:
        err.print(f"reproduce: {report['reproduce']}", highlight=False, markup=False)
        raise typer.Exit(EXIT_NOT_DONE)
