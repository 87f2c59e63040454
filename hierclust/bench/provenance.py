"""Where a measurement came from: the command line, the code, the machine and its load.

Every JSON document a benchmark writes carries a ``provenance`` object, so a figure copied into
the docs can be traced back and taken again::

    {"command": "hierclust bench --mode udp --nodes 1000 --kill leaf --out leaf.json",
     "commit": "e8d5b20c...", "dirty": false, "version": "0.1.0",
     "python": "3.11.2", "cpus": 2, "mem_gib": 23.5,
     "load_avg_1m": 0.41, "utc": "2026-12-03T11:52:07Z"}

``commit`` is the checkout's ``HEAD`` when hierclust runs from a git checkout (``null`` from an
installed wheel), read once per process: a measuring command reads it as it starts, so a tree
that moves on during a long run does not rename the run's commit. ``dirty`` says whether tracked
files differed from it: a figure taken on a dirty tree cannot be reproduced from its commit
alone, and the flag makes that visible rather than silent. The load average is read when the
document is written (the end of the run); a command that measures timings records its own load
samples beside them.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@cache
def checkout() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout hierclust runs from; ``(None, None)`` when it does
    not run from one (or git is missing)."""
    if not (PACKAGE_ROOT / ".git").exists():
        return None, None
    try:
        head = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as a user would type it again: ``hierclust ...`` for the entry point (whatever
    path it was started by), ``python bench/x.py ...`` for a script in the checkout."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return ""
    program = Path(args[0])
    if program.name in ("hierclust", "__main__.py") or args[0] == "-m":
        head = "hierclust"
    else:
        try:
            head = f"python {program.resolve().relative_to(PACKAGE_ROOT)}"
        except ValueError:
            head = f"python {args[0]}"
    return " ".join([head, *map(shlex.quote, args[1:])])


def memory_gib() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return round(pages / 2**30, 1)


def version() -> str | None:
    try:
        return metadata.version("hierclust")
    except metadata.PackageNotFoundError:
        return None


def provenance(command: str | None = None) -> dict[str, Any]:
    """The ``provenance`` object of a JSON document written now, by this process's command line
    unless ``command`` (as typed) is given."""
    commit, dirty = checkout()
    return {
        "command": command_line() if command is None else command,
        "commit": commit,
        "dirty": dirty,
        "version": version(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mem_gib": memory_gib(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def stamped(document: dict[str, Any], command: str | None = None) -> dict[str, Any]:
    """``document`` with its ``provenance`` (kept if it already has one: a figure re-written
    by another tool keeps where it came from)."""
    if "provenance" not in document:
        document = {**document, "provenance": provenance(command)}
    return document
