"""``hierclust topology validate|show|generate``: topology files, nothing running."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hierclust.cli.common import (
    DEFAULT_FANOUT,
    JsonFlag,
    command_group,
    emit_json,
    fail,
    load_or_fail,
    out,
    output_file,
    print_warnings,
)
from hierclust.topology import Topology, TopologyError, generate_document

app = command_group(help="Validate, show and generate topology files.", no_args_is_help=True)

FileArg = Annotated[
    Path, typer.Argument(metavar="FILE", help="Topology file (.toml).", show_default=False)
]


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


@app.command("validate")
def validate(file: FileArg, as_json: JsonFlag = False) -> None:
    """Check a topology file; print its size, tiers and warnings."""
    topology = load_or_fail(file, as_json)
    if as_json:
        emit_json(topology.summary())
        return
    print_warnings(topology)
    out.print(summary_table(topology))
    out.print(f"[green]ok[/] {file}")


@app.command("show")
def show(
    file: FileArg,
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Also draw the tree to this PNG file.", show_default=False),
    ] = None,
    max_children: Annotated[
        int, typer.Option("--max-children", min=1, help="Children shown per group before folding.")
    ] = 6,
    as_json: JsonFlag = False,
) -> None:
    """Show the group tree, folded beyond --max-children per group."""
    from hierclust.topology.draw import rich_tree, save_png, tree_json

    topology = load_or_fail(file, as_json)
    if png is not None:
        output_file(png, "a PNG file to draw the tree in", as_json)
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


@app.command("generate")
def generate(
    nodes: Annotated[int, typer.Option("--nodes", help="Number of nodes.", show_default=False)],
    fanout: Annotated[int, typer.Option("--fanout", help="Group size, 2..64.")] = DEFAULT_FANOUT,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="File to write ('-': stdout).")
    ] = Path("-"),
    base_port: Annotated[
        int | None,
        typer.Option(
            "--base-port",
            help="First UDP port, one per node (default: no addresses; 7000 with --hosts).",
            show_default=False,
        ),
    ] = None,
    hosts: Annotated[
        str | None,
        typer.Option(
            "--hosts",
            help="Spread nodes over these hosts (a hostlist, e.g. h[01-16]).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Cluster and root group name (default: hcN for N nodes).",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Node name prefix.")] = "cn",
    as_json: JsonFlag = False,
) -> None:
    """Write a compact topology of N nodes in groups of K.

    One hostlist range and a fan-out, grouped into tiers: a million nodes take a few lines.
    """
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
    output_file(output, "a file to write the topology to", as_json)
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
