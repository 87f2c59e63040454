"""The ``hierclust`` command line: one typer app built from one module per command family.

Thin: every command checks its input, calls into the package and prints. The families share
:mod:`hierclust.cli.common` (consoles, errors, JSON, options, topology files),
:mod:`hierclust.cli.statedir` (``--state-dir`` and live deployments) and
:mod:`hierclust.cli.targets` (node, group and nodeset arguments); no family imports another, and
nothing outside this package imports it.

Errors a user can cause print one line naming the file, key or node, and exit 2; a command that
is understood but cannot be carried out in the cluster's current state exits 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from hierclust import __version__
from hierclust.cli import (
    adapter,
    admin,
    bench,
    chaos,
    cluster,
    demo,
    lab,
    observe,
    sim,
    topology,
    web,
)
from hierclust.cli.common import command_group

app = command_group(
    help="hierclust: hierarchical cluster manager for large MPP installations.",
    no_args_is_help=True,
)


@app.callback(invoke_without_command=True)
def root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """hierclust: hierarchical cluster manager for large MPP installations.

    Every command takes --json for machines; bad input exits 2 with one line naming the file,
    key or node.
    """
    if version:
        print(__version__)
        raise typer.Exit(0)


app.add_typer(demo.app)
app.add_typer(topology.app, name="topology")
app.add_typer(sim.app, name="sim")
app.add_typer(cluster.app)
app.add_typer(observe.app)
app.add_typer(lab.app)
app.add_typer(chaos.app)
app.add_typer(admin.app)
app.add_typer(bench.app, name="bench")
app.add_typer(adapter.app, name="adapter")
app.add_typer(web.app)


def main() -> None:
    """Console-script entry point."""
    app()
