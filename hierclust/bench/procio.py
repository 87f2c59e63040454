"""What the comparison benchmarks read from the other systems' processes: their log lines,
stamped on arrival, and their network namespace's counters. Shared by the Serf and Corosync
harnesses, which run daemons of their own and time them only from outside."""

from __future__ import annotations

import contextlib
import selectors
import threading
import time
from pathlib import Path
from typing import IO


def pump_lines(
    selector: selectors.BaseSelector, stopping: threading.Event, lock: threading.Lock
) -> None:
    """Until ``stopping`` is set: read every registered stream, split it into lines and hand
    each to ``key.data.log.feed(line, t_ns)`` under ``lock``, ``t_ns`` being the moment the
    chunk arrived (one monotonic clock for all processes; their own stamps are coarser). A
    stream that ends is unregistered; a partial last line waits for the rest."""
    partial: dict[int, bytes] = {}
    while not stopping.is_set():
        for key, _ in selector.select(timeout=0.1):
            t = time.monotonic_ns()
            stream: IO[bytes] = key.fileobj  # type: ignore[assignment]
            try:
                data = stream.read()
            except (OSError, ValueError):
                data = b""
            if not data:
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(stream)
                continue
            data = partial.pop(key.fd, b"") + data
            *lines, rest = data.split(b"\n")
            if rest:
                partial[key.fd] = rest
            with lock:
                for line in lines:
                    key.data.log.feed(line, t)


def namespace_counters(pid: int, interface: str) -> tuple[int, int] | None:
    """(UDP datagrams sent, bytes sent on ``interface``) in the network namespace of ``pid``;
    None when the process is gone."""
    try:
        snmp = Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        dev = Path(f"/proc/{pid}/net/dev").read_text().splitlines()
    except OSError:
        return None
    udp = [line.split() for line in snmp if line.startswith("Udp:")]
    if len(udp) < 2:
        return None
    datagrams = int(udp[1][udp[0].index("OutDatagrams")])
    sent = 0
    for line in dev:
        name, _, rest = line.partition(":")
        if name.strip() == interface:
            sent = int(rest.split()[8])  # transmit bytes
    return datagrams, sent
