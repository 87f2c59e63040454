"""Invariant checkers fed with every event of a simulation, while it runs.

Safety (checked at every event, during faults too):
- at most one node of a group holds a valid lease at any instant (lease intervals in true time);
- leadership terms of a group never repeat for a different holder and never go down, so fencing
  tokens ``(group, term)`` strictly grow;
- never two primary components: two nodes on different sides of a partition (counting a link cut
  when either direction is) are not both in the primary component once the partition has lasted
  longer than a node may go on believing the leases it heard before it (per tier of the longest
  path, a lease, a heartbeat and the drift margin), leaving out a node paused within that
  window (it reads datagrams as old as its stall); sampled every heartbeat while faults run
  (``Simulator.check_primaries``);
- a voter never grants two votes in one term of one group, restarts included (a candidate's vote
  for itself and a tie-breaker's grants count);
- a failure notice about a node alive in that incarnation is a false positive; the simulator
  excuses it (counted apart) only while a fault on the accused, its accuser or the link between
  them explains it, or for a bounded settle time after (``Simulator._excused``).

Liveness (checked by :meth:`Simulator.check_liveness` after faults heal) lives with the simulator,
which can read node state.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Violation:
    time_ns: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"t={self.time_ns / 1e6:.3f} ms {self.kind}: {self.detail}"


@dataclass(slots=True)
class SafetyChecker:
    violations: list[Violation] = field(default_factory=list)
    # group -> {holder rank: (term, lease end in true ns)}
    leases: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    # group -> (highest term seen held, holder of it)
    terms: dict[int, tuple[int, int]] = field(default_factory=dict)
    # (term, group, rank) packed in one int -> candidate: every vote of the run
    # is kept, and at 10^6 nodes a tuple key per vote cost about 60 MiB more
    votes: dict[int, int] = field(default_factory=dict)
    false_positives: int = 0
    excused_positives: int = 0
    limit: int = 50

    def _violate(self, time_ns: int, kind: str, detail: str) -> None:
        if len(self.violations) < self.limit:
            self.violations.append(Violation(time_ns, kind, detail))

    def lease(self, now_ns: int, rank: int, group: int, term: int, held: bool, end_ns: int) -> None:
        holders = self.leases.setdefault(group, {})
        if not held:
            holders.pop(rank, None)
            return
        for other, (other_term, other_end) in holders.items():
            if other != rank and other_end > now_ns:
                self._violate(
                    now_ns,
                    "two-leases",
                    f"group {group}: node {rank} (term {term}) took a lease while node {other} "
                    f"(term {other_term}) holds one until {other_end / 1e6:.3f} ms",
                )
        best = self.terms.get(group)
        if best is not None:
            best_term, best_holder = best
            if term < best_term or (term == best_term and rank != best_holder):
                self._violate(
                    now_ns,
                    "fencing-token",
                    f"group {group}: node {rank} holds term {term} after node {best_holder} held "
                    f"term {best_term}",
                )
        if best is None or term > best[0]:
            self.terms[group] = (term, rank)
        holders[rank] = (term, end_ns)

    def vote(self, now_ns: int, rank: int, group: int, term: int, candidate: int) -> None:
        # a witness votes as a negative rank: offset into 33 bits of their own
        key = (((term << 32) | group) << 33) | (rank + (1 << 32))
        before = self.votes.get(key)
        if before is None:
            self.votes[key] = candidate
        elif before != candidate:
            self._violate(
                now_ns,
                "double-vote",
                f"node {rank} voted for {before} and then {candidate} in group {group} term {term}",
            )

    def primaries(self, now_ns: int, sides: dict[int, int], window_ns: int) -> None:
        """two-primaries: ``sides`` maps each side of a partition older than ``window_ns`` to one
        of its nodes in the primary component now."""
        if len(sides) > 1:
            a, b = sorted(sides.values())[:2]
            self._violate(
                now_ns,
                "two-primaries",
                f"nodes {a} and {b} are both in the primary component, on two sides of a "
                f"partition older than {window_ns / 1e6:.0f} ms",
            )

    def accusation(self, now_ns: int, accused: int, alive: bool, excused: bool) -> None:
        if not alive:
            return
        if excused:
            self.excused_positives += 1
        else:
            self.false_positives += 1
            self._violate(now_ns, "false-positive", f"node {accused} declared failed while alive")
