"""Generate compact topology documents: a hostlist range and a fan-out, not a line per node.

Generated groups are odd-sized (``sizes = "odd"``): no even split can leave both halves of a
group without quorum. With an even number of nodes one group must be even (odd sizes add up to an
odd total only in an odd number of groups), and the chunking makes that the top group, which then
gets a witness tie-breaker on the port just below the nodes' (on the first host with ``hosts``),
so a generated file loads without warnings.
"""

from __future__ import annotations

from typing import Any

from hierclust.topology.errors import TopologyError
from hierclust.topology.loader import chunk_spans
from hierclust.topology.names import NodeNames, parse_hostlist
from hierclust.tuning import MAX_GROUP_SIZE, MAX_TIER_DEPTH


def generate_document(
    nodes: int,
    fanout: int,
    *,
    name: str | None = None,
    prefix: str = "cn",
    base_port: int | None = None,
    hosts: str | None = None,
    sizes: str = "odd",
) -> dict[str, Any]:
    """A topology document (ready for ``tomli_w``) of ``nodes`` nodes in groups of at most
    ``fanout``; ``sizes``: "odd" (see the module docstring) or "balanced" (the fewest groups,
    sizes within one, no tie-breaker added)."""
    source = "generate"
    if nodes < 1:
        raise TopologyError(source, "--nodes", f"expected at least 1 node, got {nodes}")
    if not 2 <= fanout <= MAX_GROUP_SIZE:
        raise TopologyError(source, "--fanout", f"expected 2..{MAX_GROUP_SIZE}, got {fanout}")
    if fanout**MAX_TIER_DEPTH < nodes:
        raise TopologyError(
            source,
            "--fanout",
            f"{nodes:,} nodes at fan-out {fanout} need more than {MAX_TIER_DEPTH} tiers; "
            "raise --fanout",
        )
    if prefix and prefix[-1].isdigit():
        raise TopologyError(source, "--prefix", "must not end in a digit (the node number follows)")
    cluster = name or f"hc{nodes}"
    width = len(str(nodes))
    first, last = str(1).zfill(width), str(nodes).zfill(width)
    group: dict[str, Any] = {
        "nodes": f"{prefix}[{first}-{last}]" if nodes > 1 else f"{prefix}{first}",
        "fanout": fanout,
    }
    if sizes == "odd":
        group["sizes"] = "odd"
        if top_size(nodes, fanout, odd=True) % 2 == 0:
            group["tiebreaker"] = _witness(base_port, hosts)
    document: dict[str, Any] = {"cluster": {"name": cluster}}
    if base_port is not None or hosts is not None:
        addresses: dict[str, Any] = {"base_port": base_port if base_port is not None else 7000}
        if hosts is not None:
            addresses["hosts"] = hosts
        document["addresses"] = addresses
    document["group"] = {cluster: group}
    return document


def top_size(nodes: int, fanout: int, *, odd: bool) -> int:
    """How many members (nodes or slots) the top group of a generated subtree has."""
    count = nodes
    while True:
        spans = chunk_spans(0, count, fanout, odd=odd)
        if len(spans) == 1:
            return count
        count = len(spans)


def _witness(base_port: int | None, hosts: str | None) -> dict[str, str]:
    host = "127.0.0.1"
    if hosts is not None:
        names = NodeNames()
        names.extend(parse_hostlist(hosts))
        host = names[0]
    port = (7000 if base_port is None else base_port) - 1
    return {"kind": "witness", "address": f"{host}:{port}"}
