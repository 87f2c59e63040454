"""The runtime's one wall clock, with a fault-injection offset for labs.

The protocol reads the wall clock for upper-tier terms and operator commands (hybrid logical
clocks, docs/architecture.md §4 Time), and the runtime for incarnations and first sequence
numbers at boot. Every such read goes through :func:`wall_ns`.

A lab cannot step one host's wall clock on its own: Linux time namespaces cover the monotonic
and boot clocks, never ``CLOCK_REALTIME``, so every namespace of a box reads the same wall
clock. To test what a host whose clock is stepped (``date -s``, a bad NTP server) does to the
protocol, a process started with ``HIERCLUST_WALL_OFFSET_FILE=PATH`` adds the integer number of
nanoseconds that ``PATH`` holds to every wall-clock read (0 when the file is missing or not a
number). The file is read again whenever it changes (its modification time and size are looked
at on each read, once per heartbeat in a host), so writing a new value is a clock step on that
host: the host's lag monitor sees the wall clock move against the monotonic clock and tells its
nodes (a :class:`~hierclust.core.types.WallClock` input), as for a real step. The monotonic
clock, on which every lease and timeout is judged, is untouched. Unset (the normal case), a read
is ``time.time_ns()`` and costs one environment lookup at import.
"""

from __future__ import annotations

import os
import time

OFFSET_FILE_ENV = "HIERCLUST_WALL_OFFSET_FILE"
"""The environment variable naming the fault-injection offset file (see the module doc)."""

_PATH = os.environ.get(OFFSET_FILE_ENV) or None
_cache: tuple[tuple[int, int], int] | None = None  # ((mtime_ns, size), offset_ns)


def injected_offset_ns() -> int:
    """The offset that :data:`OFFSET_FILE_ENV`'s file holds now (0 when unset or unreadable)."""
    global _cache
    if _PATH is None:
        return 0
    try:
        st = os.stat(_PATH)
    except OSError:
        return 0
    key = (st.st_mtime_ns, st.st_size)
    if _cache is not None and _cache[0] == key:
        return _cache[1]
    try:
        with open(_PATH, encoding="ascii") as f:
            offset = int(f.read().strip() or "0")
    except (OSError, ValueError):
        offset = 0
    _cache = (key, offset)
    return offset


def wall_ns() -> int:
    """This host's wall clock in ns since the epoch (plus the injected offset, if any)."""
    if _PATH is None:
        return time.time_ns()
    return time.time_ns() + injected_offset_ns()
