"""Durable per-node state: the incarnation and the votes, one small JSON file per node.

A vote is persisted before the reply that grants it leaves the node (the core orders the effects;
the driver blocks on :func:`save_state` before carrying out the next one). The write is atomic:
temp file in the same directory, fsync, rename over the old file, fsync the directory, so a crash
at any instant leaves either the old state or the new one, never a torn file.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from hierclust.core.state import PersistentState

STATE_VERSION = 1
MAX_STATE_FILE_BYTES = 1 << 20


STATE_DIR_MODE = 0o700
"""A state directory hierclust creates is its owner's alone: it holds the control sockets (which
can kill, restart and partition nodes), the generated keyring and the nodes' votes."""


def make_state_dir(path: Path) -> Path:
    """Create the state directory ``path`` (and its parents) if it is missing, mode 0700 set
    explicitly (the umask could only narrow it); a directory that exists is left as it is (an
    operator may have set it up on purpose, e.g. /var/lib/hierclust)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)
        os.chmod(path, STATE_DIR_MODE)
    return path


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StateDirError(OSError):
    """The state directory cannot be used at all (read-only, not ours, no free inodes);
    ``str()`` names it and the fix."""


def check_state_dir(directory: Path) -> str | None:
    """Before an agent starts in ``directory``: create a file there and write one byte.

    Files cannot be created (read-only file system, permissions, no free inodes):
    :class:`StateDirError`, naming the directory and the fix. The agent keeps its control
    socket, pid file and event log there, so it could not even be seen or stopped; a
    read-only state directory at start is a mistake of set-up (a wrong mount, a wrong owner)
    that only an operator can fix, and a node that refuses to start says so at once.

    Files can be created but not written (the file system is full, or the quota used up): a
    warning (returned). The nodes start, and cannot persist until space is freed: they vote for
    no one and stand for no election, but stay members (see :mod:`hierclust.runtime.storage`),
    and recover by themselves when a write succeeds, as when the disk fills while they run.
    """
    probe = directory / f".hierclust-probe-{os.getpid()}"
    fix = (
        "the agent keeps its control socket, event log and votes there: remount it read-write "
        "or make it writable by this user, or pass --state-dir on a writable file system"
    )
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise StateDirError(f"{directory}: cannot create files ({exc.strerror}); {fix}") from None
    try:
        os.write(fd, b"\n")
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            return (
                f"{directory}: {exc.strerror}: the nodes start but cannot write their votes; "
                "they vote for no one and stand for no election until space is freed there"
            )
        raise StateDirError(f"{directory}: cannot write files ({exc.strerror}); {fix}") from None
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    return None


class StateFileError(ValueError):
    """A state file that exists but cannot be used; ``str()`` names the file and the problem."""


def state_to_json(state: PersistentState) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "incarnation": state.incarnation,
        "votes": [list(v) for v in state.votes],
    }


def state_from_json(data: Any, source: str) -> PersistentState:
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateFileError(f"{source}: version: expected {STATE_VERSION}")
    inc = data.get("incarnation")
    if type(inc) is not int or inc < 0:
        raise StateFileError(f"{source}: incarnation: expected a whole number >= 0, got {inc!r}")
    votes = data.get("votes")
    if not isinstance(votes, list):
        raise StateFileError(f"{source}: votes: expected a list of [group, term, voted_for]")
    parsed: list[tuple[int, int, int]] = []
    for i, vote in enumerate(votes):
        if not (isinstance(vote, list) and len(vote) == 3 and all(type(x) is int for x in vote)):
            raise StateFileError(f"{source}: votes[{i}]: expected [group, term, voted_for]")
        parsed.append((vote[0], vote[1], vote[2]))
    return PersistentState(inc, tuple(parsed))


def load_state(path: Path) -> PersistentState | None:
    """The state in ``path``, or None when there is no file (first boot or lost state)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_STATE_FILE_BYTES:
        raise StateFileError(f"{path}: larger than {MAX_STATE_FILE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateFileError(f"{path}: not JSON: {exc}") from None
    return state_from_json(data, str(path))


def save_state(path: Path, state: PersistentState) -> None:
    """Write ``state`` to ``path`` atomically and durably (temp, fsync, rename, fsync dir)."""
    payload = json.dumps(state_to_json(state), separators=(",", ":")).encode()
    write_atomic(path, payload)


def write_atomic(path: Path, payload: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
