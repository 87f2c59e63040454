"""Timeouts as small pure formulas over a :class:`Tuning`, in integer nanoseconds."""

from __future__ import annotations

from hierclust.tuning import Tuning

MS = 1_000_000
MAX_HEALTH = 8
"""Local-health score ceiling: timeouts stretch to at most (1 + MAX_HEALTH) times."""


class Timing:
    """A :class:`Tuning` converted once to nanoseconds (shared by every group using it)."""

    __slots__ = (
        "heartbeat",
        "suspect",
        "confirm",
        "probes",
        "lease",
        "election",
        "jitter",
        "rank_delay",
        "slot_grace",
        "retransmit",
        "retransmit_max",
        "max_pending",
        "max_notices",
        "ttl",
    )

    def __init__(self, t: Tuning) -> None:
        self.heartbeat = t.heartbeat_ms * MS
        self.suspect = t.suspect_after_ms * MS
        self.confirm = t.confirm_ms * MS
        self.probes = t.indirect_probes
        self.lease = t.lease_ms * MS
        self.election = t.election_timeout_ms * MS
        self.jitter = t.election_jitter_ms * MS
        self.rank_delay = t.rank_delay_ms * MS
        self.slot_grace = t.slot_grace_ms * MS
        self.retransmit = t.retransmit_ms * MS
        self.retransmit_max = t.retransmit_max
        self.max_pending = t.max_pending_per_peer
        self.max_notices = t.max_notices
        self.ttl = t.notice_ttl_ms * MS


def stretched(timeout_ns: int, health: int) -> int:
    """Lifeguard-style local health: a lagging node waits (1 + health) times longer before it
    accuses others. Leases are never stretched (safety), only accusations and candidacies."""
    return timeout_ns * (1 + health)


def health_after(health: int, lag_ms: int, heartbeat_ms: int) -> int:
    """New local-health score after a :class:`LoopLag` report: up on lag over half a heartbeat,
    down by one otherwise."""
    if lag_ms * 2 > heartbeat_ms:
        return min(MAX_HEALTH, health + 1)
    return max(0, health - 1)


def retransmit_delay(base_ns: int, attempt: int) -> int:
    """Exponential back-off: base, 2 x base, 4 x base, ..."""
    return base_ns << min(attempt, 16)
