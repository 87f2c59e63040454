"""The witness tie-breaker: a tiny daemon holding one extra vote per group, as a pure state machine.

Theory of operation
-------------------
Candidates that are one vote short of a majority ask with :class:`TieVote` (``side`` = votes they
hold). The witness collects requests for ``window_ms`` and then grants its vote to one of them:
the larger side first, ties to the lowest node id (ffsplit). It grants at most one candidate per
term and never goes back to a lower term. A leader that won with (or without) the witness renews
its share of the lease with :class:`TieRenew`; while the holder renewed within ``hold_ms`` the
witness refuses everyone else, which is what lets the witness count toward the leader's lease. A
holder that hands its group over (maintenance, drain) gave its lease up first and then sends
:class:`TieRelease`: the successor gets the vote at once instead of after the hold.

Durability is the host's job, with two rules (``WitnessServer`` in the runtime follows them):

- :meth:`Witness.durable` (``term``, ``holder``) must be on disk before any ``Send`` of the step
  that changed it leaves. If the write fails, :meth:`Witness.rollback` to what
  :meth:`Witness.saved` returned before the step, and send nothing of that step: every answer the
  witness ever gave is then backed by its file, and the file's ``term`` is the highest term it
  granted or accepted a renewal for.
- A restarted witness is built with :meth:`Witness.restore`: its holder keeps a full ``hold_ms``
  from the restart (the witness cannot know when the holder last renewed, and the holder's lease
  counts on that promise).
"""

from __future__ import annotations

from typing import ClassVar

from hierclust.core.messages import TieRelease, TieRenew, TieRenewAck, TieVote, TieVoteResp
from hierclust.core.timeouts import MS
from hierclust.core.types import Effect, Input, Received, Send, SetTimer, TimerFired

Saved = tuple[int, int, int]
"""What :meth:`Witness.rollback` needs: ``(term, holder, renewed_ns)``."""


class Witness:
    __slots__ = ("group", "window_ns", "hold_ns", "term", "holder", "renewed_ns", "requests")
    on_reader_clock: ClassVar[bool] = False  # stepped on the witness host's clock, not the asker's

    def __init__(self, group: int, *, window_ms: int = 20, hold_ms: int = 800) -> None:
        self.group = group
        self.window_ns = window_ms * MS
        self.hold_ns = hold_ms * MS
        self.term = 0
        self.holder = -1
        self.renewed_ns = -(1 << 62)
        self.requests: list[tuple[int, int, int]] = []  # (term, side, candidate)

    # -- durability (the host's side of it) -------------------------------------------------------
    def durable(self) -> tuple[int, int]:
        """``(term, holder)``: what the host writes before it sends the answers of a step."""
        return self.term, self.holder

    def saved(self) -> Saved:
        return self.term, self.holder, self.renewed_ns

    def rollback(self, saved: Saved) -> None:
        """Back to the state before a step whose write failed. Requests that step consumed stay
        consumed: nobody got an answer, and candidates ask again in their next round."""
        self.term, self.holder, self.renewed_ns = saved

    def restore(self, now: int, term: int, holder: int) -> None:
        """Start from the state on disk; a holder keeps its hold for ``hold_ms`` from ``now``."""
        self.term, self.holder = term, holder
        self.renewed_ns = now if holder >= 0 else -(1 << 62)
        self.requests = []

    # -- the protocol -----------------------------------------------------------------------------
    def step(self, now: int, inp: Input) -> list[Effect]:
        out: list[Effect] = []
        if isinstance(inp, Received):
            msg = inp.msg
            if isinstance(msg, TieVote) and msg.group == self.group:
                self._on_vote(now, inp.src, msg, out)
            elif isinstance(msg, TieRenew) and msg.group == self.group:
                ok = self._renew(now, inp.src, msg.term)
                out.append(Send(inp.src, TieRenewAck(self.group, msg.term, msg.stamp, ok)))
            elif isinstance(msg, TieRelease) and msg.group == self.group:
                self._release(inp.src, msg.term)
        elif isinstance(inp, TimerFired) and inp.key == ("w", self.group):
            self._decide(now, out)
        return out

    def _held_by_other(self, now: int, src: int) -> bool:
        return self.holder >= 0 and self.holder != src and now - self.renewed_ns < self.hold_ns

    def _on_vote(self, now: int, src: int, msg: TieVote, out: list[Effect]) -> None:
        if msg.pre:
            would = msg.term > self.term and not self._held_by_other(now, src)
            out.append(Send(src, TieVoteResp(self.group, msg.term, would, True)))
            return
        if msg.term == self.term and src == self.holder:
            # answered from (term, holder), which the host keeps equal to what is on disk
            out.append(Send(src, TieVoteResp(self.group, msg.term, True, False)))
            return
        if msg.term <= self.term or self._held_by_other(now, src):
            out.append(Send(src, TieVoteResp(self.group, msg.term, False, False)))
            return
        if not self.requests:
            out.append(SetTimer(("w", self.group), now + self.window_ns))
        self.requests.append((msg.term, msg.side, src))

    def _decide(self, now: int, out: list[Effect]) -> None:
        requests, self.requests = self.requests, []
        live = [r for r in requests if r[0] > self.term and not self._held_by_other(now, r[2])]
        winner = min(live, key=lambda r: (-r[1], r[2])) if live else None
        if winner is not None:
            self.term, self.holder, self.renewed_ns = winner[0], winner[2], now
        for term, _side, cand in requests:
            granted = winner is not None and (term, cand) == (winner[0], winner[2])
            out.append(Send(cand, TieVoteResp(self.group, term, granted, False)))

    def _release(self, src: int, term: int) -> None:
        """The holder handed its group over: no holder any more (the term stays, so no term is
        ever granted twice; a renewal of the old holder still in flight finds no hold)."""
        if term == self.term and src == self.holder:
            self.holder = -1
            self.renewed_ns = -(1 << 62)

    def _renew(self, now: int, src: int, term: int) -> bool:
        if term == self.term and src == self.holder:
            self.renewed_ns = now
            return True
        if term > self.term and not self._held_by_other(now, src):
            # a leader elected by its members alone: it now holds the tie-breaker's share
            self.term, self.holder, self.renewed_ns = term, src, now
            return True
        return False
