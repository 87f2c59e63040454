"""``hierclust bench api``: the library API's event latency (what an embedding scheduler waits).

Kept apart from :mod:`hierclust.cli.bench` (the failure-propagation benchmarks), which registers
these commands on its ``bench`` group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hierclust.cli.common import (
    EXIT_INTERRUPTED,
    JsonFlag,
    err,
    fail,
    out,
    output_file,
    progress_bar,
    terminate_as_interrupt,
)


def api(
    nodes: Annotated[int, typer.Option("--nodes", min=4, help="Nodes deployed.")] = 64,
    fanout: Annotated[int, typer.Option("--fanout", min=2, max=64, help="Group size.")] = 8,
    subscribers: Annotated[
        int, typer.Option("--subscribers", min=1, help="Client subscribers (one per node).")
    ] = 16,
    kills: Annotated[int, typer.Option("--kills", min=1, help="Rounds: one kill each.")] = 5,
    base_port: Annotated[int, typer.Option("--base-port", help="First UDP port.")] = 21000,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="Write the JSON document to this file.", show_default=False),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """API event latency: from a node learning to its subscriber.

    Deploys NODES on 127.0.0.1, subscribes with hierclust.api.Client to SUBSCRIBERS nodes from
    this process, kills a node per round and measures each NodeFailed's delivery.
    """
    from hierclust.bench.api_latency import run
    from hierclust.runtime.errors import DeployError

    if out_path is not None:
        output_file(out_path, "a JSON file", as_json)
    if subscribers >= nodes:
        fail(f"--subscribers {subscribers}: must be below --nodes {nodes}", as_json)
    with terminate_as_interrupt(), progress_bar("api latency") as bar:
        task = bar.add_task("deploying", total=kills)

        def progress(phase: str, done: float, total: float) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        try:
            report: dict[str, Any] = run(
                nodes, fanout, subscribers=subscribers, kills=kills, base_port=base_port,
                progress=progress,
            )  # fmt: skip
        except DeployError as exc:
            fail(str(exc), as_json)
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: every process this run started was stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    text = json.dumps(report, indent=2)
    if out_path is not None:
        out_path.write_text(text + "\n", encoding="utf-8")
    if as_json:
        print(text)
        return
    s = report["summary"]
    out.print(
        f"{s['deliveries']} deliveries: latency p50 {s['latency_ms_p50']:.2f} ms, "
        f"p99 {s['latency_ms_p99']:.2f} ms, max {s['latency_ms_max']:.2f} ms "
        f"(the nodes learned within {s['notified_ms_max']:.0f} ms of the kill)",
        highlight=False,
    )
