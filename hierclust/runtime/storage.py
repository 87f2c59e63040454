"""Storage faults: a node whose state file cannot be written stays up and votes for no one.

Theory of operation
-------------------
A node's durable state (incarnation, term and vote per group) is written before anything that
relies on it leaves the node (:class:`~hierclust.core.types.Persist` before the ``Send``). When
that write fails with an :class:`OSError` (a read-only or full state directory, a quota, lost
permissions, an I/O error), stopping the node would turn a disk problem into a membership
failure: its peers would declare it failed although it is alive and reachable. So the driver
keeps the node running but *cannot persist*:

- it drops the *promises* that follow the failed write (:func:`is_promise`): a granted
  ``VoteResp``, a ``RequestVote`` (it carries the candidate's own vote) and a tie-breaker's real
  vote request, and the events that announce them (``VoteGranted``, ``ElectionStarted``);
  everything else (acks, pings, notices, timers) is carried out, so the node stays
  a member and is not declared failed;
- it tells the core (:class:`~hierclust.core.types.Storage` ``(durable=False)``), which then
  refuses vote requests openly (a ``VoteResp`` not granted), gives up a candidacy in progress and
  stands for no election;
- later ``Persist`` effects are not written one by one: the newest state waits, and a *probe*
  writes it every :data:`PROBE_S` seconds. The first probe that succeeds makes that state durable
  (it holds every term and vote the core took meanwhile, so a vote it recorded but never sent
  only restricts it), ends the fault and tells the core ``Storage(durable=True)``.

Nothing the node says while the fault lasts relies on a term or a vote that is not on disk: the
core's memory may be ahead of its disk, but only promises made from memory would matter after a
restart, and those are the ones dropped. A restart during the fault reads the last durable state.

It says why: a log line, a :class:`StorageFault` event (and :class:`StorageRecovered`) on the
event bus and in the event log, the node's ``storage`` entry in its status snapshot, and
``storage_faults`` in ``hierclust status`` (a line under the tree; ``--json``: node -> reason).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from hierclust.core.messages import RequestVote, TieVote, VoteResp
from hierclust.core.types import ElectionStarted, VoteGranted

PROBE_S = 1.0
"""How often a node that cannot persist tries to write its state again."""


def is_promise(msg: Any) -> bool:
    """A message that relies on a durable vote: a granted vote, a vote request (the candidate's
    own vote), a tie-breaker vote request for a real election (not a pre-vote)."""
    kind = type(msg)
    if kind is VoteResp:
        return bool(msg.granted)
    if kind is RequestVote:
        return True
    if kind is TieVote:
        return not msg.pre
    return False


def is_promise_event(event: Any) -> bool:
    """An event that announces a durable vote or candidacy (``VoteGranted``,
    ``ElectionStarted``): not published for a promise that was dropped, so the event log never
    tells of a vote that did not happen."""
    kind = type(event)
    return kind is VoteGranted or kind is ElectionStarted


def error_name(exc: OSError) -> str:
    """``EROFS``, ``ENOSPC``... (the number when it has no name, ``OSError`` without one)."""
    if exc.errno is None:
        return type(exc).__name__
    return errno.errorcode.get(exc.errno, str(exc.errno))


def error_text(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class StorageFault:
    """Event: ``node`` cannot write its state to ``path`` (``error``, ``errno``); it votes for
    no one and stands for no election until a write succeeds."""

    path: str
    error: str
    errno: str


@dataclass(frozen=True, slots=True)
class StorageRecovered:
    """Event: ``node`` wrote its state to ``path`` again after ``after_ms`` of fault."""

    path: str
    after_ms: int


@dataclass(slots=True)
class FaultState:
    """What a driver keeps while its node cannot persist (what ``status`` shows)."""

    path: str
    error: str
    errno: str
    since_ns: int
    failed_writes: int = 1
    promises_dropped: int = 0

    def reason(self) -> str:
        return (
            f"cannot write {self.path}: {self.error} ({self.errno}); "
            "votes for no one and stands for no election until a write succeeds"
        )

    def as_json(self, now: int) -> dict[str, Any]:
        return {
            "durable": False,
            "path": self.path,
            "error": self.error,
            "errno": self.errno,
            "since_s": round((now - self.since_ns) / 1e9, 1),
            "failed_writes": self.failed_writes,
            "promises_dropped": self.promises_dropped,
            "reason": self.reason(),
        }
