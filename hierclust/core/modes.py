"""Operator modes: admin notices (maintenance, drained, active) and this node's own mode.

Theory of operation
-------------------
An operator command (:class:`Command` ``admin``) becomes one :class:`Admin` notice per rank range,
ordered by ``(seq, issuer)``; it floods like any notice (``flood``). Per rank the newest notice
covering it gives its mode. A notice is dropped once a newer one covers its whole range, so the
kept set depends only on which notices exist, not on their order of arrival, and digests agree
once everyone has them all. When this node's own mode becomes non-active, a timer due at once
makes it hand over what it leads right after the current step (``elections``), so the notice is
forwarded first.
"""

from __future__ import annotations

from typing import Final

from hierclust.core.flood import mix_key, notice_key
from hierclust.core.messages import (
    MAX_NOTICES_PER_MESSAGE,
)
from hierclust.core.state import (
    NodeState,
)
from hierclust.core.types import (
    ACTIVE,
    ADMIN_MODES,
    Admin,
    Command,
    Effect,
    Emit,
    NoticeLearned,
    SetTimer,
)

MAX_ADMIN = 4096
"""Admin notices a node keeps (the operator's modes, as rank ranges); beyond, the oldest go."""

RESIGN_KEY: Final = ("m",)
"""Timer: our admin mode became maintenance or drained; hand over what we lead."""


class Modes(NodeState):
    """The admin table and this node's own mode."""

    __slots__ = ()

    def admin_mode(self, rank: int) -> int:
        """``rank``'s admin mode as this node knows it (``ACTIVE`` unless an admin notice says
        otherwise)."""
        best: Admin | None = None
        if self.admin:
            for a in self.admin.values():
                if a.covers(rank) and (best is None or a.order > best.order):
                    best = a
        return ACTIVE if best is None else best.mode

    def _learn_admin(self, now: int, notice: Admin, via: int | None, out: list[Effect]) -> bool:
        """Keep ``notice`` unless a newer one covers its whole range; drop the older ones it
        covers. The kept set depends only on which notices exist, not on their order of arrival,
        so digests agree once everyone has them all."""
        table = self.admin
        if table is None:
            table = self.admin = {}
        key = notice_key(notice)
        if key in table:
            return False
        if self._superseding(notice):
            return False  # superseded before it got here
        lo = notice.node
        hi = lo + notice.count
        order = notice.order
        for k, other in list(table.items()):
            if other.order < order and lo <= other.node and other.node + other.count <= hi:
                self._drop_admin(k)
        table[key] = notice
        self.dcount += 1
        self.dhash ^= mix_key(key)
        if notice.seq > self.range_seq:
            self.range_seq = notice.seq
        if len(table) > MAX_ADMIN:
            self._drop_admin(min(table, key=lambda k: table[k].order))
        out.append(Emit(NoticeLearned(notice, via)))
        if notice.covers(self.rank):
            mode = self.admin_mode(self.rank)
            if mode != self.mode:
                self.mode = mode
                if mode != ACTIVE:
                    # hand over right after this step, once the notice has been forwarded
                    out.append(SetTimer(RESIGN_KEY, now))
        return True

    def _superseding(self, notice: Admin) -> list[Admin]:
        """The admin notices held here that are newer than ``notice`` and cover its whole range
        (so ``notice`` was dropped for them, or will be)."""
        if not self.admin:
            return []
        lo = notice.node
        hi = lo + notice.count
        return [
            other
            for other in self.admin.values()
            if other.order > notice.order and other.node <= lo and hi <= other.node + other.count
        ]

    def _drop_admin(self, key: int) -> None:
        if self.admin is not None and self.admin.pop(key, None) is not None:
            self.dcount -= 1
            self.dhash ^= mix_key(key)

    def _on_command(self, now: int, cmd: Command, out: list[Effect]) -> None:
        if cmd.name != "admin":
            raise ValueError(f"unknown command {cmd.name!r}; the core knows 'admin'")
        mode, ranges = cmd.args
        if mode not in range(len(ADMIN_MODES)):
            raise ValueError(f"admin mode {mode!r}: expected 0..{len(ADMIN_MODES) - 1}")
        size = self.layout.topology.num_nodes
        for first, count in ranges:
            if count <= 0 or first < 0 or first + count > size:
                raise ValueError(f"admin range {first}+{count} outside ranks 0..{size - 1}")
        seq = self._next_seq(now)
        fresh = [
            n
            for first, count in ranges
            if self._learn(now, n := Admin(first, count, mode, seq, self.rank), None, out)
        ]
        for i in range(0, len(fresh), MAX_NOTICES_PER_MESSAGE):
            self._forward(now, tuple(fresh[i : i + MAX_NOTICES_PER_MESSAGE]), -1, -1, out)
