"""Errors and warnings a topology file can produce, each naming the file and the key."""

from __future__ import annotations

from hierclust.errors import FileKeyError


class TopologyError(FileKeyError):
    """A topology file (or generator input) that cannot be used."""
