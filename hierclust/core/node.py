"""One cluster agent as a pure state machine: ``Node.step(now_ns, input) -> list[Effect]``.

Theory of operation
-------------------
A node sits in its leaf group always, and in the group one tier up for as long as it leads the
group below (it fills that child group's *slot*). Leaders drive heartbeats and hold leases from
their members' echoes; a leader detects silent members and declares them failed; members detect a
silent leader and elect a new one, which takes over the same slot one tier up; failure notices
flood along the tree's edges; operator modes travel as notices too.

The protocol is split by concern, one mixin class per module over :class:`NodeState`; this module
composes them into :class:`Node` and dispatches each input to the concern that owns it:

=============  ===============================================================================
module         owns
=============  ===============================================================================
``state``      what a node holds (a ``GroupState`` per group, incarnation, persisted votes),
               the read-only queries, and the small helpers every concern uses
``heartbeats`` the leader's heartbeat and the members' echoes, leases, the member's lazy check
``detection``  suspect, probe (directly and through helpers), confirm, declare a failure
``elections``  candidacy, pre-vote, vote, winning and stepping down, hints, hand-off
``slots``      joining the group above, slot hand-over, rosters, finding slot holders
``flood``      notices: learn, forward along tree edges, retransmit, digests, pulls, compaction
``reach``      subtree notices: which parts of the tree are cut off, issued by parent leaders
``modes``      admin notices (maintenance, drained) and this node's own mode
=============  ===============================================================================

The concern modules never import each other: one concern calls another through ``self``, and
every such call is declared, under the name of the module that defines it, at the end of
:class:`NodeState`. Dispatch is one dict lookup per message (``_HANDLERS``) and one comparison
chain per timer tag, as before the split: the hot path has no extra indirection.

Timer keys (first element): ``t`` tick, ``c`` candidacy, ``l`` lease (per group, from the
layout); ``s`` scan and ``p``/``q``/``w`` probe verdicts (detection); ``r`` retransmit and ``x``
compaction (flood); ``m`` hand over after a mode change (modes, elections).

Events (the contract with checkers and reports)
-----------------------------------------------
- ``NoticeLearned(notice, via)`` once per notice identity per node (detector: ``via=None``).
- ``ElectionStarted(group, term)`` when a real vote starts (never for a pre-vote).
- ``VoteGranted(group, term, candidate)`` right after the Persist of that vote.
- ``LeaderChanged(group, leader|None, term)``: a member when an ack names a new leader or when it
  gives its leader up; the winner when it wins; a leader when it steps down.
- ``LeaseChanged(group, term, held, until_ns)``: on winning, at the leader's tick when the lease
  grew (pings extend it silently in between, so ``until_ns`` is a lower bound; query
  ``lease_until()`` for the exact value) and on loss (at the instant the lease ran out, or on a
  step-down for a higher term).
- ``ViewChanged(group, view_id)``: emitted by the leader only, on winning and on every membership
  change (failure, rejoin, slot hand-over); members adopt ``view_id`` from acks silently.
- ``QuorumChanged(group, quorate)``: leader with its lease; member from its leader's acks (turns
  False when an ack reports no lease or the leader is lost, at the member's lazy check; the
  ``quorate()`` query already says False a heartbeat after a reported lease ran out).
"""

from __future__ import annotations

from typing import Any

from hierclust.core.detection import Detection
from hierclust.core.elections import Elections
from hierclust.core.fast import new_set_timer
from hierclust.core.flood import Flood
from hierclust.core.heartbeats import Heartbeats
from hierclust.core.messages import (
    Ack,
    Handoff,
    LeaderHint,
    Locate,
    Located,
    Notices,
    NoticesAck,
    Ping,
    PingReq,
    PreVote,
    PreVoteResp,
    Probe,
    ProbeAck,
    Pull,
    RequestVote,
    Roster,
    SlotHandover,
    TieRenewAck,
    TieVoteResp,
    VoteResp,
)
from hierclust.core.modes import Modes
from hierclust.core.reach import Reach
from hierclust.core.slots import Slots
from hierclust.core.state import LEADER, PersistentState
from hierclust.core.timeouts import health_after, leader_period
from hierclust.core.types import (
    ACTIVE,
    Command,
    Effect,
    Input,
    LoopLag,
    Persist,
    Received,
    SetTimer,
    Start,
    Storage,
    TimerFired,
    Unreachable,
    WallClock,
)

__all__ = ["Node", "PersistentState"]


