"""Every protocol tunable, in one place, with its default and what it trades off; and the hard
limits (docs/architecture.md §6).

It imports nothing of the package: the protocol core, the topology loader and the codec all read
it, and none of them needs another for it.

Topology files override these per cluster (``[defaults]``), per tier (``[tiers.N]``) and per group
(``[group.NAME.tuning]``); :func:`Tuning.replace_checked` is the one door through which any override
comes in, so an unknown key or a nonsensical value is refused the same way everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Hard limits (docs/architecture.md §6). Not tunables: the wire format and the memory plan rely
# on them.
MAX_TIER_DEPTH = 8
MAX_GROUP_SIZE = 64
MAX_DATAGRAM_BYTES = 1400
MAX_TOPOLOGY_FILE_BYTES = 16 * 1024 * 1024


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, slots=True)
class Tuning:
    """Protocol timing and sizing. All durations are milliseconds (``_ms``)."""

    heartbeat_ms: int = field(
        default=200,
        metadata=_doc(
            "How often a leader sends its members a heartbeat Ack (each answers with a Ping). "
            "Shorter detects sooner, costs datagrams."
        ),
    )
    suspect_after_ms: int = field(
        default=800,
        metadata=_doc(
            "Silence after which a leader suspects a member. Shorter detects sooner but raises "
            "false positives under load or loss; keep it at least 3 heartbeats."
        ),
    )
    confirm_ms: int = field(
        default=100,
        metadata=_doc(
            "How long indirect probes may take before a suspect is declared failed. Longer "
            "tolerates slow paths; adds directly to detection time."
        ),
    )
    echo_misses: int = field(
        default=2,
        metadata=_doc(
            "Heartbeats in a row a healthy member may leave unanswered before its leader probes "
            "it (directly and through indirect_probes helpers) instead of waiting for "
            "suspect_after_ms. The wait also allows half a heartbeat and four times the "
            "member's recent echo delay, so a member that has been answering late is probed "
            "later (never later than suspect_after_ms). 0 turns early probing off."
        ),
    )
    indirect_probes: int = field(
        default=2,
        metadata=_doc(
            "Members asked to probe a suspect before it is declared failed. More probes cut "
            "false positives from a lossy link between leader and suspect; each costs datagrams."
        ),
    )
    lease_ms: int = field(
        default=600,
        metadata=_doc(
            "How long a majority of acks keeps a leader's lease valid. Must stay below "
            "election_timeout_ms minus drift_margin_ms, so an old leader stops before a new one "
            "acts."
        ),
    )
    election_timeout_ms: int = field(
        default=800,
        metadata=_doc(
            "Silence from the leader after which a member starts a (pre-)vote. Shorter re-elects "
            "sooner; too short causes needless elections under loss."
        ),
    )
    drift_margin_ms: int = field(
        default=100,
        metadata=_doc(
            "Allowance for clock-rate differences between leader and members in the lease rule."
        ),
    )
    election_jitter_ms: int = field(
        default=50,
        metadata=_doc(
            "Random extra wait per candidacy on top of the rank delay; breaks ties between "
            "candidates of equal rank."
        ),
    )
    rank_delay_ms: int = field(
        default=20,
        metadata=_doc(
            "Extra wait per rank position before standing for election, so the preferred "
            "candidate usually wins in one round. Larger is more orderly but slower."
        ),
    )
    slot_grace_ms: int = field(
        default=1500,
        metadata=_doc(
            "How long a parent group keeps a child's slot pending for the child's new leader "
            "instead of declaring the slot failed, while some member of the child group answers "
            "the parent leader's probes (if none does, the subtree is reported cut off at once)."
        ),
    )
    retransmit_ms: int = field(
        default=100,
        metadata=_doc(
            "First retransmit interval for an unacked notice; doubles per attempt. Shorter "
            "repairs loss sooner, costs datagrams under loss."
        ),
    )
    retransmit_max: int = field(
        default=6,
        metadata=_doc("Retransmits of one notice to one peer before relying on digest repair."),
    )
    max_pending_per_peer: int = field(
        default=256,
        metadata=_doc(
            "Unacked notices kept per peer; beyond it the oldest wait for digest repair."
        ),
    )
    max_notices: int = field(
        default=100_000,
        metadata=_doc("Notices a node keeps; older ones are compacted away by age."),
    )
    notice_ttl_ms: int = field(
        default=600_000,
        metadata=_doc(
            "Age (from its detection) after which a failure notice, with the alive notices of "
            "the same node, is forgotten everywhere. Longer keeps refuting zombies of old "
            "incarnations; shorter keeps memory and digests small."
        ),
    )

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def describe(cls) -> dict[str, tuple[int, str]]:
        """Key -> (default, what it trades off); used by docs and ``--help``."""
        return {f.name: (f.default, f.metadata["doc"]) for f in dataclasses.fields(cls)}  # type: ignore[misc]

    def replace_checked(self, overrides: dict[str, Any]) -> tuple[Tuning, list[tuple[str, str]]]:
        """Apply ``overrides``; return the new tuning and ``(key, problem)`` pairs for bad input."""
        problems: list[tuple[str, str]] = []
        known = set(self.keys())
        clean: dict[str, int] = {}
        for key, value in overrides.items():
            if key not in known:
                problems.append(
                    (key, f"unknown tuning key; known keys: {', '.join(sorted(known))}")
                )
            elif isinstance(value, bool) or not isinstance(value, int):
                problems.append((key, f"expected a whole number, got {value!r}"))
            elif value < 0 or (value == 0 and key not in ("indirect_probes", "echo_misses")):
                problems.append((key, f"expected a positive number, got {value}"))
            else:
                clean[key] = value
        tuned = dataclasses.replace(self, **clean)
        if not problems:
            problems.extend(tuned.consistency_problems())
        return tuned, problems

    def consistency_problems(self) -> list[tuple[str, str]]:
        """Relations between keys that the protocol's safety argument depends on."""
        problems: list[tuple[str, str]] = []
        if self.suspect_after_ms < 2 * self.heartbeat_ms:
            problems.append(
                (
                    "suspect_after_ms",
                    "must be at least 2 x heartbeat_ms, or every jitter is a failure",
                )
            )
        if self.lease_ms >= self.election_timeout_ms - self.drift_margin_ms:
            problems.append(
                (
                    "lease_ms",
                    f"must be below election_timeout_ms - drift_margin_ms "
                    f"({self.election_timeout_ms} - {self.drift_margin_ms}), or an old leader may "
                    "still act when a new one is elected",
                )
            )
        if self.lease_ms <= self.heartbeat_ms:
            problems.append(
                ("lease_ms", "must exceed heartbeat_ms, or a lease lapses between acks")
            )
        return problems


DEFAULT_TUNING = Tuning()
