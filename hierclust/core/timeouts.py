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
        "misses",
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
        self.misses = t.echo_misses
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


ECHO_DELAY_WEIGHT = 4
"""An early probe waits this many times a member's recent echo delay beyond its missed
heartbeats (see :func:`early_probe`)."""


def early_probe(tm: Timing, delay: int, health: int, limit: int) -> int:
    """How long a leader waits, from when it last heard a leaf member, before probing it:
    ``echo_misses`` heartbeats unanswered, plus half a heartbeat and ``ECHO_DELAY_WEIGHT`` times
    the member's recent echo delay (``delay``), stretched by the leader's own ``health`` like
    every accusation, at most ``limit`` (the stretched ``suspect_after_ms``); just ``limit``
    when early probing is off. A dead member that answered
    promptly is probed after about two heartbeats instead of four; one that has been answering
    late (a loaded host) gets proportionally longer, so load does not become accusations."""
    if tm.misses <= 0:
        return limit
    wait = tm.misses * tm.heartbeat + max(tm.heartbeat // 2, ECHO_DELAY_WEIGHT * delay)
    wait *= 1 + health
    return wait if wait < limit else limit


def stretched(timeout_ns: int, health: int) -> int:
    """Lifeguard-style local health: a lagging node waits (1 + health) times longer before it
    accuses others. Leases are never stretched (safety), only accusations and candidacies."""
    return timeout_ns * (1 + health)


MAX_BACKOFF_DOUBLINGS = 3
"""A lagging node's back-off after failed (pre-)vote rounds doubles per failure up to 2**this."""


def backoff(heartbeat_ns: int, health: int, fails: int) -> int:
    """How long a candidate waits after a (pre-)vote round ended without a result, before its
    rank delay and jitter: a heartbeat, stretched by local health; while the node lags
    (``health`` > 0) also doubled for each round that failed in a row before this one (up to
    ``MAX_BACKOFF_DOUBLINGS``). A starved node's rounds fail for its own slowness: standing again
    at once only adds work to the loop that is already late. A healthy node is unaffected."""
    wait = stretched(heartbeat_ns, health)
    if health > 0 and fails > 1:
        wait <<= min(fails - 1, MAX_BACKOFF_DOUBLINGS)
    return wait


MAX_TICK_STRETCH = 2
"""A lagging leader heartbeats at most this many times less often."""


def leader_period(heartbeat_ns: int, health: int) -> int:
    """A leader's heartbeat period: ``heartbeat_ms``, doubled while its own loop lags. The
    heartbeats are most of a settled agent's work (every member answers each one), so a starved
    host sheds half its load this way and its lag can shrink; members on healthy hosts still
    hear it well within their election timeout (two heartbeats of four)."""
    return heartbeat_ns * min(1 + health, MAX_TICK_STRETCH)


def health_after(health: int, lag_ms: int, heartbeat_ms: int) -> int:
    """New local-health score after a :class:`LoopLag` report: up on lag over half a heartbeat,
    by one more for every whole heartbeat of lag (a loop seconds late is sick at once, not after
    one sample per heartbeat of it, which a late loop takes seconds to deliver); down by one
    otherwise."""
    if lag_ms * 2 > heartbeat_ms:
        return min(MAX_HEALTH, health + max(1, lag_ms // max(1, heartbeat_ms)))
    return max(0, health - 1)


def retransmit_delay(base_ns: int, attempt: int) -> int:
    """Exponential back-off: base, 2 x base, 4 x base, ..."""
    return base_ns << min(attempt, 16)
