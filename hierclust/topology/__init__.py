"""Topology files: load, validate and generate the tree of groups (pure, no I/O beyond reading)."""

from hierclust.topology.errors import TopologyError
from hierclust.topology.generate import generate_document
from hierclust.topology.loader import from_dict, load, loads
from hierclust.topology.model import Address, Addressing, Group, TieBreaker, Topology

__all__ = [
    "Address",
    "Addressing",
    "Group",
    "TieBreaker",
    "Topology",
    "TopologyError",
    "from_dict",
    "generate_document",
    "load",
    "loads",
]
