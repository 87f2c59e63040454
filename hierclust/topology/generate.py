"""Generate compact topology documents: a hostlist range and a fan-out, not a line per node."""

from __future__ import annotations

from typing import Any

from hierclust.topology.errors import TopologyError
from hierclust.tuning import MAX_GROUP_SIZE, MAX_TIER_DEPTH


def generate_document(
    nodes: int,
    fanout: int,
    *,
    name: str | None = None,
    prefix: str = "cn",
    base_port: int | None = None,
    hosts: str | None = None,
) -> dict[str, Any]:
    """A topology document (ready for ``tomli_w``) of ``nodes`` nodes in groups of ``fanout``."""
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
    document: dict[str, Any] = {"cluster": {"name": cluster}}
    if base_port is not None or hosts is not None:
        addresses: dict[str, Any] = {"base_port": base_port if base_port is not None else 7000}
        if hosts is not None:
            addresses["hosts"] = hosts
        document["addresses"] = addresses
    document["group"] = {cluster: group}
    return document
