"""Slots: a leader's seat in the group above, hand-over of that seat, rosters, finding holders.

Theory of operation
-------------------
A tier >= 1 group holds one slot per child group, filled by whichever node leads that child.
Members of such a group know the slot holders from the leader's :class:`Roster`. A new holder
sends :class:`SlotHandover` to the parent leader named in its old leader's acks (``up``) and to
the known holders; the parent leader takes it unless the child term is older than the slot's.
When a holder is unknown (cold start, or the dead node led the parent too), :class:`Locate` goes
to a random node under that child group and is answered with the holder or with the next leader
up that subtree, so the search climbs to the holder in <= depth hops. A node that stops leading a
group leaves every group above it.
"""

from __future__ import annotations

from hierclust.core.messages import (
    LeaderHint,
    Locate,
    Located,
    Roster,
    SlotHandover,
)
from hierclust.core.state import (
    ABSTAIN,
    ALIVE,
    EMPTY,
    FOLLOWER,
    LEADER,
    NEVER,
    PENDING,
    GroupState,
    NodeState,
    hear_term,
)
from hierclust.core.types import (
    CancelTimer,
    Effect,
    Emit,
    LeaderChanged,
    Send,
    SetTimer,
)


class Slots(NodeState):
    """This node's seat in the groups above its leaf group, and who holds the others."""

    __slots__ = ()

    def _join(self, now: int, level: int, out: list[Effect]) -> None:
        """Take our child group's slot in the group at ``level`` (we just started leading below)."""
        gs = self.states[level]
        below = self.states[level - 1]
        hint = below.up if below is not None else -1
        if gs is None:
            known = self._known_term(level)  # (before the new state: as the groups below knew it)
            gs = self._new_state(level)
            # the slot's vote comes with the previous holder's promise not to vote for an
            # election timeout, and with the group's term as the groups below knew it
            gs.block_until = now + gs.tm.election
            if known > gs.term:
                gs.term = known
                gs.voted_for = ABSTAIN
                hear_term(gs, gs.term)
            out.append(SetTimer(gs.key_tick, now + gs.tm.heartbeat))
        msg = SlotHandover(gs.gi, gs.myslot, self._child_term(gs))
        targets = self._voters(gs)
        if hint >= 0 and hint != self.rank and gs.leader < 0:
            gs.hint = hint
            gs.hint_until = now + gs.tm.election
            if hint not in targets:
                targets.append(hint)
        for dst in targets:
            out.append(Send(dst, msg))
        self._locate(gs, out, unknown_only=True)
        if gs.role == FOLLOWER and not gs.cand_armed:
            self._arm_candidacy(now, gs, out)

    def _leave(self, now: int, level: int, out: list[Effect]) -> None:
        gs = self.states[level]
        if gs is None:
            return
        if gs.role == LEADER:
            self._step_down(now, gs, out)
        elif gs.leader >= 0:
            out.append(Emit(LeaderChanged(gs.gi, None, gs.term)))
        self._set_quorate(gs, False, out)
        out.append(CancelTimer(gs.key_tick))
        out.append(CancelTimer(gs.key_cand))
        out.append(CancelTimer(gs.key_lease))
        self.states[level] = None

    def _child_term(self, gs: GroupState) -> int:
        below = self.states[gs.level - 1] if gs.level > 0 else None
        return below.term if below is not None else 0

    def _take_slot(self, now: int, gs: GroupState, s: int, node: int, out: list[Effect]) -> None:
        if gs.doubts is not None:
            gs.doubts.pop(node, None)
        gs.holders[s] = node
        gs.status[s] = ALIVE
        gs.last[s] = now
        gs.echo[s] = 0
        gs.incs[s] = 0
        self._bump_view(gs, out)
        self._send_roster(gs, out)

    def _on_slot_handover(self, now: int, src: int, msg: SlotHandover, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.leaf or not 0 <= msg.slot < gs.size:
            return
        s = msg.slot
        if gs.role == LEADER:
            if s == gs.myslot:
                return
            if gs.holders[s] != src:
                if msg.child_term < gs.child_terms[s]:
                    return  # a leader of the child older than the slot's holder: stale
                self._take_slot(now, gs, s, src, out)
                gs.child_terms[s] = msg.child_term
            else:
                gs.status[s] = ALIVE
                gs.last[s] = now
            out.append(Send(src, self._ack(now, gs, 0, self._promise(gs, s))))
            return
        if s != gs.myslot:
            gs.holders[s] = src
        leader = self._confirmed_leader(now, gs)
        if leader >= 0 and leader != src:
            out.append(Send(src, LeaderHint(gs.gi, leader, gs.term)))
        elif leader < 0 and gs.term > 0:
            # No leader to point at, but the term: the new holder took the group's term from
            # its child group's last leader, who may have voted in a later one and gone before
            # telling its members. Upper-tier terms fall back on wall clocks only when nobody
            # knows the last term, so every voter that knows it passes it on.
            out.append(Send(src, LeaderHint(gs.gi, -1, gs.term)))

    def _send_roster(self, gs: GroupState, out: list[Effect]) -> None:
        msg = Roster(gs.gi, gs.term, gs.view_id, tuple(gs.holders))
        for dst in self._members(gs):
            out.append(Send(dst, msg))

    def _on_roster(self, now: int, src: int, msg: Roster, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.leaf or gs.role == LEADER or msg.term < gs.term:
            return
        hear_term(gs, msg.term)
        if len(msg.holders) == gs.size:
            gs.holders = list(msg.holders)
            gs.holders[gs.myslot] = self.rank
            gs.view_id = msg.view_id

    def _locate(self, gs: GroupState, out: list[Effect], *, unknown_only: bool) -> None:
        """Ask a random node under each other slot's child group who fills that slot; answers
        walk up that subtree's leaders (see :class:`Locate`)."""
        firsts = self.layout.child_first[gs.gi]
        ends = self.layout.child_end[gs.gi]
        msg = Locate(gs.gi)
        for s in range(gs.size):
            if s == gs.myslot or (unknown_only and gs.holders[s] >= 0):
                continue
            dst = self.rng.randrange(firsts[s], ends[s])
            if dst != self.rank:
                out.append(Send(dst, msg))

    def _on_locate(self, now: int, src: int, msg: Locate, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is not None:
            leader = self._confirmed_leader(now, gs)
            out.append(Send(src, Located(msg.group, gs.myslot, self.rank, leader, -1)))
            return
        level = -1
        for lvl in range(1, len(self.path)):
            if self.path[lvl] == msg.group:
                level = lvl
        if level < 0:
            return
        top = None
        for lower in self.states[:level]:
            if lower is not None:
                top = lower
        if top is None:
            return
        nxt = self._confirmed_leader(now, top)
        if nxt == self.rank:
            nxt = -1  # we lead just below and are joining ourselves
        up = top.up if top.level == level - 1 else -1
        slot = self.layout.slot_in_parent[self.path[level - 1]]
        out.append(Send(src, Located(msg.group, slot, -1, up, nxt)))

    def _on_located(self, now: int, src: int, msg: Located, out: list[Effect]) -> None:
        gs = self._gs(msg.group)
        if gs is None or gs.leaf:
            return
        s = msg.slot
        holder = msg.holder
        if holder >= 0 and holder != self.rank and 0 <= s < gs.size and s != gs.myslot:
            if gs.role == LEADER:
                if gs.holders[s] != holder and gs.status[s] in (PENDING, EMPTY):
                    # follow me (the lease is promised once it has echoed us)
                    out.append(Send(holder, self._ack(now, gs, 0, NEVER)))
            else:
                gs.holders[s] = holder
                if gs.leader < 0:
                    out.append(Send(holder, SlotHandover(gs.gi, gs.myslot, self._child_term(gs))))
        elif holder < 0 and msg.next >= 0 and msg.next != self.rank:
            out.append(Send(msg.next, Locate(gs.gi)))
        if msg.leader >= 0 and msg.leader != self.rank and gs.role != LEADER and gs.leader < 0:
            self._adopt_hint(now, gs, msg.leader, gs.term, out)
