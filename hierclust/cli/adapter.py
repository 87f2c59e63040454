"""``hierclust adapter slurm``: feed this host's view of the cluster to Slurm.

Thin: the adapter is :mod:`hierclust.adapters.slurm`. Run it on every host that runs a node (as
a service next to the agent); only the one whose node leads the root group acts, the others wait
to take over. Every command it runs (or, with ``--dry-run``, would run) is printed: one line of
text, or one JSON object per line with ``--json``. Notes about its role (acting, waiting) go to
stderr.

Exit codes: 2 for what must be fixed first (no deployment at ``--state-dir``, an unknown
``--node``, no ``scontrol``, no Slurm configuration, a bad ``--map``); 1 when the node's worker
goes away while the adapter runs; 130 on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from hierclust.cli.common import (
    EXIT_INTERRUPTED,
    JsonFlag,
    command_group,
    err,
    fail,
    refuse,
    terminate_as_interrupt,
)
from hierclust.cli.statedir import StateDirOpt, resolve

app = command_group(help="Adapters that feed hierclust's failures into job schedulers.")

NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        help="The local node to watch (default: the one leading the root group if it runs here, "
        "else one running here).",
        show_default=False,
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the scontrol commands instead of running them."),
]
OnceOpt = Annotated[
    bool,
    typer.Option("--once", help="Reconcile once (if this node leads the root) and exit."),
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="Slurm NodeName of hierclust nodes, HC=SLURM nodesets paired in order, e.g. "
        "'cn[01-16]=nid[001-016]' (repeatable; default: the same names).",
        show_default=False,
    ),
]
ResyncOpt = Annotated[
    float,
    typer.Option("--resync", help="Seconds between full reconciles while acting.", min=1.0),
]


@app.command("slurm")
def slurm(
    state_dir: StateDirOpt = None,
    node: NodeOpt = None,
    dry_run: DryRunOpt = False,
    once: OnceOpt = False,
    map_rules: MapOpt = None,
    resync_s: ResyncOpt = 30.0,
    as_json: JsonFlag = False,
) -> None:
    """Tell Slurm within seconds: failed nodes DOWN, drained, resumed.

    \b
    NodeFailed, SubtreeUnreachable  scontrol update NodeName=HOSTS State=DOWN Reason=TEXT
    NodeLeft (planned)              scontrol update NodeName=HOSTS State=DRAIN Reason=TEXT
    NodeAlive                       scontrol update NodeName=HOSTS State=RESUME
    Only the adapter whose node leads the root group acts; a node an operator took out of
    service (a reason not starting with "hierclust:") is never touched. Slurm's configuration
    comes from SLURM_CONF (else /etc/slurm/slurm.conf).
    """
    from hierclust.adapters.slurm import Record, Scontrol, SlurmAdapter, slurm_conf_problem
    from hierclust.adapters.slurm_plan import NameMapError, NodeNames
    from hierclust.api import Client, ConnectionLost, NoDeployment, UnknownNode

    directory = resolve(state_dir, "adapter slurm", as_json)
    problem = slurm_conf_problem()
    if problem is not None:
        fail(problem, as_json)
    try:
        names = NodeNames.parse(map_rules or [])
    except NameMapError as exc:
        fail(f"--map {exc}", as_json)

    def report(record: Record) -> None:
        if as_json:
            print(json.dumps(record.as_dict()), flush=True)
            return
        argv = shlex.join(["scontrol", *record.command.args()])
        status = "would run" if record.dry_run else ("ran" if record.ok else "FAILED")
        tail = f": {record.error}" if record.error else ""
        print(f"{status} ({record.why}): {argv}{tail}", flush=True)

    def note(line: str) -> None:
        err.print(line, highlight=False, soft_wrap=True)

    async def main() -> None:
        client = Client(state_dir=Path(directory), node=node)
        try:
            await client.connect()
            if node is None:
                client = await root_leader_here(client)
        except (NoDeployment, UnknownNode) as exc:
            fail(str(exc), as_json)
        for rule_node in names.mapping:
            if client.topology.names.rank(rule_node) is None:
                fail(f"--map: {rule_node} is not a node of {client.topology.source}", as_json)
        adapter = SlurmAdapter(
            client, Scontrol(dry_run=dry_run), names, resync_s=resync_s, report=report, note=note
        )
        await adapter.run(once=once)

    async def root_leader_here(client: Client) -> Client:
        """Where one host runs several nodes (a local deploy): the one leading the root group,
        if it runs here, else ``client`` as it is."""
        root = client.topology.root.name
        for member in await client.members():
            if root in member.leads and member.name != client.node:
                other = Client(state_dir=Path(directory), node=member.name)
                try:
                    await other.connect()
                except UnknownNode:
                    return client
                return other
        return client

    with terminate_as_interrupt():
        try:
            asyncio.run(main())
        except ConnectionLost as exc:
            refuse(f"{exc}", as_json)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
