"""The one shape of error a user can cause with a file: ``FILE: KEY: what is wrong; expected``."""

from __future__ import annotations


class FileKeyError(ValueError):
    """Bad input found in a file (or in arguments standing in for one).

    ``str()`` is one line naming the file and the key path, so the CLI prints it and exits 2.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")
