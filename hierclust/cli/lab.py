"""Lab faults on a local deployment: ``kill``, ``pause``, ``restart``, ``partition``, ``heal``.

A fault that would change nothing is refused, not reported as done: killing or pausing a node
that is not running, restarting one that is, healing when nothing is partitioned. Refusals exit 1
(the command is understood, the cluster is not in a state where it applies); bad input (an unknown
node, group or nodeset) exits 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hierclust.cli.common import JsonFlag, command_group, emit_json, fail, out, plural, refuse
from hierclust.cli.statedir import StateDirOpt, broadcast, live
from hierclust.cli.targets import rank_of, target_ranks

app = command_group()

NodeArg = Annotated[str, typer.Argument(metavar="NODE", help="Node name.", show_default=False)]


def node_entry(
    snapshots: list[dict[str, Any]], rank: int, node: str, directory: Path, as_json: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The snapshot of the worker that runs ``rank`` and that node's entry in it; exit 1 when
    no worker answering in ``directory`` runs it."""
    for snapshot in snapshots:
        for entry in snapshot["nodes"]:
            if entry["rank"] == rank:
                return snapshot, entry
    refuse(
        f"{node} is not running: no worker answering in {directory} runs it (its process is "
        "gone, or it runs under another state directory)",
        as_json,
        node=node,
    )


def control(snapshot: dict[str, Any], payload: dict[str, Any], node: str, as_json: bool) -> Any:
    from hierclust.runtime.control import ControlError, request

    try:
        return request(Path(snapshot["socket"]), payload)
    except ControlError as exc:
        refuse(f"node {node}: {exc}", as_json, node=node)


@app.command("kill")
def kill(
    node: NodeArg,
    state_dir: StateDirOpt = None,
    power: Annotated[
        bool,
        typer.Option(
            "--power",
            help="As a power loss: the port stays bound and mute, so peers get no ICMP.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Crash a node now: socket closed, timers dropped.

    A node with a process of its own is sent SIGKILL. With --power, as a host losing power: the
    node stops but its port stays bound and answers nothing (no "port unreachable" for its
    peers) until `hierclust restart`. Exit 1 if the node is not running.
    """
    import os
    import signal

    directory, topology, snapshots, _ = live(state_dir, "kill", as_json)
    rank = rank_of(topology, node, as_json)
    worker, entry = node_entry(snapshots, rank, node, directory, as_json)
    if not entry.get("running"):
        why = entry.get("stop_reason") or "killed earlier"
        refuse(
            f"{node} is not running ({why}): nothing to kill; "
            f"`hierclust restart {node}` brings it back",
            as_json,
            node=node,
        )
    t_ns = time.monotonic_ns()
    if worker["ranks"] == [rank] and not power:
        try:
            os.kill(int(worker["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            refuse(f"{node} is not running: its process {worker['pid']} is gone", as_json)
        how = "sigkill"
    else:
        request = {"op": "kill", "rank": rank, "silent": power}
        t_ns = int(control(worker, request, node, as_json)["t_ns"])
        how = "power" if power else "crash"
    if as_json:
        emit_json({"node": node, "rank": rank, "how": how, "t_ns": t_ns})
    else:
        out.print(f"killed {node} ({how})", highlight=False)


@app.command("pause")
def pause(
    node: NodeArg,
    seconds: Annotated[
        float,
        typer.Argument(
            metavar="SECONDS", help="How long the node stalls.", min=0.0, show_default=False
        ),
    ],
    state_dir: StateDirOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Stall a node for SECONDS, like a long GC pause.

    It runs no timers and handles no datagram meanwhile. Exit 1 if the node is not running.
    """
    directory, topology, snapshots, _ = live(state_dir, "pause", as_json)
    rank = rank_of(topology, node, as_json)
    worker, entry = node_entry(snapshots, rank, node, directory, as_json)
    if not entry.get("running"):
        refuse(f"{node} is not running: a dead node cannot be paused", as_json, node=node)
    control(worker, {"op": "pause", "rank": rank, "seconds": seconds}, node, as_json)
    if as_json:
        emit_json({"node": node, "paused": True, "seconds": seconds})
    else:
        out.print(f"paused {node} for {seconds:g} s", highlight=False)


@app.command("restart")
def restart(
    node: NodeArg,
    wipe: Annotated[bool, typer.Option("--wipe", help="Lose its state file first.")] = False,
    state_dir: StateDirOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Bring a killed or failed node back, new incarnation.

    It runs again in its worker. A failed node is one that stopped on an error (status lists it
    with the reason).

    --wipe: as if it lost its disk. Exit 1 if the node is running (kill it first), has no
    worker left to run it (a node killed with SIGKILL: start its agent again), or stops on an
    error again as it starts (the reason is printed).
    """
    directory, topology, snapshots, _ = live(state_dir, "restart", as_json)
    rank = rank_of(topology, node, as_json)
    worker, entry = node_entry(snapshots, rank, node, directory, as_json)
    if entry.get("running"):
        refuse(
            f"{node} is running; restart brings back a killed or failed node: "
            f"`hierclust kill {node}` first",
            as_json,
            node=node,
        )
    control(worker, {"op": "restart", "rank": rank, "wipe": wipe}, node, as_json)
    if as_json:
        emit_json({"node": node, "restarted": True, "wipe": wipe})
    else:
        out.print(f"restarted {node}" + (" without its state file" if wipe else ""))


@app.command("partition")
def partition(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET", help="A group name or a nodeset (cn[01-04]).", show_default=False
        ),
    ],
    state_dir: StateDirOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Cut TARGET off from the rest of the cluster.

    An in-process filter in every worker's transport: no datagram crosses between TARGET and
    the other nodes until heal. A new partition replaces the previous one.
    """
    directory, topology, _, _ = live(state_dir, "partition", as_json)
    ranks = target_ranks(topology, target, as_json)
    if len(ranks) == topology.num_nodes:
        fail(f"{target} is every node of {topology.source}: nothing to cut it off from", as_json)
    broadcast(directory, {"op": "partition", "ranks": sorted(ranks)}, "partition", as_json)
    if as_json:
        emit_json({"partitioned": len(ranks), "target": target})
    else:
        out.print(f"isolated {plural(len(ranks), 'node')} ({target})", highlight=False)


@app.command("heal")
def heal(state_dir: StateDirOpt = None, as_json: JsonFlag = False) -> None:
    """Undo partition: every node talks to every node again.

    Exit 1 if nothing is partitioned.
    """
    directory, _, snapshots, _ = live(state_dir, "heal", as_json)
    if not any(s.get("partition") is not None for s in snapshots):
        refuse(f"{directory}: nothing is partitioned; nothing to heal", as_json)
    broadcast(directory, {"op": "heal"}, "heal", as_json)
    emit_json({"healed": True}) if as_json else out.print("healed")
