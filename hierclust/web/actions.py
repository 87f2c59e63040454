"""The operations the page may send when the server runs with ``--allow-admin``: the ones the
command line already has, sent to the workers' control sockets the way it sends them.

- ``kill NODE`` (``hierclust kill``: the node crashes in its worker), ``restart NODE``;
- ``drain TARGET``, ``maintenance TARGET``, ``resume TARGET`` (``hierclust drain`` and so on:
  one worker issues the admin notice);
- ``partition TARGET``, ``heal`` (``hierclust partition``/``heal``: every worker's transport
  filter).

TARGET is a group (its subtree), a node or a nodeset. Nothing else is accepted; without
``--allow-admin`` the server refuses every one of them before this module is reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hierclust.core.types import ACTIVE, DRAINED, MAINTENANCE
from hierclust.runtime.admin import rank_ranges
from hierclust.runtime.control import ControlError, request
from hierclust.runtime.deploy import control_sockets
from hierclust.topology import Topology
from hierclust.web.model import SearchError, nodeset_ranks

MODES = {"drain": DRAINED, "maintenance": MAINTENANCE, "resume": ACTIVE}
OPS = ("kill", "restart", "partition", "heal", *MODES)


class ActionError(ValueError):
    """A request the server refuses as bad input (400)."""


class ActionFailed(RuntimeError):
    """A well-formed request the cluster could not carry out now (409)."""


def target_ranks(topology: Topology, target: str) -> list[int]:
    if target in topology.groups:
        return list(topology.group(target).ranks)
    try:
        return nodeset_ranks(topology, target)
    except SearchError as exc:
        raise ActionError(str(exc)) from None


def perform(
    topology: Topology, snapshots: list[dict[str, Any]], state_dir: Path, body: Any
) -> dict[str, Any]:
    """Carry out ``body`` (``{"op": ..., "target": ...}``); blocking (control-socket calls)."""
    if not isinstance(body, dict):
        raise ActionError('expected a JSON object {"op": ..., "target": ...}')
    op = body.get("op")
    if op not in OPS:
        raise ActionError(f"op {op!r}: expected one of {', '.join(OPS)}")
    if op == "heal":
        return {"op": op, "workers": _broadcast(state_dir, {"op": "heal"})}
    target = body.get("target")
    if not isinstance(target, str) or not target.strip():
        raise ActionError(f"{op}: give a target (a node, a nodeset or a group)")
    ranks = target_ranks(topology, target.strip())
    if op == "partition":
        if len(ranks) == topology.num_nodes:
            raise ActionError(f"{target} is every node: nothing to cut it off from")
        sent = _broadcast(state_dir, {"op": "partition", "ranks": ranks})
        return {"op": op, "target": target, "nodes": len(ranks), "workers": sent}
    if op in MODES:
        answer = _first(snapshots, {"op": "admin", "mode": MODES[op], "ranges": rank_ranges(ranks)})
        return {"op": op, "target": target, "nodes": len(ranks), "issuer": answer.get("issuer")}
    if len(ranks) != 1:
        raise ActionError(f"{op} {target}: name one node ({len(ranks)} given)")
    rank = ranks[0]
    for snapshot in snapshots:
        entry = next((n for n in snapshot.get("nodes", []) if n.get("rank") == rank), None)
        if entry is None:
            continue
        if op == "kill" and not entry.get("running"):
            raise ActionFailed(f"{target} is not running: nothing to kill")
        if op == "restart" and entry.get("running"):
            raise ActionFailed(f"{target} is running; restart brings back a killed node")
        payload: dict[str, Any] = {"op": op, "rank": rank}
        try:
            request(Path(snapshot["socket"]), payload)
        except ControlError as exc:
            raise ActionFailed(f"{target}: {exc}") from None
        return {"op": op, "target": target}
    raise ActionFailed(f"{target}: no worker answering in {state_dir} runs it")


def _broadcast(state_dir: Path, payload: dict[str, Any]) -> int:
    sockets = control_sockets(state_dir)
    if not sockets:
        raise ActionFailed(f"{state_dir}: no worker answers here")
    for path in sockets:
        try:
            request(path, payload)
        except ControlError as exc:
            raise ActionFailed(str(exc)) from None
    return len(sockets)


def _first(snapshots: list[dict[str, Any]], payload: dict[str, Any]) -> dict[str, Any]:
    problems = []
    for snapshot in snapshots:
        try:
            return request(Path(snapshot["socket"]), payload)
        except ControlError as exc:
            problems.append(str(exc))
    raise ActionFailed(f"no worker could issue it: {'; '.join(problems) or 'none answers'}")
