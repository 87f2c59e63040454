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
        where = f"{one_line(source)}: {one_line(key)}" if key else one_line(source)
        super().__init__(f"{where}: {one_line(message)}")


def one_line(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x1b``...): a key of a
    TOML file may be any quoted string, newlines and terminal escapes included, and an error
    about it must stay one line that cannot rewrite the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
