"""The disk tie-breaker: a lease record on shared storage, as a pure state machine.

Theory of operation
-------------------
A group's lease is one record, :class:`LeaseRecord` ``(term, holder, renewals)``, on storage every
node of the group reaches. There is no daemon: a node that wants the tie-breaker's vote, or its
share of a lease, reads the record itself, decides with :func:`lease_request`, writes the new record
and only then takes the answer as its own. The runtime does this over a real file under a lock
(``hierclust/runtime/tiebreak.py``); the simulator and the core tests host a :class:`LeaseDisk` per
group, which holds the record.

The record holds no time: clocks of different hosts are never compared. Every write bumps
``renewals``, and the holder writes at every renewal. A reader judges by its own clock alone, as
SBD does with its slots: it remembers the last record it read and when it first read it
(:class:`LeaseWatch`), and the lease is free for it only when the record names no holder, names
the reader, or has stood still for ``hold_ms`` of the reader's clock since the reader first saw it.
A record is seen only after it was written, so a holder whose last renewal was written at time B
is not replaced before B + ``hold_ms`` (read on a clock that runs at about the rate of every
other): the promise a leader counts in its lease. The price is the takeover delay: a dead holder's
lease goes to someone else ``hold_ms`` after that reader's first look at it, at the earliest.

Requests are the witness's messages. A ``TieVote`` with ``pre`` only asks "would you?" and never
writes. A vote or renewal of the holder for its own term is granted (and written, as a renewal); a
vote or renewal for a higher term takes a free record; a lower or equal term never takes it from
its holder (fenced by term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hierclust.core.messages import TieRelease, TieRenew, TieRenewAck, TieVote, TieVoteResp
from hierclust.core.timeouts import MS
from hierclust.core.types import Effect, Input, Received, Send


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What the lease file holds. The default is the record of a file never written."""

    term: int = 0
    holder: int = -1
    renewals: int = 0


class LeaseWatch:
    """What one reader remembers of one group's lease record, on the reader's own clock."""

    __slots__ = ("seen", "since_ns")

    def __init__(self) -> None:
        self.seen: LeaseRecord | None = None
        self.since_ns = 0

    def look(self, now: int, record: LeaseRecord) -> int:
        """Note ``record`` as read at ``now``; how long it has stood still as this reader saw it
        (0 for a record it had not seen last time)."""
        if record != self.seen:
            self.seen = record
            self.since_ns = now
        return now - self.since_ns


def lease_request(
    record: LeaseRecord, watch: LeaseWatch, hold_ns: int, now: int, src: int, msg: object
) -> tuple[LeaseRecord, Send | None]:
    """``src`` asks ``msg`` of ``record``, which it read at ``now`` (its own clock), remembering
    earlier reads in ``watch``. Returns the record to write (``record`` itself when nothing
    changes) and the answer, which must not be acted on before that record is durable; no answer
    for a message that is not a lease request."""
    if isinstance(msg, TieRelease):
        # the holder handed its group over (its lease given up first): the record names nobody
        if msg.term == record.term and src == record.holder:
            written = LeaseRecord(record.term, -1, record.renewals + 1)
            watch.look(now, written)
            return written, None
        return record, None
    if not isinstance(msg, (TieVote, TieRenew)):
        return record, None
    still_ns = watch.look(now, record)
    free = record.holder < 0 or record.holder == src or still_ns >= hold_ns
    ours = msg.term == record.term and src == record.holder
    ok = ours or (msg.term > record.term and free)
    if isinstance(msg, TieVote):
        if msg.pre:
            would = msg.term > record.term and free
            return record, Send(src, TieVoteResp(msg.group, msg.term, would, True))
        answer = Send(src, TieVoteResp(msg.group, msg.term, ok, False))
    else:
        answer = Send(src, TieRenewAck(msg.group, msg.term, msg.stamp, ok))
    if not ok:
        return record, answer
    written = LeaseRecord(msg.term, src, record.renewals + 1)
    watch.look(now, written)  # a reader knows what it wrote
    return written, answer


class LeaseDisk:
    """One group's lease record and what each node remembers of it: the file, as the simulator
    and the core tests host it. ``step(now, Received(src, msg))`` takes ``now`` on the clock of
    ``src``, the node reading the record (``on_reader_clock``)."""

    __slots__ = ("group", "hold_ns", "record", "watches")
    on_reader_clock: ClassVar[bool] = True

    def __init__(self, group: int, *, hold_ms: int = 800) -> None:
        self.group = group
        self.hold_ns = hold_ms * MS
        self.record = LeaseRecord()
        self.watches: dict[int, LeaseWatch] = {}

    @property
    def term(self) -> int:
        return self.record.term

    @property
    def holder(self) -> int:
        return self.record.holder

    def step(self, now: int, inp: Input) -> list[Effect]:
        if not isinstance(inp, Received) or getattr(inp.msg, "group", None) != self.group:
            return []
        watch = self.watches.get(inp.src)
        if watch is None:
            watch = self.watches[inp.src] = LeaseWatch()
        self.record, answer = lease_request(self.record, watch, self.hold_ns, now, inp.src, inp.msg)
        return [] if answer is None else [answer]
