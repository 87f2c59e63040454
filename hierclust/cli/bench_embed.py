"""``hierclust bench api``: the library API's event latency (what an embedding scheduler waits);
``hierclust bench scheduler``: how long a crashed node holds its work in a scheduler.

Kept apart from :mod:`hierclust.cli.bench` (the failure-propagation benchmarks), which registers
these commands on its ``bench`` group.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

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


def api(
    nodes: Annotated[int, typer.Option("--nodes", min=4, help="Nodes deployed.")] = 64,
    fanout: Annotated[int, typer.Option("--fanout", min=2, max=64, help="Group size.")] = 8,
    subscribers: Annotated[
        int, typer.Option("--subscribers", min=1, help="Client subscribers (one per node).")
    ] = 16,
    kills: Annotated[int, typer.Option("--kills", min=1, help="Rounds: one kill each.")] = 5,
    base_port: Annotated[int, typer.Option("--base-port", help="First UDP port.")] = 21000,
    out_path: OutOpt = None,
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
    with measuring("api latency", kills, as_json, (DeployError,)) as progress:
        report: dict[str, Any] = run(
            nodes, fanout, subscribers=subscribers, kills=kills, base_port=base_port,
            progress=progress,
        )  # fmt: skip
    write_report(report, as_json, out_path)
    if as_json:
        return
    s = report["summary"]
    out.print(
        f"{s['deliveries']} deliveries: latency p50 {s['latency_ms_p50']:.2f} ms, "
        f"p99 {s['latency_ms_p99']:.2f} ms, max {s['latency_ms_max']:.2f} ms "
        f"(the nodes learned within {s['notified_ms_max']:.0f} ms of the kill)",
        highlight=False,
    )


def scheduler(
    slurm: Annotated[
        bool, typer.Option("--slurm", help="Benchmark Slurm (alone / with the adapter).")
    ] = False,
    dask: Annotated[
        bool, typer.Option("--dask", help="Benchmark Dask (alone / with the adapter).")
    ] = False,
    nodes: Annotated[
        int, typer.Option("--nodes", min=3, help="Nodes of the scheduler and of hierclust.")
    ] = 16,
    slurmd_timeout: Annotated[
        int, typer.Option("--slurmd-timeout", min=1, help="slurm: SlurmdTimeout in seconds.")
    ] = 300,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Crashes per case.")] = 1,
    crash: Annotated[
        str | None,
        typer.Option(
            "--crash",
            help="slurm: cut (the node's lab host cut off: a power loss; root) or kill "
            "(its processes killed on 127.0.0.1). Default: cut where possible.",
            show_default=False,
        ),
    ] = None,
    victim: Annotated[
        str,
        typer.Option(
            "--victim",
            help="slurm, with hierclust: member (a node not leading the root; the adapter on the "
            "root leader) or root-leader (it, and its adapter: adapters on the root group's "
            "members take over).",
        ),
    ] = "member",
    out_path: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """A node crashes under Slurm or Dask: how soon its work moves.

    Each scheduler alone, then with hierclust's adapter.

    --slurm: a real Slurm (Debian's slurmctld, slurmd, munge) of N nodes runs one requeueable
    job on half of them; a node running one crashes. down_ms: until scontrol shows it DOWN;
    requeued_ms: until its job runs again elsewhere. Slurm alone waits for SlurmdTimeout; with
    hierclust, `hierclust adapter slurm` marks it DOWN when hierclust declares it failed.
    """
    if slurm == dask:
        fail("give exactly one of --slurm or --dask", as_json)
    if crash is not None and (dask or crash not in ("cut", "kill")):
        fail(f"--crash {crash}: expected cut or kill, and only with --slurm", as_json)
    if victim not in ("member", "root-leader"):
        fail(f"--victim {victim}: expected member or root-leader", as_json)
    if out_path is not None:
        output_file(out_path, "a file for the JSON document", as_json)
    console = err if as_json else out
    with measuring("scheduler", None, as_json) as step:

        def progress(text: str) -> None:
            step(text)
            if not err.is_terminal:
                console.print(text, highlight=False)

        if slurm:
            from hierclust.bench.sched_slurm import run as run_slurm
            from hierclust.bench.slurmlab import SlurmLabError, install_hint, missing_programs

            if missing_programs():
                fail(f"missing {', '.join(missing_programs())}: {install_hint()}", as_json)
            try:
                result = run_slurm(
                    nodes, slurmd_timeout=slurmd_timeout, repeats=repeats,
                    progress=progress, crash=crash, victim=victim,
                )  # fmt: skip
            except ValueError as exc:
                fail(str(exc), as_json)
            except SlurmLabError as exc:
                refuse(f"the run failed: {exc}", as_json)
        else:
            from hierclust.bench.sched_dask import run as run_dask

            def dask_progress(done: int, runs: int, phase: str) -> None:
                progress(f"{phase} (run {done} of {runs})")

            result = run_dask(nodes, repeats=repeats, progress=dask_progress)
    for case in ("alone", "with_hierclust"):
        part = result.get(case, {})
        figures = ", ".join(
            f"{k} {part[k]:,.0f}" for k in ("down_ms", "requeued_ms") if part.get(k) is not None
        )
        console.print(f"{result.get('scheduler')} {case}: {figures or part}", highlight=False)
    write_report(result, as_json, out_path)
