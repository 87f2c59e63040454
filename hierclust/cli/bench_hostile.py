"""``hierclust bench hostile``: hostile datagrams against live agents (none may get in).

Kept apart from :mod:`hierclust.cli.bench` (the failure-propagation benchmarks), which registers
this command on its ``bench`` group. Exit codes: 0 when the campaign found nothing (no crash,
nothing accepted, every counter accounted for), 1 when it found something (the JSON says what),
2 for bad options or a cluster that cannot be deployed or watched here, 130 on Ctrl-C.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hierclust.cli.common import (
    EXIT_NOT_DONE,
    JsonFlag,
    OutOpt,
    fail,
    measuring,
    out,
    output_file,
    write_report,
)


def hostile(
    datagrams: Annotated[
        int, typer.Option("--datagrams", min=1, help="Hostile datagrams to send, all kinds.")
    ] = 20_000,
    rate: Annotated[
        int, typer.Option("--rate", min=1, help="Datagrams per second (paced; at most 50,000).")
    ] = 10_000,
    nodes: Annotated[int, typer.Option("--nodes", min=2, help="Nodes deployed.")] = 8,
    fanout: Annotated[
        int, typer.Option("--fanout", min=2, max=64, help="Group size (the top group is even).")
    ] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of what is sent.")] = 1,
    base_port: Annotated[
        int, typer.Option("--base-port", help="First UDP port (the witness one below).")
    ] = 23000,
    out_path: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Hostile datagrams at live agents and a witness: none may get in.

    Deploys NODES on 127.0.0.1 with a witness tie-breaker, captures their traffic (needs
    CAP_NET_RAW), then sends random, bit-flipped, truncated, oversized, replayed and
    foreign-keyed datagrams to every listener. Checks that no node crashed, no view changed,
    and every datagram a socket received is counted as dropped, with the reason predicted.
    """
    from hierclust.bench.hostile import run
    from hierclust.bench.udp import BenchError
    from hierclust.runtime.errors import DeployError

    if out_path is not None:
        output_file(out_path, "a JSON file", as_json)
    with measuring("hostile", datagrams, as_json, (BenchError, DeployError)) as progress:
        try:
            report: dict[str, Any] = run(
                datagrams, nodes=nodes, fanout=fanout, rate=rate, base_port=base_port,
                seed=seed, progress=progress,
            )  # fmt: skip
        except PermissionError as exc:
            fail(
                f"capturing the cluster's traffic on loopback needs CAP_NET_RAW (run as root): "
                f"{exc.strerror or exc}",
                as_json,
            )
    write_report(report, as_json, out_path)
    s = report["summary"]
    if not as_json:
        out.print(
            f"{s['datagrams_sent']:,} hostile datagrams, {s['received']:,} received, "
            f"{s['dropped']:,} dropped, {s['accepted']} accepted; crashes {s['crashes']}, "
            f"views changed {len(s['views_changed'])}, counters match: {s['counters_match']}",
            highlight=False,
        )
        for kind, row in report["kinds"].items():
            reasons = ", ".join(f"{r} {n:,}" for r, n in row["by_reason"].items())
            out.print(f"  {kind:<10} {row['received']:>9,} received: {reasons}", highlight=False)
    if not s["ok"]:
        raise typer.Exit(EXIT_NOT_DONE)
