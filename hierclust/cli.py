"""The ``hierclust`` command line. Thin: every command calls into the package and prints.

Errors a user can cause print one line naming the file and key, and exit with code 2.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from hierclust import __version__
from hierclust.topology import Topology, TopologyError, generate_document, load

app = typer.Typer(
    help="hierclust: hierarchical cluster manager for large MPP installations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topology_app = typer.Typer(help="Validate, show and generate topology files.", no_args_is_help=True)
app.add_typer(topology_app, name="topology")
sim_app = typer.Typer(
    help="Simulate the protocol deterministically: one kill (default) or fuzzing (sim fuzz)."
)
app.add_typer(sim_app, name="sim")

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def default_topology_path() -> Path:
    """The embedded default topology (the same file as topologies/demo.toml)."""
    return Path(str(resources.files("hierclust") / "data" / "demo.toml"))


def fail(message: str, as_json: bool = False, **fields: Any) -> NoReturn:
    """Report a usage or input error: one line, exit code 2."""
    if as_json:
        print(json.dumps({"error": message, **fields}))
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def load_or_fail(path: Path, as_json: bool = False) -> Topology:
    try:
        return load(path)
    except TopologyError as exc:
        fail(str(exc), as_json, file=exc.source, key=exc.key)


def emit_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2))


def print_warnings(topology: Topology) -> None:
    for warning in topology.warnings:
        err.print(f"[yellow]warning:[/] {topology.source}: {warning}", highlight=False)


def summary_table(topology: Topology) -> Table:
    table = Table(title=f"{topology.name} ({topology.source})", show_header=True)
    table.add_column("tier", justify="right")
    table.add_column("groups", justify="right")
    table.add_column("largest group", justify="right")
    for tier, count in enumerate(topology.tiers()):
        largest = max(g.size for g in topology.by_index if g.tier == tier)
        table.add_row(str(tier), f"{count:,}", str(largest))
    table.caption = (
        f"{topology.num_nodes:,} nodes, {len(topology.by_index):,} groups, depth {topology.depth}"
    )
    return table


@app.callback(invoke_without_command=True)
def root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        print(__version__)
        raise typer.Exit(0)


@topology_app.command("validate")
def topology_validate(
    file: Annotated[Path, typer.Argument(help="Topology file (.toml).")],
    as_json: JsonFlag = False,
) -> None:
    """Check a topology file; print its size, tiers and warnings."""
    topology = load_or_fail(file, as_json)
    if as_json:
        emit_json(topology.summary())
        return
    print_warnings(topology)
    out.print(summary_table(topology))
    out.print(f"[green]ok[/] {file}")


@topology_app.command("show")
def topology_show(
    file: Annotated[Path, typer.Argument(help="Topology file (.toml).")],
    png: Annotated[
        Path | None, typer.Option("--png", help="Also draw the tree to this PNG file.")
    ] = None,
    max_children: Annotated[
        int, typer.Option("--max-children", min=1, help="Children shown per group before folding.")
    ] = 6,
    as_json: JsonFlag = False,
) -> None:
    """Show the group tree (folded beyond --max-children per group)."""
    from hierclust.topology.draw import rich_tree, save_png, tree_json

    topology = load_or_fail(file, as_json)
    drawn = save_png(topology, png) if png is not None else None
    if as_json:
        payload = {**topology.summary(), "tree": tree_json(topology, topology.root, max_children)}
        if png is not None:
            payload["png"] = str(png)
            payload["png_groups"] = drawn
        emit_json(payload)
        return
    print_warnings(topology)
    out.print(rich_tree(topology, max_children=max_children))
    out.print(summary_table(topology))
    if png is not None:
        out.print(f"wrote {png} ({drawn} groups drawn)")


@topology_app.command("generate")
def topology_generate(
    nodes: Annotated[int, typer.Option("--nodes", help="Number of nodes.")],
    fanout: Annotated[int, typer.Option("--fanout", help="Group size (2..64).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="File to write ('-' for stdout).")
    ] = Path("-"),
    base_port: Annotated[
        int | None, typer.Option("--base-port", help="First UDP port; one port per node.")
    ] = None,
    hosts: Annotated[
        str | None,
        typer.Option("--hosts", help="Spread nodes over these hosts (hostlist, e.g. h[01-16])."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Cluster and root group name.")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Node name prefix.")] = "cn",
    as_json: JsonFlag = False,
) -> None:
    """Write a compact topology: one hostlist range and a fan-out, grouped into tiers."""
    import tomli_w

    from hierclust.topology import from_dict

    started = time.perf_counter()
    try:
        document = generate_document(
            nodes, fanout, name=name, prefix=prefix, base_port=base_port, hosts=hosts
        )
        # Validate what we are about to write, so a generated file always loads.
        topology = from_dict(document, source=str(output))
    except TopologyError as exc:
        fail(str(exc), as_json, file=exc.source, key=exc.key)
    command = f"hierclust topology generate --nodes {nodes} --fanout {fanout}"
    text = f"# Written by `{command}`; edit freely.\n" + tomli_w.dumps(document)
    if str(output) == "-":
        if as_json:
            fail("--json needs -o FILE (the topology itself goes to stdout otherwise)", True)
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{output}: cannot write: {exc.strerror}", as_json, file=str(output), key="")
    elapsed = time.perf_counter() - started
    summary = {**topology.summary(), "file": str(output), "seconds": round(elapsed, 3)}
    if as_json:
        emit_json(summary)
        return
    out.print(
        f"wrote {output}: {topology.num_nodes:,} nodes, {len(topology.by_index):,} groups, "
        f"depth {topology.depth} ({elapsed:.2f} s)"
    )


@app.command("demo")
def demo(
    topology_file: Annotated[
        Path | None,
        typer.Option("--topology", help="Topology file; default: the embedded demo topology."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The main job: deploy the topology on 127.0.0.1, kill a leaf and a tier-1 leader, report."""
    from hierclust.runtime.cli import demo_command

    demo_command(topology_file or default_topology_path(), as_json)


