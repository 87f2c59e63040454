"""Cut-off subtrees: which parts of the tree are unreachable from here, as one notice per group.

Theory of operation
-------------------
A tier >= 1 leader keeps a silent slot *pending* for ``slot_grace_ms``: a dead leader of the child
group is replaced there by the child group's new leader. When nobody comes (the whole child group
is cut off, or cannot elect, or is dead) the leader empties the slot and, while it holds its
lease, issues ``Subtree(child's ranks, reachable=False)``. It floods like any notice, so every
node that can reach that leader learns within the bound of a failure notice that the whole
subtree is unreachable, not merely that its slot holder failed. When a leader of the child group
fills the slot again, the parent group's leader (at its next scan) issues ``reachable=True``.

Per group a node keeps only the newest notice by ``(seq, issuer)`` (seq: the hybrid logical
clock of :meth:`NodeState._next_seq`), so the kept set does not depend on arrival order and
digests agree; a peer that sends an older one gets the newer one back (``flood``). A rank is
unreachable for this node while the newest notice of some group whose subtree holds it says so.
The cut-off side never learns its own notice while cut off; it keeps its local leaders and knows
it is not in the primary component (its path to the root lost quorum).
"""

from __future__ import annotations

from hierclust.core.flood import mix_key, notice_key
from hierclust.core.state import ALIVE, LEADER, GroupState, NodeState
from hierclust.core.types import (
    Effect,
    Emit,
    NoticeLearned,
    Subtree,
    SubtreeReachable,
    SubtreeUnreachable,
)


class Reach(NodeState):
    """Subtree notices: issuing them as a parent group's leader, learning them, the queries."""

    __slots__ = ()

    def unreachable_groups(self) -> tuple[int, ...]:
        """Groups whose subtree this node holds cut off, by group index."""
        if not self.reach:
            return ()
        return tuple(sorted(g for g, n in self.reach.items() if not n.reachable))

    def reachable(self, rank: int) -> bool:
        """False while the newest notice of a group whose subtree holds ``rank`` says it is cut
        off (as this node knows)."""
        if self.reach:
            for notice in self.reach.values():
                if not notice.reachable and notice.covers(rank):
                    return False
        return True

    def _learn_subtree(self, now: int, notice: Subtree, via: int | None, out: list[Effect]) -> bool:
        """Keep ``notice`` if it is the newest of its group (dropping the one it replaces)."""
        table = self.reach
        if table is None:
            table = self.reach = {}
        held = table.get(notice.group)
        if held is not None:
            if held.order >= notice.order:
                return False  # the same, or older than what we hold
            self._unlearn(held)
        table[notice.group] = notice
        self.dcount += 1
        self.dhash ^= mix_key(notice_key(notice))
        if notice.seq > self.range_seq:
            self.range_seq = notice.seq
        out.append(Emit(NoticeLearned(notice, via)))
        was_cut = held is not None and not held.reachable
        if was_cut == notice.reachable:  # the group's state flipped
            event = SubtreeReachable if notice.reachable else SubtreeUnreachable
            out.append(Emit(event(notice.group, notice.node, notice.count)))
        return True

    def _newer_subtree(self, notice: Subtree) -> Subtree | None:
        """The notice of ``notice``'s group held here when it is newer than ``notice``."""
        held = self.reach.get(notice.group) if self.reach else None
        return held if held is not None and held.order > notice.order else None

    def _cut_off(self, now: int, gs: GroupState, s: int, out: list[Effect]) -> None:
        """Slot ``s`` of ``gs`` (which we lead) stayed empty past its grace: its child group's
        subtree is cut off. Issue that, unless we hold it already."""
        held = self.reach.get(self.layout.children[gs.gi][s]) if self.reach else None
        if held is None or held.reachable:
            self._issue_subtree(now, gs, s, False, out)

    def _rejoined(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        """At a scan of ``gs`` (which we lead): the slots that are filled again whose child
        group we hold cut off get their ``reachable`` notice."""
        reach = self.reach
        if not reach or gs.role != LEADER or now >= gs.lease_until:
            return  # (a leader whose lease lapsed while its loop lagged issues nothing)
        children = self.layout.children[gs.gi]
        status = gs.status
        for s in range(gs.size):
            held = reach.get(children[s])
            if held is not None and not held.reachable:
                if status[s] == ALIVE and gs.holders[s] >= 0:
                    self._issue_subtree(now, gs, s, True, out)

    def _issue_subtree(
        self, now: int, gs: GroupState, s: int, reachable: bool, out: list[Effect]
    ) -> None:
        """Issue (learn and send on) a subtree notice for the child group in slot ``s``."""
        first = self.layout.child_first[gs.gi][s]
        count = self.layout.child_end[gs.gi][s] - first
        group = self.layout.children[gs.gi][s]
        notice = Subtree(first, count, group, reachable, self._next_seq(now), self.rank)
        if self._learn(now, notice, None, out):
            self._forward(now, (notice,), -1, -1, out)
