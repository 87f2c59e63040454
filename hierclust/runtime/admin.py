"""Per-subtree administration: ``hierclust maintenance on|off``, ``drain`` and ``resume``.

The operator names groups or nodesets; one running node of the deployment issues an
:class:`~hierclust.core.types.Admin` notice per contiguous rank range and the tree carries it to
every node (like a failure notice), so the command works from any host that can reach one agent.
A node in maintenance or drained hands the groups it leads to an active member, stands for
election only after every active member, and its departure is reported as ``left``, not
``failed``. Quorum does not change: :func:`quorum_warnings` says which groups would lose it should
all of their targeted members go down.

:func:`progress` reads status snapshots to tell when a change has taken effect: every running
target reports the new mode, and no target in maintenance or drained still leads a leaf group that
has a running active member to take over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hierclust.core.types import ACTIVE, ADMIN_MODES, MAINTENANCE
from hierclust.runtime.status import admin_modes
from hierclust.topology import Topology

_PHRASE = {
    mode: ("in " if mode == MAINTENANCE else "") + name for mode, name in enumerate(ADMIN_MODES)
}


def rank_ranges(ranks: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ranks as ``(first, count)`` runs: ``{1, 2, 3, 7}`` -> ``[(1, 3), (7, 1)]``."""
    runs: list[tuple[int, int]] = []
    for rank in sorted(set(ranks)):
        if runs and runs[-1][0] + runs[-1][1] == rank:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((rank, 1))
    return runs


def quorum_warnings(topology: Topology, ranks: set[int], mode: int) -> list[str]:
    """Leaf groups whose targeted members are so many that, should they all go down, the group
    loses its quorum (only for maintenance and drain)."""
    if mode == ACTIVE:
        return []
    warnings = []
    seen: set[int] = set()
    for rank in sorted(ranks):
        leaf = topology.leaf_of(rank)
        if leaf.index in seen:
            continue
        seen.add(leaf.index)
        targeted = sum(1 for r in leaf.ranks if r in ranks)
        remaining = leaf.votes - targeted
        if remaining < leaf.quorum:
            warnings.append(
                f"group {leaf.name}: {targeted} of {leaf.size} members {_PHRASE[mode]}; should "
                f"they all go down, the group loses its quorum ({leaf.quorum} of {leaf.votes} "
                "votes needed)"
            )
    return warnings


def progress(
    topology: Topology, snapshots: list[dict[str, Any]], ranks: set[int], mode: int
) -> dict[str, Any]:
    """Where a mode change stands: ``pending`` targets (running, not yet in ``mode``) and
    ``still_leading`` (target, leaf group) pairs that an active running member could take."""
    nodes = {int(n["rank"]): n for snap in snapshots for n in snap.get("nodes", [])}
    running = {r for r, n in nodes.items() if n.get("running")}
    name = ADMIN_MODES[mode]
    pending = sorted(r for r in ranks & running if nodes[r].get("mode") != name)
    still: list[tuple[int, str]] = []
    if mode != ACTIVE:
        modes = admin_modes(snapshots)
        for r in sorted(ranks & running):
            leaf = topology.leaf_of(r)
            leads = any(
                g["group"] == leaf.index and g["leading"] and g["lease"]
                for g in nodes[r].get("groups", [])
            )
            if leads and any(
                m in running and m not in ranks and modes.get(m, ACTIVE) == ACTIVE
                for m in leaf.ranks
            ):
                still.append((r, leaf.name))
    return {"pending": pending, "still_leading": still, "done": not pending and not still}


def leaders(snapshots: list[dict[str, Any]]) -> dict[int, int]:
    """Group index -> the running node leading it with a valid lease."""
    found: dict[int, int] = {}
    for snap in snapshots:
        for n in snap.get("nodes", []):
            for g in n.get("groups", []):
                if g["leading"] and g["lease"]:
                    found[int(g["group"])] = int(n["rank"])
    return found