def topology_from_options(
    topology_file: Path | None, nodes: int | None, fanout: int | None, as_json: bool
) -> Topology:
    """``--topology FILE`` or ``--nodes N --fanout K`` (a generated topology), exactly one."""
    from hierclust.topology import from_dict

    if topology_file is not None:
        if nodes is not None or fanout is not None:
            fail("give either --topology FILE or --nodes N --fanout K, not both", as_json)
        return load_or_fail(topology_file, as_json)
    if nodes is None or fanout is None:
        fail("give --topology FILE, or --nodes N with --fanout K", as_json)
    try:
        return from_dict(generate_document(nodes, fanout), source=f"--nodes {nodes}")
    except TopologyError as exc:
        fail(str(exc), as_json, file=exc.source, key=exc.key)


def progress_bar(label: str) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


@sim_app.callback(invoke_without_command=True)
def sim(
    ctx: typer.Context,
    topology_file: Annotated[
        Path | None, typer.Option("--topology", help="Topology file (.toml).")
    ] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", help="Generate N nodes...")] = None,
    fanout: Annotated[int | None, typer.Option("--fanout", help="...in groups of K.")] = None,
    kill: Annotated[
        str, typer.Option("--kill", help="leaf, leader, root-leader, or a node name.")
    ] = "leaf",
    seed: Annotated[int, typer.Option("--seed", help="Seed: same seed, same report.")] = 1,
    loss: Annotated[
        float, typer.Option("--loss", min=0.0, max=0.9, help="Datagram loss probability.")
    ] = 0.0,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0.0, help="One-way base latency.")
    ] = 0.2,
    jitter_ms: Annotated[
        float, typer.Option("--jitter-ms", min=0.0, help="Extra random latency, 0..X.")
    ] = 0.3,
    after_ms: Annotated[
        int, typer.Option("--after-ms", min=100, help="Virtual time simulated after the kill.")
    ] = 3000,
    planned: Annotated[
        bool,
        typer.Option(
            "--planned",
            help="Put the victim into maintenance first (it hands over what it leads, "
            "reported under sim.planned), then stop it: a planned departure.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Boot a topology in the simulator, kill one node, report (DESIGN §5 schema)."""
    if ctx.invoked_subcommand is not None:
        return
    from hierclust.sim.scenario import KillPlan, ScenarioError, run_kill

    topology = topology_from_options(topology_file, nodes, fanout, as_json)
    plan = KillPlan(
        kill=kill, seed=seed, loss=loss, latency_ms=latency_ms, jitter_ms=jitter_ms,
        after_ms=after_ms, planned=planned,
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
        emit_json(report)
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


@sim_app.command("fuzz")
def sim_fuzz(
    schedules: Annotated[int, typer.Option("--schedules", min=1, help="How many schedules.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="First seed; schedule i uses seed+i.")] = 1,
    nodes: Annotated[int | None, typer.Option("--nodes", help="Fix the node count.")] = None,
    fanout: Annotated[int | None, typer.Option("--fanout", help="Fix the fan-out.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Random swarm fault schedules: safety during faults, liveness after healing."""
    from hierclust.sim.fuzz import fuzz

    if fanout is not None and not 2 <= fanout <= 64:
        fail(f"--fanout: expected 2..64, got {fanout}", as_json)
    with progress_bar("fuzz") as bar:
        task = bar.add_task("schedules", total=schedules)
        result = fuzz(
            schedules, seed, nodes=nodes, fanout=fanout,
            progress=lambda done, _total: bar.update(task, completed=done),
        )  # fmt: skip
    if as_json:
        emit_json(result)
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


__import__("hierclust.runtime.cli", fromlist=["register"]).register(app)
__import__("hierclust.bench.cli", fromlist=["register"]).register(app)


def main() -> None:
    """Console-script entry point."""
    app()
