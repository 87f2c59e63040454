"""``hierclust sim`` (one kill in the deterministic simulator) and ``hierclust sim fuzz``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hierclust.cli.common import (
    FanoutOpt,
    JsonFlag,
    NodesOpt,
    TopologyOpt,
    command_group,
    err,
    fail,
    out,
    progress_bar,
    topology_from_options,
    write_report,
)

app = command_group()

KillOpt = Annotated[
    str, typer.Option("--kill", help="The victim: leaf, leader, root-leader, or a node name.")
]


@app.callback(invoke_without_command=True)
def sim(
    ctx: typer.Context,
    topology_file: TopologyOpt = None,
    nodes: NodesOpt = None,
    fanout: FanoutOpt = None,
    kill: KillOpt = "leaf",
    seed: Annotated[int, typer.Option("--seed", help="Seed: same seed, same report.")] = 1,
    loss: Annotated[
        float, typer.Option("--loss", min=0.0, max=0.9, help="Datagram loss probability.")
    ] = 0.0,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0.0, help="One-way base latency, ms.")
    ] = 0.2,
    jitter_ms: Annotated[
        float, typer.Option("--jitter-ms", min=0.0, help="Extra random latency, 0 to this, ms.")
    ] = 0.3,
    after_ms: Annotated[
        int, typer.Option("--after-ms", min=100, help="Virtual time simulated after the kill, ms.")
    ] = 3000,
    planned: Annotated[
        bool,
        typer.Option(
            "--planned",
            help="Put the victim into maintenance first (it hands over what it leads, "
            "reported under sim.planned), then stop it: a planned departure.",
        ),
    ] = False,
    slow: Annotated[
        float,
        typer.Option(
            "--slow",
            min=0.0,
            help="A starved CPU: every node's processing cost times this (0: none; 1: about "
            "this project's reference box; 2: half the CPU the agents need). Nodes share "
            "hosts of --per-host ranks, one serial event loop each (docs/simulator.md).",
        ),
    ] = 0.0,
    per_host: Annotated[
        int, typer.Option("--per-host", min=1, help="With --slow: nodes per host process.")
    ] = 1000,
    boot_limit_ms: Annotated[
        int,
        typer.Option(
            "--boot-limit-ms", min=100, help="Virtual time allowed for every group to be led."
        ),
    ] = 10_000,
    as_json: JsonFlag = False,
) -> None:
    """Simulate the protocol: one kill, or fuzzing (sim fuzz).

    Without a subcommand: boot a topology in the simulator (the real protocol core in virtual
    time), kill one node and report (the schema is in docs/architecture.md §5). The same seed
    gives the same report.
    """
    if ctx.invoked_subcommand is not None:
        return
    from hierclust.sim.scenario import KillPlan, ScenarioError, run_kill

    topology = topology_from_options(topology_file, nodes, fanout, as_json)
    plan = KillPlan(
        kill=kill, seed=seed, loss=loss, latency_ms=latency_ms, jitter_ms=jitter_ms,
        after_ms=after_ms, planned=planned, slow=slow, per_host=per_host,
        boot_limit_ms=boot_limit_ms,
    )  # fmt: skip
    with progress_bar(f"sim {topology.num_nodes:,} nodes") as bar:
        task = bar.add_task("booting", total=1.0)

        def advance(now_ns: int, total_ns: int, phase: str) -> None:
            bar.update(task, completed=min(1.0, now_ns / total_ns), description=phase)

        try:
            report = run_kill(topology, plan, progress=advance)
        except ScenarioError as exc:
            fail(f"{topology.source}: {exc}", as_json)
    if as_json:
        write_report(report, True, None)
        return
    print_report(report)


def print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"{report['mode']}: kill {report['victim']} ({report['victim_role']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if isinstance(value, dict):
            continue
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)
    violations = report.get("sim", {}).get("violations", [])
    for violation in violations:
        err.print(f"[red]violation:[/] {violation}", highlight=False)


@app.command("fuzz")
def fuzz(
    schedules: Annotated[int, typer.Option("--schedules", min=1, help="How many schedules.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="First seed; schedule i uses seed+i.")] = 1,
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            help="Node count of every schedule (default: drawn per schedule).",
            show_default=False,
        ),
    ] = None,
    fanout: Annotated[
        int | None,
        typer.Option(
            "--fanout",
            help="Group size of every schedule, 2..64 (default: drawn per schedule).",
            show_default=False,
        ),
    ] = None,
    load: Annotated[
        float,
        typer.Option(
            "--load",
            min=0.0,
            max=10.0,
            help="Run every schedule on two lagging hosts whose settled work is this share of "
            "their CPU (0: no CPU model; see hierclust sim --slow).",
        ),
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Random swarm fault schedules: safety and liveness checked.

    Safety is checked during the faults, liveness after healing; exit 1 if any schedule fails,
    with the command that reproduces it.
    """
    from hierclust.sim.fuzz import fuzz as run_fuzz

    if fanout is not None and not 2 <= fanout <= 64:
        fail(f"--fanout: expected 2..64, got {fanout}", as_json)
    with progress_bar("fuzz") as bar:
        task = bar.add_task("schedules", total=schedules)
        result = run_fuzz(
            schedules, seed, nodes=nodes, fanout=fanout, load=load,
            progress=lambda done, _total: bar.update(task, completed=done),
        )  # fmt: skip
    if as_json:
        write_report(result, True, None)
    else:
        out.print(
            f"{result['schedules']} schedules: {result['violations']} safety violations, "
            f"{result['liveness_failures']} liveness failures"
        )
        for failure, command in zip(result["failures"], result["reproduce"], strict=False):
            err.print(
                f"[red]seed {failure['seed']}[/]: {failure['violations'] + failure['liveness']}"
            )
            err.print(f"  faults: {'; '.join(failure['faults'])}")
            err.print(f"  reproduce: {command}")
    if result["failed_seeds"]:
        raise typer.Exit(1)
