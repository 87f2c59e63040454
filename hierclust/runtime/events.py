"""The event bus: what nodes conclude (:class:`~hierclust.core.types.Emit`), for everyone to read.

In-process subscribers get each event as a :class:`EventRecord` as it happens; the bus also
appends one JSON object per line to its log file (all events except lease renewals, which would
otherwise be most of it). Every record carries ``t_ns`` from
``time.monotonic_ns()``: on one host all processes share that clock, so the demo can line up events
from many worker processes against the moment of a kill. Given the topology, a record about a
subtree (a :class:`~hierclust.core.types.Subtree` notice, ``SubtreeUnreachable``,
``SubtreeReachable``) also names it: ``group_name`` and ``nodes`` (a folded nodeset), so the log
reads without the topology at hand.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hierclust.core.types import (
    ADMIN_MODES,
    Admin,
    Alive,
    Failure,
    LeaseChanged,
    Subtree,
    SubtreeReachable,
    SubtreeUnreachable,
)
from hierclust.topology import Topology

_LOG = logging.getLogger("hierclust.runtime")

FAILED = "Failed"
"""The runtime event of a node that stopped on an error in its step or its effects (fail-stop);
the others are ``Booted``, ``Crashed`` (killed) and ``Stopped`` (a clean stop of its host)."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    t_ns: int
    rank: int
    node: str
    event: Any


def event_fields(event: Any, topology: Topology | None = None) -> dict[str, Any]:
    """A core event as flat JSON-ready fields: ``{"event": "NoticeLearned", ...}``; with
    ``topology``, a subtree is named too (``group_name``, ``nodes``)."""
    fields: dict[str, Any] = {"event": type(event).__name__}
    if dataclasses.is_dataclass(event):
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            if isinstance(value, Failure | Alive | Admin | Subtree):
                notice = dataclasses.asdict(value)
                notice["kind"] = notice_kind(value)
                if isinstance(value, Admin):
                    notice["mode"] = ADMIN_MODES[value.mode]
                elif isinstance(value, Subtree) and topology is not None:
                    notice.update(subtree_names(topology, value.group))
                fields[f.name] = notice
            else:
                fields[f.name] = value
        if isinstance(event, SubtreeUnreachable | SubtreeReachable) and topology is not None:
            fields.update(subtree_names(topology, event.group))
    else:
        fields["value"] = repr(event)
    return fields


def subtree_names(topology: Topology, group: int) -> dict[str, str]:
    """``{"group_name": "scotland", "nodes": "sc[01-05]"}`` for group index ``group``."""
    if not 0 <= group < len(topology.by_index):
        return {}
    g = topology.by_index[group]
    return {"group_name": g.name, "nodes": topology.hostlist(g)}


def notice_kind(notice: Failure | Alive | Admin | Subtree) -> str:
    """``failed`` (a fault), ``left`` (a planned departure: the node was in maintenance or
    drained), ``alive`` (back with a new incarnation), ``admin`` (an operator's mode change),
    ``unreachable`` (a subtree cut off from the rest of the tree) or ``reachable`` (back)."""
    if isinstance(notice, Failure):
        return "left" if notice.planned else "failed"
    if isinstance(notice, Subtree):
        return "reachable" if notice.reachable else "unreachable"
    return "alive" if isinstance(notice, Alive) else "admin"


def record_json(record: EventRecord, topology: Topology | None = None) -> dict[str, Any]:
    return {
        "t_ns": record.t_ns,
        "node": record.node,
        "rank": record.rank,
        **event_fields(record.event, topology),
    }


Subscriber = Callable[[EventRecord], None]


class EventBus:
    """Fan-out of node events to subscribers and to a JSON-lines file (line-buffered); with
    ``topology``, the file's records name the subtrees they are about.

    A line the file cannot take (a full or read-only disk) is lost and counted
    (``log_errors``, ``log_error``), never raised: the log is a record, and a node must not stop
    because its disk is full (the subscribers, ``status`` and the metrics still get
    everything). The first failure, and each new kind of failure, is logged."""

    def __init__(self, log_path: Path | None = None, topology: Topology | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self._topology = topology
        self._leases: dict[tuple[int, int], tuple[int, bool]] = {}
        self._log: IO[str] | None = None
        self.log_errors = 0
        self.log_error: str | None = None
        if log_path is not None:
            self._log = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, rank: int, node: str, event: Any, t_ns: int | None = None) -> None:
        record = EventRecord(time.monotonic_ns() if t_ns is None else t_ns, rank, node, event)
        if self._log is not None and self._worth_logging(rank, event):
            self._write(json.dumps(record_json(record, self._topology), separators=(",", ":")))
        for subscriber in tuple(self._subscribers):
            subscriber(record)

    def _worth_logging(self, rank: int, event: Any) -> bool:
        """Every event but lease *renewals*: a leader renews every few heartbeats, which would
        be most of the log (status shows the lease); taking, losing or a new term is logged."""
        if type(event) is not LeaseChanged:
            return True
        key = (rank, event.group)
        state = (event.term, event.held)
        if self._leases.get(key) == state:
            return False
        self._leases[key] = state
        return True

    def note(self, payload: dict[str, Any]) -> None:
        """A runtime (not core) event for the log, e.g. a kill: ``{"event": "Killed", ...}``."""
        if self._log is not None:
            line = {"t_ns": time.monotonic_ns(), **payload}
            self._write(json.dumps(line, separators=(",", ":")))

    def _write(self, line: str) -> None:
        log = self._log
        assert log is not None
        try:
            log.write(line + "\n")
        except OSError as exc:
            self.log_errors += 1
            problem = f"{getattr(log, 'name', 'the event log')}: {exc.strerror or exc}"
            if problem != self.log_error:
                self.log_error = problem
                _LOG.error("event log: %s; events are lost until it can be written", problem)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
