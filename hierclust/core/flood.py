"""The notice flood: learn, forward along tree edges, retransmit, digests, pulls, compaction.

Theory of operation
-------------------
Notices (:class:`Failure`, :class:`Alive`, :class:`Admin`) flood along tree edges: a node sends a
new notice from the group it came through into every other group it sits in (to all members
where it leads, else to the leader), never back. Each hop is acked (:class:`NoticesAck`) and
retransmitted with back-off until acked or given up. Notices for a group whose leader is unknown
wait in a bounded backlog for the next leader. Every heartbeat carries a digest (count, xor-hash
of what a node knows); a mismatch seen twice triggers a :class:`Pull` (backing off while pulls
teach nothing: ``Heartbeats._pull``), answered with everything known (bounded), which repairs
whatever the flood missed.

Compaction: every notice about a node is forgotten once its newest failure notice is
``notice_ttl_ms`` old, and beyond ``max_notices`` the node heard of least recently goes. A
notice saying this node itself failed in its current incarnation makes it refute (a new
incarnation).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Final

from hierclust.core.messages import (
    MAX_NOTICES_PER_MESSAGE,
    Notices,
    NoticesAck,
    Pull,
)
from hierclust.core.state import (
    LEADER,
    NEVER,
    GroupState,
    NodeState,
)
from hierclust.core.timeouts import MS, retransmit_delay
from hierclust.core.types import (
    Admin,
    Alive,
    Effect,
    Emit,
    Failure,
    Notice,
    NoticeLearned,
    Send,
    SetTimer,
    Subtree,
)

MAX_BACKLOG = 256
"""Notices kept per group while it has no known leader; beyond that, digest repair catches up."""
MAX_PULL_BATCHES = 64
"""A pull is answered with at most this many Notices datagrams; the rest waits for the next pull."""

_COMPACT_KEY: Final = ("x",)
"""Timer for notice compaction by age (one per node)."""


def notice_key(notice: Notice) -> int:
    """Integer identity of a notice: ``(kind, node, incarnation)`` packed for a cheap dict key
    (an admin or subtree notice: a negative hash of its identity, so it never meets the others)."""
    if type(notice) is Admin:
        h = mix_key(notice.node ^ (notice.count << 32))
        h = mix_key(h ^ notice.seq)
        return -1 - mix_key(h ^ ((notice.issuer << 2) | notice.mode))
    if type(notice) is Subtree:
        h = mix_key(notice.group ^ (notice.node << 24) ^ (notice.count << 48))
        h = mix_key(h ^ notice.seq)
        return -1 - mix_key(h ^ ((notice.issuer << 3) | 4 | notice.reachable))
    kind = 0 if type(notice) is Failure else 1
    return (notice.node << 33) | (notice.incarnation << 1) | kind  # type: ignore[union-attr]


def mix_key(key: int) -> int:
    """Deterministic 64-bit mix (splitmix64 finaliser) so digests agree across processes."""
    x = (key + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


class Flood(NodeState):
    """The notices this node knows, and how they reach everyone."""

    __slots__ = ()

    def known_notices(self) -> tuple[Notice, ...]:
        found: tuple[Notice, ...] = ()
        if self.known is not None:
            found = tuple(n for about in self.known.values() for n in about[::2])
        if self.admin:
            found += tuple(self.admin.values())
        if self.reach:
            found += tuple(self.reach.values())
        return found

    def has_notice(self, notice: Notice) -> bool:
        key = notice_key(notice)
        if type(notice) is Admin:
            return self.admin is not None and key in self.admin
        if type(notice) is Subtree:
            return self.reach is not None and self.reach.get(notice.group) == notice
        if self.known is None:
            return False
        return any(notice_key(n) == key for n in self.known.get(notice.node, ())[::2])

    def digest(self) -> tuple[int, int]:
        return (self.dcount, self.dhash)

    def pending_retransmits(self) -> int:
        return 0 if not self.pending else sum(len(p) for p in self.pending.values())

    def _learn(self, now: int, notice: Notice, via: int | None, out: list[Effect]) -> bool:
        if isinstance(notice, Admin):
            return self._learn_admin(now, notice, via, out)
        if isinstance(notice, Subtree):
            return self._learn_subtree(now, notice, via, out)
        key = notice_key(notice)
        tm = self.layout.timing[self.path[0]]
        failure = type(notice) is Failure
        if failure and notice.age_ms * MS >= tm.ttl:  # type: ignore[union-attr]
            return False  # aged out (a late retransmit or a pull from a node yet to compact)
        forgotten = self.forgotten
        if forgotten and now < forgotten.get(key, NEVER):
            return False  # compacted here already; the sender reckons its age a little lower
        known = self.known
        if known is None:
            known = self.known = {}
        # a failure notice is dated by our own clock: now, less the age the sender reckoned
        born = now - notice.age_ms * MS if failure else None  # type: ignore[union-attr]
        about = known.get(notice.node)
        if about is None:
            known[notice.node] = (notice, born)
        else:
            for n in about[::2]:
                if notice_key(n) == key:
                    return False
            # the node moves to the end: dict order is the order nodes were last heard of,
            # which pull answers and pushes (``_newest``) send first and compaction drops last.
            # Kept at its first place, a node killed after an earlier restart had its new
            # failure notice among the oldest: pushes left it out, and in the nemesis campaign
            # two sites heard of three such kills 76-91 s late
            del known[notice.node]
            known[notice.node] = (*about, notice, born)
        self.dcount += 1
        self.dhash ^= mix_key(key)
        if born is not None:
            if self.expiry is None:
                self.expiry = []
            entry = (born + tm.ttl, notice.node)
            heapq.heappush(self.expiry, entry)
            if self.expiry[0] is entry:
                out.append(SetTimer(_COMPACT_KEY, entry[0]))
        if self.dcount > tm.max_notices and len(known) > 1:
            # compaction: forget the node heard of least recently (dict order)
            oldest = next(iter(known))
            for n in known.pop(oldest)[::2]:
                self._unlearn(n)
        out.append(Emit(NoticeLearned(notice, via)))
        if type(notice) is Failure and notice.node == self.rank and notice.incarnation == self.inc:
            self._come_back(now, out)
        return True

    def _come_back(self, now: int, out: list[Effect]) -> None:
        """We were declared failed in our current incarnation: take a new one, and announce it
        when we lead our leaf group (a member's leader announces it when the member pings)."""
        self._refute(out)
        leaf = self.leaf_gs
        if leaf is not None and leaf.role == LEADER:
            alive = Alive(self.rank, self.inc)
            if self._learn(now, alive, None, out):
                self._forward(now, (alive,), -1, -1, out)

    def _unlearn(self, notice: Notice) -> int:
        """Take a notice out of the digest (its caller takes it out of ``known``); its key."""
        key = notice_key(notice)
        self.dcount -= 1
        self.dhash ^= mix_key(key)
        return key

    def _aged(self, now: int, notices: tuple[Notice, ...]) -> tuple[Notice, ...]:
        """``notices`` as they go out now: each failure notice carries its age by our clock."""
        known = self.known
        if not known or not any(type(n) is Failure for n in notices):
            return notices
        return tuple(
            replace(n, age_ms=(now - born) // MS)
            if type(n) is Failure and (born := self._born(known, n)) is not None
            else n
            for n in notices
        )

    @staticmethod
    def _born(known: dict[int, tuple[Any, ...]], notice: Failure) -> int | None:
        """When we date ``notice`` (a failure notice we hold), or None if we do not hold it."""
        about = known.get(notice.node)
        if about is not None:
            key = notice_key(notice)
            for i in range(0, len(about), 2):
                if notice_key(about[i]) == key:
                    born: int | None = about[i + 1]
                    return born
        return None

    def _known_about(self, node: int) -> tuple[int, int]:
        """(highest incarnation declared failed, highest incarnation announced alive) of ``node``
        among the notices we hold (0 = none)."""
        failed = alive = 0
        if self.known is not None:
            for n in self.known.get(node, ())[::2]:
                if type(n) is Failure:
                    failed = max(failed, n.incarnation)
                else:
                    alive = max(alive, n.incarnation)
        return failed, alive

    def _compact(self, now: int, out: list[Effect]) -> None:
        """Forget every notice about a node once its newest failure notice is ``notice_ttl_ms``
        old. Every node dates a notice by its own clock from the age its sender reckoned, so
        nodes forget it within a transit time or so of each other and digests agree again right
        after; what is forgotten stays forgotten for another ``notice_ttl_ms`` (a peer that still
        holds it for a moment must not hand it back). Alive notices go with the failure: they
        only mean something next to it."""
        expiry = self.expiry
        known = self.known
        if expiry is None or known is None:
            return
        ttl = self.layout.timing[self.path[0]].ttl
        forgotten = self.forgotten
        if forgotten:
            # keys are added in order of forgetting, so the oldest come first
            while forgotten and next(iter(forgotten.values())) <= now:
                del forgotten[next(iter(forgotten))]
        while expiry and expiry[0][0] <= now:
            _, node = heapq.heappop(expiry)
            about = known.get(node)
            if about is None:
                continue
            newest = max((b for b in about[1::2] if b is not None), default=None)
            if newest is not None and newest + ttl > now:
                continue  # a newer failure of this node keeps the record (its own entry waits)
            del known[node]
            if forgotten is None:
                forgotten = self.forgotten = {}
            for n in about[::2]:
                forgotten[self._unlearn(n)] = now + ttl
        if expiry:
            out.append(SetTimer(_COMPACT_KEY, expiry[0][0]))
        else:
            self.expiry = None

    def _forward(
        self, now: int, notices: tuple[Notice, ...], via_level: int, src: int, out: list[Effect]
    ) -> None:
        """Send new ``notices`` on along tree edges (never back to ``src``'s group but as hub)."""
        via = self.path[via_level] if via_level >= 0 else -1
        excluded = {n.node for n in notices if type(n) is Failure}
        excluded.add(src)
        aged = self._aged(now, notices)  # one copy for every destination
        for lvl, gs in enumerate(self.states):
            if gs is None:
                continue
            if gs.role == LEADER:
                for dst in self._members(gs):
                    if dst not in excluded:
                        self._rsend(now, dst, gs.gi if lvl != via_level else via, aged, out)
            elif lvl != via_level and gs.leader >= 0 and gs.leader not in excluded:
                self._rsend(now, gs.leader, gs.gi, aged, out)
            elif lvl != via_level and gs.leader < 0:
                # hand them to whoever this group elects next (digest repair is the fallback)
                if gs.backlog is None:
                    gs.backlog = []
                if len(gs.backlog) < MAX_BACKLOG:
                    gs.backlog.extend(notices)

    def _flush_backlog(self, now: int, gs: GroupState, out: list[Effect]) -> None:
        backlog = gs.backlog
        if not backlog:
            return
        gs.backlog = None
        for i in range(0, len(backlog), MAX_NOTICES_PER_MESSAGE):
            batch = self._aged(now, tuple(backlog[i : i + MAX_NOTICES_PER_MESSAGE]))
            if gs.role == LEADER:
                for dst in self._members(gs):
                    self._rsend(now, dst, gs.gi, batch, out)
            elif gs.leader >= 0:
                self._rsend(now, gs.leader, gs.gi, batch, out)

    def _rsend(
        self, now: int, dst: int, via: int, notices: tuple[Notice, ...], out: list[Effect]
    ) -> None:
        """Send ``notices`` (aged already) to ``dst`` and keep them for retransmission."""
        self.seq += 1
        msg = Notices(via, self.seq, notices)
        out.append(Send(dst, msg))
        tm = self.layout.timing[via] if via >= 0 else self.layout.timing[self.path[0]]
        if tm.retransmit_max <= 0:
            return
        pending = self.pending
        if pending is None:
            pending = self.pending = {}
        queue = pending.get(dst)
        due = now + tm.retransmit
        if queue is None:
            queue = pending[dst] = {}
            out.append(SetTimer(("r", dst), due))
        elif len(queue) >= tm.max_pending:
            del queue[next(iter(queue))]  # the oldest now waits for digest repair
        queue[self.seq] = [msg, 0, due, tm.retransmit, tm.retransmit_max]

    def _retransmit(self, now: int, dst: int, out: list[Effect]) -> None:
        pending = self.pending
        queue = None if pending is None else pending.get(dst)
        if queue is None or pending is None:
            return
        nxt = None
        for seq in list(queue):
            entry = queue[seq]
            if entry[2] <= now:
                entry[1] += 1
                if entry[1] > entry[4]:
                    del queue[seq]
                    continue
                out.append(Send(dst, entry[0]))
                entry[2] = now + retransmit_delay(entry[3], entry[1])
            if nxt is None or entry[2] < nxt:
                nxt = entry[2]
        if nxt is None:
            del pending[dst]
        else:
            out.append(SetTimer(("r", dst), nxt))

    def _on_notices(self, now: int, src: int, msg: Notices, out: list[Effect]) -> None:
        if msg.seq > 0:
            out.append(Send(src, NoticesAck(msg.seq)))
        via_level = -1
        for lvl, gs in enumerate(self.states):
            if gs is not None and gs.gi == msg.via:
                via_level = lvl
        learned: list[Notice] = []
        newer: list[Admin | Subtree] = []
        for n in msg.notices:
            if self._learn(now, n, msg.via, out):
                learned.append(n)
            elif type(n) is Admin:
                newer.extend(a for a in self._superseding(n) if a not in newer)
            elif type(n) is Subtree and (held := self._newer_subtree(n)) is not None:
                newer.append(held)
        if learned:
            if msg.seq == 0 and via_level >= 0:
                # an answer to a pull that taught us something: pull again as soon as the
                # digests still differ (the back-off is for pulls that teach nothing)
                gs = self.states[via_level]
                if gs is not None:
                    gs.pull_at = gs.pull_gap = 0
            fresh = tuple(learned)
            if self.pending is not None:
                for n in fresh:
                    if type(n) is Failure:
                        self.pending.pop(n.node, None)
            self._forward(now, fresh, via_level, src, out)
        if newer:
            # The sender holds admin or subtree notices we dropped for newer ones: send it those.
            # Digest counts do not tell which side is newer here (a newer notice may replace
            # several older ones), so the side that pulls may be the one that knows more.
            out.append(Send(src, Notices(msg.via, 0, tuple(newer[:MAX_NOTICES_PER_MESSAGE]))))

    def _on_notices_ack(self, now: int, src: int, msg: NoticesAck, out: list[Effect]) -> None:
        pending = self.pending
        if pending is None:
            return
        queue = pending.get(src)
        if queue is not None:
            queue.pop(msg.seq, None)
            if not queue:
                del pending[src]

    def _by_recency(self) -> Iterator[tuple[Notice, ...]]:
        """The failure and alive notices about each node, the node heard of last first."""
        if self.known:
            for about in reversed(self.known.values()):
                yield about[::2]

    def _newest(self, limit: int) -> tuple[Notice, ...]:
        """Up to ``limit`` failure and alive notices: the last one heard of each node, the
        nodes heard of last first, then the others of those nodes. Whole nodes at a time, a
        host crash that killed nine nodes at once filled the push with their older notices, and
        the failure of the first of them (which led three tiers) reached two sites 51-76 s
        late in the nemesis campaign."""
        found: list[Notice] = []
        older: list[Notice] = []
        for notices in self._by_recency():
            found.append(notices[-1])
            if len(found) >= limit:
                return tuple(found)
            if len(older) < limit:
                older.extend(notices[:-1])
        return tuple(found + older[: limit - len(found)])

    def _on_pull(self, now: int, src: int, msg: Pull, out: list[Effect]) -> None:
        """Answer a pull with what we hold, at most ``MAX_PULL_BATCHES`` datagrams: admin and
        subtree notices, then the failure and alive notices of the nodes heard of last (what a
        peer lacks is most often recent) up to half the room, and, when the rest does not fit,
        the other half from a random place among the older ones. The first ones in a fixed
        order, as before, left whatever lay past the cap unrepaired for good: in a 30-minute
        nemesis campaign nodes held 1,000 to 1,700 notices, and the one saying a live slot
        holder had failed never reached it (nor the members of two hosts), so it never came
        back anew and 59 nodes held it failed for 7 minutes."""
        cap = MAX_PULL_BATCHES * MAX_NOTICES_PER_MESSAGE
        head: list[Notice] = []
        if self.admin:
            head.extend(self.admin.values())
        if self.reach:
            head.extend(self.reach.values())
        older: list[Notice] = []
        for notices in self._by_recency():
            (head if len(head) < cap // 2 else older).extend(notices)
        if older and len(head) + len(older) > cap:
            start = self.rng.randrange(len(older))
            older = (older[start:] + older[:start])[: cap - len(head)]
        chosen = head + older
        for i in range(0, min(len(chosen), cap), MAX_NOTICES_PER_MESSAGE):
            batch = tuple(chosen[i : i + MAX_NOTICES_PER_MESSAGE])
            out.append(Send(src, Notices(msg.group, 0, self._aged(now, batch))))