class Node(Heartbeats, Detection, Elections, Slots, Reach, Flood, Modes):
    """The protocol for one node (``rank``) of ``topology``: every concern, and the dispatch of
    inputs to them (see the module docstring)."""

    __slots__ = ()

    def step(self, now: int, inp: Input) -> list[Effect]:
        out: list[Effect] = []
        kind = type(inp)
        if kind is Received:
            handler = _HANDLERS.get(type(inp.msg))  # type: ignore[union-attr]
            if handler is not None:
                handler(self, now, inp.src, inp.msg, out)  # type: ignore[union-attr]
        elif kind is TimerFired:
            self._on_timer(now, inp.key, out)  # type: ignore[union-attr]
        elif kind is Start:
            self.wall = inp.wall_offset_ns  # type: ignore[union-attr]
            self._on_start(now, out)
        elif kind is WallClock:
            self.wall = inp.offset_ns  # type: ignore[union-attr]
        elif kind is LoopLag:
            tm = self.layout.timing[self.path[0]]
            self.health = health_after(self.health, inp.lag_ms, tm.heartbeat // 1_000_000)  # type: ignore[union-attr]
        elif kind is Unreachable:
            self._on_unreachable(now, inp.dst, out)  # type: ignore[union-attr]
        elif kind is Command:
            self._on_command(now, inp, out)  # type: ignore[arg-type]
        elif kind is Storage:
            self._on_storage(now, inp.durable, out)  # type: ignore[union-attr]
        return out

    def deliver(self, now: int, src: int, msg: Any) -> list[Effect]:
        """``step(now, Received(src, msg))`` without building the ``Received`` (the simulator
        delivers millions of datagrams this way; same effects, same order)."""
        out: list[Effect] = []
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, now, src, msg, out)
        return out

    def fire(self, now: int, key: tuple[Any, ...]) -> list[Effect]:
        """``step(now, TimerFired(key))`` without building the ``TimerFired``."""
        out: list[Effect] = []
        self._on_timer(now, key, out)
        return out

    def _on_start(self, now: int, out: list[Effect]) -> None:
        if self.leaf_gs is not None:
            return  # started already
        out.append(Persist(self.persistent_state()))
        gs = self._new_state(0)
        # we may have promised a vote-free election timeout before a crash (not persisted):
        # keep that promise after any (re)start
        gs.block_until = now + gs.tm.election
        out.append(SetTimer(gs.key_tick, now + gs.tm.heartbeat))
        self._arm_candidacy(now, gs, out)

    def _on_timer(self, now: int, key: tuple[Any, ...], out: list[Effect]) -> None:
        tag = key[0]
        if tag == "r":
            self._retransmit(now, key[1], out)
            return
        if tag == "x":
            self._compact(now, out)
            return
        if tag == "m":
            if self.mode != ACTIVE:
                self._resign_all(now, out)
            return
        gs = self.leaf_gs
        if gs is None or gs.gi != key[1]:  # (the leaf group inline: the hot path)
            gs = self._gs(key[1])
            if gs is None:
                return
        if tag == "t":
            if gs.role == LEADER:
                period = gs.tm.heartbeat
                if self.health:
                    period = leader_period(period, self.health)
                out.append(new_set_timer(gs.key_tick, now + period))
                self._leader_tick(now, gs, out)
            else:
                self._member_tick(now, gs, out)
        elif tag == "c":
            self._on_candidacy(now, gs, out)
        elif tag == "l":
            self._on_lease(now, gs, out)
        elif tag == "s":
            if gs.role == LEADER and not gs.strain:  # (not while a lease lapsed for our lag)
                self._scan(now, gs, out)
        elif tag == "p":
            self._on_probe_timeout(now, gs, key[2], out)
        elif tag == "q":
            self._on_doubt_timeout(now, gs, key[2], out)
        elif tag == "w":
            self._on_sweep_timeout(now, gs, key[2], out)


_HANDLERS: dict[type, Any] = {
    Ping: Node._on_ping,
    Ack: Node._on_ack,
    PingReq: Node._on_ping_req,
    Probe: Node._on_probe,
    ProbeAck: Node._on_probe_ack,
    PreVote: Node._on_prevote,
    PreVoteResp: Node._on_prevote_resp,
    RequestVote: Node._on_request_vote,
    VoteResp: Node._on_vote_resp,
    LeaderHint: Node._on_leader_hint,
    Handoff: Node._on_handoff,
    SlotHandover: Node._on_slot_handover,
    Roster: Node._on_roster,
    Notices: Node._on_notices,
    NoticesAck: Node._on_notices_ack,
    Pull: Node._on_pull,
    Locate: Node._on_locate,
    Located: Node._on_located,
    TieVoteResp: Node._on_tie_vote_resp,
    TieRenewAck: Node._on_tie_renew_ack,
}
"""Handler of each message type (a concern's ``_on_*`` method)."""


def handlers() -> dict[type, Any]:
    """The handler of each message type, for a driver that delivers millions of datagrams (the
    simulator): ``handlers()[type(msg)](node, now, src, msg, out)`` appends to ``out`` exactly
    the effects ``node.deliver(now, src, msg)`` returns, one Python call less per datagram (a
    type missing here is ignored, as ``deliver`` ignores it)."""
    return _HANDLERS
