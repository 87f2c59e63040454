"""The disk tie-breaker: a lease record on shared storage, as a pure state machine.

The simulator (or the runtime, over a real file) hosts one :class:`LeaseDisk` per group and routes
the same :class:`TieVote` / :class:`TieRenew` messages to it that a witness would get (``Send`` to
``witness_id(group)``). Semantics of the record ``(term, holder, renewed)``: an acquire for a higher
term wins if the record is free, expired (not renewed for ``hold_ms``) or already ours; first come,
first served, fenced by term (a lower or equal term never takes it). Only the holder renews.
"""

from __future__ import annotations

from hierclust.core.messages import TieRenew, TieRenewAck, TieVote, TieVoteResp
from hierclust.core.timeouts import MS
from hierclust.core.types import Effect, Input, Received, Send


class LeaseDisk:
    __slots__ = ("group", "hold_ns", "term", "holder", "renewed_ns")

    def __init__(self, group: int, *, hold_ms: int = 800) -> None:
        self.group = group
        self.hold_ns = hold_ms * MS
        self.term = 0
        self.holder = -1
        self.renewed_ns = -(1 << 62)

    def _free_for(self, now: int, src: int) -> bool:
        return self.holder < 0 or self.holder == src or now - self.renewed_ns >= self.hold_ns

    def step(self, now: int, inp: Input) -> list[Effect]:
        if not isinstance(inp, Received):
            return []
        msg, src = inp.msg, inp.src
        if isinstance(msg, TieVote) and msg.group == self.group and msg.pre:
            would = msg.term > self.term and self._free_for(now, src)
            return [Send(src, TieVoteResp(self.group, msg.term, would, True))]
        if isinstance(msg, TieVote) and msg.group == self.group:
            granted = (msg.term == self.term and src == self.holder) or (
                msg.term > self.term and self._free_for(now, src)
            )
            if granted:
                self.term, self.holder, self.renewed_ns = msg.term, src, now
            return [Send(src, TieVoteResp(self.group, msg.term, granted, False))]
        if isinstance(msg, TieRenew) and msg.group == self.group:
            ok = (msg.term == self.term and src == self.holder) or (
                msg.term > self.term and self._free_for(now, src)
            )
            if ok:
                self.term, self.holder, self.renewed_ns = msg.term, src, now
            return [Send(src, TieRenewAck(self.group, msg.term, msg.stamp, ok))]
        return []
