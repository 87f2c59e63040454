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
    """The main job on the embedded default topology (for now: validate and show it)."""
    path = topology_file or default_topology_path()
    if as_json:
        topology_show(path, None, 6, True)
        return
    out.rule(f"hierclust {__version__}: demo topology")
    topology_show(path, None, 4, False)
    out.print(
        "Next: deploying these agents on 127.0.0.1 and killing nodes arrives with the runtime "
        "(see README, 'Status')."
    )


def main() -> None:
    """Console-script entry point."""
    app()
