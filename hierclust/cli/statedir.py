"""``--state-dir``: which deployment a command acts on, and what it says when that directory
holds none (naming the state directories where hierclust does run on this host).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hierclust.cli.common import fail, load_or_fail
from hierclust.runtime.discover import default_state_dir, live_elsewhere
from hierclust.topology import Topology

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Deployment state directory (default: $HIERCLUST_STATE_DIR, else /tmp/hierclust-UID).",
        show_default=False,
    ),
]


def elsewhere(state_dir: Path, command: str) -> tuple[str, list[str]]:
    """A hint naming the other state directories with live hierclust processes, and their
    list (for ``--json``)."""
    others = live_elsewhere(state_dir)
    if not others:
        return "no hierclust worker or agent runs on this host", []
    if len(others) == 1:
        return (
            f"hierclust runs in {others[0]}: `hierclust {command} --state-dir {others[0]}`",
            others,
        )
    listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    return f"hierclust runs in {listed} (pick one with --state-dir)", others


def not_here(state_dir: Path, why: str, command: str, as_json: bool) -> None:
    """Exit 2: ``state_dir`` holds no live deployment (``why``), and where hierclust does run."""
    hint, others = elsewhere(state_dir, command)
    fail(f"{state_dir}: {why}; {hint}", as_json, state_dir=str(state_dir), live_state_dirs=others)


def resolve(state_dir: Path | None, command: str, as_json: bool, must_exist: bool = True) -> Path:
    """The state directory a command acts on: the option, else the default; exit 2 when it is a
    file, or (``must_exist``) when it does not exist."""
    directory = state_dir if state_dir is not None else default_state_dir()
    if directory.exists() and not directory.is_dir():
        fail(
            f"{directory}: is a file; expected a state directory (the --state-dir given to "
            "deploy or agent)",
            as_json,
            state_dir=str(directory),
        )
    if must_exist and not directory.is_dir():
        not_here(directory, "no such state directory", command, as_json)
    return directory


def live(
    state_dir: Path | None, command: str, as_json: bool
) -> tuple[Path, Topology, list[dict[str, Any]], list[str]]:
    """The state directory, its topology and the status snapshots of every worker (deploy or
    agent) answering there, with the errors of those that do not; exit 2 when none answers."""
    from hierclust.runtime.deploy import collect

    directory = resolve(state_dir, command, as_json)
    snapshots, errors = collect(directory)
    if not snapshots:
        why = f" ({errors[0]})" if errors else ""
        not_here(directory, f"no worker answers here{why}", command, as_json)
    topology = load_or_fail(Path(snapshots[0]["topology"]), as_json)
    return directory, topology, snapshots, errors


def broadcast(directory: Path, payload: dict[str, Any], command: str, as_json: bool) -> None:
    """Send ``payload`` to every worker's control socket in ``directory``; exit 2 if one fails."""
    from hierclust.runtime.control import ControlError, request
    from hierclust.runtime.deploy import control_sockets

    sockets = control_sockets(directory)
    if not sockets:
        not_here(directory, "no worker answers here", command, as_json)
    for path in sockets:
        try:
            request(path, payload)
        except ControlError as exc:
            fail(str(exc), as_json)
