"""Node, group and nodeset arguments (``dn07``, ``rack-a``, ``cn[01-04]``) turned into ranks, with
errors that say what is known instead: the groups, the nodes, the fix for a reversed range.
"""

from __future__ import annotations

import difflib

from hierclust.cli.common import fail
from hierclust.topology import Topology
from hierclust.topology.names import HostlistError, expand_nodeset

GROUPS_LISTED = 6
CLOSE_MATCH_LIMIT = 10_000
"""Above this many groups only the named (not generated) ones are searched for a close match."""


def parse_nodeset(text: str, what: str, as_json: bool) -> list[str]:
    """The names of a ClusterShell nodeset; exit 2 with a hint when it does not parse."""
    try:
        return expand_nodeset(text)
    except HostlistError as exc:
        fail(f"{what} {text}: {exc}", as_json, target=text)


def all_nodes(topology: Topology) -> str:
    """Every node of ``topology`` as one folded nodeset (``dn[01-63]``)."""
    from ClusterShell.NodeSet import NodeSet

    return str(NodeSet(topology.hostlist(topology.root)))


def known(topology: Topology, name: str) -> str:
    """A short list of what ``topology`` does have, for an error about ``name``: a close group
    name, the first groups (those named in the file before generated ones), the nodes."""
    named = [g.name for g in topology.by_index if not g.generated]
    groups = (named + [g.name for g in topology.by_index if g.generated])[:GROUPS_LISTED]
    listed = ", ".join(groups)
    if len(topology.by_index) > len(groups):
        listed += f" and {len(topology.by_index) - len(groups):,} more"
    candidates = list(topology.groups) if len(topology.groups) <= CLOSE_MATCH_LIMIT else named
    close = difflib.get_close_matches(name, candidates, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{hint}groups: {listed}; nodes: {all_nodes(topology)}"


def rank_of(topology: Topology, name: str, as_json: bool) -> int:
    """The rank of node ``name``; exit 2 naming the nodes there are when it is unknown."""
    found = topology.names.rank(name)
    if found is None:
        fail(
            f"{name}: no node of that name in {topology.source} (nodes: {all_nodes(topology)})",
            as_json,
            node=name,
        )
    return found


def target_ranks(topology: Topology, target: str, as_json: bool) -> set[int]:
    """The ranks of a group (its whole subtree), a node or a nodeset; exit 2 otherwise."""
    if target in topology.groups:
        return set(topology.group(target).ranks)
    names = parse_nodeset(target, "target", as_json)
    ranks: set[int] = set()
    for name in names:
        found = topology.names.rank(name)
        if found is None:
            what = "no group or node" if len(names) == 1 else "no node"
            fail(
                f"{name}: {what} of that name in {topology.source}; {known(topology, name)}",
                as_json,
                target=target,
            )
        ranks.add(found)
    return ranks
