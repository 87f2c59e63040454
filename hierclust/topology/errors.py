"""Errors and warnings a topology file can produce, each naming the file and the key."""

from __future__ import annotations


class TopologyError(ValueError):
    """A topology file (or generator input) that cannot be used.

    ``str()`` is one line: ``FILE: KEY: what is wrong; what is expected``.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")
