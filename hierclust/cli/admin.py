"""Planned work on a subtree: ``maintenance on|off``, ``drain``, ``resume`` (the admin notices and
their hand-overs are :mod:`hierclust.runtime.admin`'s; this module issues and watches)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hierclust.cli.common import (
    EXIT_NOT_DONE,
    JsonFlag,
    command_group,
    emit_json,
    fail,
    out,
    plural,
    refuse,
    warn,
)
from hierclust.cli.statedir import StateDirOpt, live
from hierclust.cli.targets import target_ranks
from hierclust.core.types import ACTIVE, ADMIN_MODES, DRAINED, MAINTENANCE

app = command_group()

TargetsArg = Annotated[
    list[str],
    typer.Argument(
        metavar="TARGETS",
        help="Group names or nodesets (cn[01-04]); several allowed.",
        show_default=False,
    ),
]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0.0,
        help="Seconds to wait until every target is in the new mode and has handed over what it "
        "led (0: do not wait).",
    ),
]


@app.command("maintenance")
def maintenance(
    switch: Annotated[
        str,
        typer.Argument(
            metavar="on|off", help="on: planned work starts; off: it is over.", show_default=False
        ),
    ],
    targets: TargetsArg,
    wait: WaitOpt = 10.0,
    state_dir: StateDirOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Put TARGETS into maintenance (on) or back to active (off).

    Their leadership moves to active members, and their going down is reported as 'left', not
    'failed'. Exit 1 if a running target has not taken the mode within --wait.
    """
    if switch not in ("on", "off"):
        fail(f"maintenance {switch}: expected 'on' or 'off'", as_json)
    admin_command(MAINTENANCE if switch == "on" else ACTIVE, targets, wait, state_dir, as_json)


@app.command("drain")
def drain(
    targets: TargetsArg,
    wait: WaitOpt = 10.0,
    state_dir: StateDirOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Drain TARGETS: they hand over what they lead.

    Drained nodes stand for election only when no active member can, and may then be stopped
    without a failure report. Exit 1 if a running target has not taken the mode within --wait.
    """
    admin_command(DRAINED, targets, wait, state_dir, as_json)


@app.command("resume")
def resume(
    targets: TargetsArg,
    wait: WaitOpt = 10.0,
    state_dir: StateDirOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Return TARGETS to active service.

    Undoes drain and maintenance. Exit 1 if a running target has not taken the mode within
    --wait.
    """
    admin_command(ACTIVE, targets, wait, state_dir, as_json)


def admin_command(
    mode: int, targets: list[str], wait_s: float, state_dir: Path | None, as_json: bool
) -> None:
    """Issue an admin mode change through one worker, then watch it take effect."""
    from hierclust.runtime.admin import leaders, progress, quorum_warnings, rank_ranges
    from hierclust.runtime.control import ControlError, request
    from hierclust.runtime.deploy import collect

    command = ADMIN_MODES[mode] if mode != ACTIVE else "resume"
    directory, topology, snapshots, _ = live(state_dir, command, as_json)
    ranks: set[int] = set()
    for target in targets:
        ranks |= target_ranks(topology, target, as_json)
    warnings = quorum_warnings(topology, ranks, mode)
    if not as_json:
        for warning in warnings:
            warn(warning)
    before = leaders(snapshots)
    t0 = time.monotonic()
    issuer: int | None = None
    problems: list[str] = []
    for snapshot in snapshots:
        try:
            answer = request(
                Path(snapshot["socket"]),
                {"op": "admin", "mode": mode, "ranges": rank_ranges(ranks)},
            )
        except ControlError as exc:
            problems.append(str(exc))
            continue
        issuer = int(answer["issuer"])
        break
    if issuer is None:
        refuse(f"no worker could issue the command: {'; '.join(problems)}", as_json)
    # not checked yet (with --wait 0 it stays so: the snapshots above predate the command)
    state: dict[str, Any] = {"pending": [], "still_leading": [], "done": False}
    while time.monotonic() - t0 < wait_s:
        time.sleep(0.1)
        snapshots, _ = collect(directory)
        state = progress(topology, snapshots, ranks, mode)
        if state["done"]:
            break
    after = leaders(snapshots)
    names = topology.node_name
    handed = [
        {"group": topology.by_index[g].name, "from": names(r), "to": names(after[g])}
        for g, r in sorted(before.items())
        if r in ranks and g in after and after[g] != r
    ]
    result: dict[str, Any] = {
        "mode": ADMIN_MODES[mode],
        "targets": targets,
        "nodes": len(ranks),
        "issuer": names(issuer),
        "applied": bool(state["done"]),
        "waited_s": round(time.monotonic() - t0, 3) if wait_s > 0 else 0.0,
        "pending": [names(r) for r in state["pending"]],
        "still_leading": [{"node": names(r), "group": g} for r, g in state["still_leading"]],
        "handed_over": handed,
        "warnings": warnings,
    }
    if as_json:
        emit_json(result)
    else:
        out.print(
            f"{ADMIN_MODES[mode]}: {plural(len(ranks), 'node')} ({', '.join(targets)}), issued by "
            f"{result['issuer']}",
            highlight=False,
            markup=False,
        )
        for h in handed:
            out.print(f"  {h['group']}: leadership {h['from']} -> {h['to']}", markup=False)
        if wait_s > 0 and state["done"]:
            out.print(f"  in effect after {result['waited_s']:.1f} s")
        elif wait_s > 0:
            if state["pending"]:
                out.print(f"  not yet in effect on: {', '.join(result['pending'])}", markup=False)
            for entry in result["still_leading"]:
                out.print(f"  {entry['node']} still leads {entry['group']}", markup=False)
    if wait_s > 0 and state["pending"]:
        raise typer.Exit(EXIT_NOT_DONE)
