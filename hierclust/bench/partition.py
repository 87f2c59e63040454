"""A network partition on lab hosts: who stops, who decides, how soon it heals; hierclust and
Corosync side by side.

``hierclust bench partition --nodes N --minority M``: N lab hosts, one hierclust node each
(:mod:`hierclust.bench.labnodes`), hosts ``0 .. M-1`` the minority. The topology is generated
with fan-out M by default, so the minority is exactly the first leaf group (8 nodes at fan-out 3:
leaf groups of 3, 3 and 2 under a root of three slots, the cut taking one slot of three); another
``--fanout`` makes the cut split groups. With ``--witness`` the root's tie-breaker (a generated
even root gets one) runs as ``hierclust witness`` on host N, which stays on the majority's side
of the cut: with ``--minority`` N/2 that is the 4/4 case, where only the witness decides.

The cut is an nftables drop set on the lab bridge (both ways, every minority host from every
other host). Three figures, each from the cut (or heal) to the moment the last node concerned got
there, read from the nodes' status snapshots polled in rounds (each snapshot's instant taken back
to this box's clock from its host's; a figure is therefore at most one polling round late):

* ``minority_stopped_ms``: every minority node out of the primary component (``in_primary``
  false: a group on its path to the root no longer quorate; a leader's lease there has ended).
* ``majority_decided_ms``: every majority node in the primary component, holding every minority
  node unreachable (a subtree) or failed, and the root led by a majority node holding its lease.
* ``heal_ms`` (after the heal): every node in the primary component, nobody unreachable or
  failed, every group led.

Corosync + votequorum (:mod:`hierclust.bench.corosync`) runs next on the same N hosts with the
same cut: stopped = every minority instance's votequorum says non-primary; decided = every
majority instance delivered the majority's membership and is quorate; heal = every instance
delivered all N, quorate. Corosync has no witness here (its equivalent, qdevice with qnetd, is
out of scope): at 4/4 both sides block.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.bench.corosync import CorosyncLab, corosync_version
from hierclust.bench.labkill import LAB_PREFIX, LAB_SUBNET
from hierclust.bench.labnodes import LabNodes
from hierclust.bench.udp import load_avg
from hierclust.core.timeouts import MS
from hierclust.runtime.netns import NetnsLab

AFTER_CUT_S = 60.0
"""How long either side gets, from the cut (and from the heal), to get there."""
Progress = Callable[[str, float, float], None]
FIELDS = ("minority_stopped_ms", "majority_decided_ms", "heal_ms")


class PartitionError(RuntimeError):
    """A partition run that cannot go ahead; one line."""


def held_off(node: dict[str, Any]) -> set[int]:
    """Ranks ``node`` holds unreachable (in a cut-off subtree) or failed."""
    ranks = {
        r for _g, first, count in node.get("unreachable", []) for r in range(first, first + count)
    }
    return ranks | {int(f[0]) for f in node.get("failed", [])}


def _ms(t_ns: int | None, since_ns: int) -> float | None:
    return None if t_ns is None else round((t_ns - since_ns) / MS, 1)


def _all_ms(reached: dict[Any, int], want: int, since_ns: int) -> float | None:
    """Milliseconds from ``since_ns`` until the last of ``want`` nodes reached a state; None
    when fewer did (a side that never got there has no time)."""
    return _ms(max(reached.values()), since_ns) if reached and len(reached) == want else None


class Watch:
    """Polls every node's snapshot in rounds, and remembers, per node, the first snapshot at or
    after ``since_ns`` that passed a test."""

    def __init__(self, nodes: LabNodes, since_ns: int) -> None:
        self.nodes = nodes
        self.since_ns = since_ns
        self.rounds: list[float] = []
        self.last: dict[int, dict[str, Any]] = {}

    def until(
        self,
        tests: dict[
            str, tuple[set[int], Callable[[dict[str, Any], dict[int, dict[str, Any]]], bool]]
        ],
        timeout_s: float,
        progress: Progress | None,
    ) -> dict[str, dict[int, int]]:
        """``tests``: name -> (ranks, test(node, all nodes)); name -> rank -> first instant."""
        first: dict[str, dict[int, int]] = {name: {} for name in tests}
        deadline = time.monotonic() + timeout_s
        while True:
            t0 = time.monotonic()
            now = self.nodes.nodes_now()
            self.rounds.append(time.monotonic() - t0)
            self.last = now
            for name, (ranks, test) in tests.items():
                for r in ranks:
                    node = now.get(r)
                    if r in first[name] or node is None or node["at_ns"] < self.since_ns:
                        continue
                    if test(node, now):
                        first[name][r] = node["at_ns"]
            done = sum(len(v) for v in first.values())
            total = sum(len(r) for r, _ in tests.values())
            if progress is not None:
                progress("hierclust: " + ", ".join(tests), done, total)
            if done == total or time.monotonic() > deadline:
                return first
            time.sleep(0.02)


def hierclust_partition(
    lab: NetnsLab,
    directory: Path,
    nodes_n: int,
    minority: int,
    fanout: int,
    witness: bool,
    *,
    tuning: dict[str, int] | None = None,
    after_s: float = AFTER_CUT_S,
    progress: Progress | None = None,
) -> dict[str, Any]:
    minority_ranks = set(range(minority))
    majority_ranks = set(range(minority, nodes_n))
    witness_host = nodes_n if witness else None
    with LabNodes(lab, directory, nodes_n, fanout, witness_host, tuning) as nodes:
        if witness and nodes.witness_host is None:
            raise PartitionError(
                f"--witness: the topology ({nodes_n} nodes, fan-out {fanout}) has no tie-breaker"
            )
        topo = nodes.topology
        root = topo.root.index
        nodes.start()
        nodes.wait_settled(progress=progress)
        before = nodes.leaders(nodes.nodes_now())
        cut_ns = time.monotonic_ns()
        lab.cut(range(minority))
        watch = Watch(nodes, cut_ns)

        def stopped(node: dict[str, Any], _all: dict[int, dict[str, Any]]) -> bool:
            return not node.get("in_primary")

        def decided(node: dict[str, Any], every: dict[int, dict[str, Any]]) -> bool:
            if not node.get("in_primary") or not minority_ranks <= held_off(node):
                return False
            return nodes.leaders(every).get(root) in majority_ranks

        got = watch.until(
            {"stopped": (minority_ranks, stopped), "decided": (majority_ranks, decided)},
            after_s,
            progress,
        )
        during = watch.last
        primary_during = sorted(r for r, n in during.items() if n.get("in_primary"))
        leaders_cut = nodes.leaders(during)
        heal_ns = time.monotonic_ns()
        lab.heal()
        everyone = set(range(nodes_n))
        groups = len(topo.by_index)

        def healed(node: dict[str, Any], every: dict[int, dict[str, Any]]) -> bool:
            return (
                bool(node.get("in_primary"))
                and not held_off(node) & everyone
                and len(nodes.leaders(every)) == groups
            )

        heal_watch = Watch(nodes, heal_ns)
        back = heal_watch.until({"healed": (everyone, healed)}, after_s, progress)["healed"]
        leaders_after = nodes.leaders(heal_watch.last)
    stopped_at, decided_at = got["stopped"], got["decided"]
    rounds = watch.rounds + heal_watch.rounds
    name = topo.node_name
    return {
        "system": "hierclust",
        "nodes": nodes_n,
        "minority": minority,
        "witness": witness,
        "minority_stopped_ms": _all_ms(stopped_at, minority, cut_ns),
        "majority_decided_ms": _all_ms(decided_at, len(majority_ranks), cut_ns),
        "heal_ms": _all_ms(back, nodes_n, heal_ns),
        "primary_side": side_of(primary_during, minority_ranks, majority_ranks),
        "version": __version__,
        "hierclust": {
            "topology": [
                {
                    "group": g.name,
                    "nodes": [name(r) for r in g.ranks] if g.is_leaf else None,
                    "slots": g.size,
                    "tiebreaker": g.tiebreaker is not None,
                }
                for g in topo.by_index
            ],  # fmt: skip
            "minority_nodes": [name(r) for r in sorted(minority_ranks)],
            "witness_host": None if witness_host is None else lab.address(witness_host),
            "leaders_before": {topo.by_index[g].name: name(r) for g, r in before.items()},
            "leaders_during_cut": {topo.by_index[g].name: name(r) for g, r in leaders_cut.items()},
            "leaders_after_heal": {
                topo.by_index[g].name: name(r) for g, r in leaders_after.items()
            },
            "in_primary_during_cut": [name(r) for r in primary_during],
            "stopped_ms": {name(r): _ms(t, cut_ns) for r, t in sorted(stopped_at.items())},
            "decided_ms": {name(r): _ms(t, cut_ns) for r, t in sorted(decided_at.items())},
            "healed_ms": {name(r): _ms(t, heal_ns) for r, t in sorted(back.items())},
            "poll_round_ms_median": round(statistics.median(rounds) * 1000, 1),
            "tuning_given": dict(tuning or {}),
            "tuning_root": {
                k: getattr(topo.root.tuning, k)
                for k in (
                    "heartbeat_ms",
                    "suspect_after_ms",
                    "confirm_ms",
                    "lease_ms",
                    "election_timeout_ms",
                    "slot_grace_ms",
                )
            },  # fmt: skip
            "load_avg_1m": load_avg(),
        },
    }


def side_of(primary: list[int], minority: set[int], majority: set[int]) -> str:
    """Which side held the primary component during the cut: minority, majority, both, none."""
    held = set(primary)
    sides = [s for s, ranks in (("minority", minority), ("majority", majority)) if held & ranks]
    return "both" if len(sides) == 2 else (sides[0] if sides else "none")


def corosync_partition(
    lab: NetnsLab,
    directory: Path,
    nodes_n: int,
    minority: int,
    *,
    after_s: float = AFTER_CUT_S,
    progress: Progress | None = None,
) -> dict[str, Any]:
    hosts = list(range(nodes_n))
    minority_hosts = set(range(minority))
    majority_hosts = set(hosts) - minority_hosts
    with CorosyncLab(lab, directory, hosts) as cs:
        cs.start(progress)
        formed_s = cs.wait_formed(progress=progress)
        totem = cs.totem(0)
        ids = {cs.node_id(h) for h in hosts}
        maj_ids = frozenset(cs.node_id(h) for h in majority_hosts)
        min_ids = frozenset(cs.node_id(h) for h in minority_hosts)
        cut_ns = time.monotonic_ns()
        lab.cut(minority_hosts)
        # a side keeps quorum only with more than half of the votes
        maj_quorate = len(majority_hosts) * 2 > nodes_n
        stopped = cs.wait_state(
            minority_hosts, lambda m: m <= min_ids, False, cut_ns, after_s, "minority blocked",
            progress,
        )  # fmt: skip
        decided = cs.wait_state(
            majority_hosts, lambda m: m == maj_ids, maj_quorate, cut_ns, after_s,
            "majority membership", progress,
        )  # fmt: skip
        polled_cut = {lab.address(h): cs.status(h) for h in hosts}
        heal_ns = time.monotonic_ns()
        lab.heal()
        healed = cs.wait_state(
            hosts, lambda m: m == frozenset(ids), True, heal_ns, after_s, "merged", progress
        )
        polled_heal = {lab.address(h): cs.status(h) for h in hosts}
    primary = [h for h in hosts if polled_cut[lab.address(h)]["quorate"]]
    return {
        "system": "corosync",
        "nodes": nodes_n,
        "minority": minority,
        "witness": False,
        "minority_stopped_ms": _all_ms(stopped, minority, cut_ns),
        "majority_decided_ms": _all_ms(decided, len(majority_hosts), cut_ns)
        if maj_quorate
        else None,
        "heal_ms": _all_ms(healed, nodes_n, heal_ns),
        "primary_side": side_of(primary, minority_hosts, majority_hosts),
        "version": f"corosync {corosync_version()}",
        "corosync": {
            "formed_s": round(formed_s, 2),
            "totem_ms": totem,
            "majority_membership_ms": _ms(max(decided.values()), cut_ns)
            if len(decided) == len(majority_hosts)
            else None,
            "stopped_ms": {lab.address(h): _ms(t, cut_ns) for h, t in sorted(stopped.items())},
            "decided_ms": {lab.address(h): _ms(t, cut_ns) for h, t in sorted(decided.items())},
            "healed_ms": {lab.address(h): _ms(t, heal_ns) for h, t in sorted(healed.items())},
            "polled_during_cut": {
                a: {"quorate": s["quorate"], "members": s["members"], "blocked": s["blocked"]}
                for a, s in polled_cut.items()
            },
            "polled_after_heal": {
                a: {"quorate": s["quorate"], "members": len(s["members"])}
                for a, s in polled_heal.items()
            },
            "witness": "none: Corosync's tie-breaker (qdevice + qnetd) is not run here",
            "load_avg_1m": load_avg(),
        },
    }


def partition_runs(
    nodes_n: int,
    minority: int,
    *,
    fanout: int | None = None,
    witness: bool = False,
    corosync: bool = False,
    tuning: dict[str, int] | None = None,
    repeats: int = 1,
    prefix: str = LAB_PREFIX,
    subnet: str = LAB_SUBNET,
    after_s: float = AFTER_CUT_S,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``repeats`` runs of hierclust (then of Corosync, when asked) on one lab of ``nodes_n``
    hosts (plus the witness's), torn down at the end."""
    if not 1 <= minority <= nodes_n // 2:
        raise PartitionError(f"--minority: 1..{nodes_n // 2} (at most half of {nodes_n})")
    lab = NetnsLab(f"{prefix}{os.getpid() % 100000}", nodes_n + (1 if witness else 0), subnet)
    lab.setup()
    hier: list[dict[str, Any]] = []
    coro: list[dict[str, Any]] = []
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="hcbench-part-") as where:
                hier.append(
                    hierclust_partition(
                        lab,
                        Path(where) / "hierclust",
                        nodes_n,
                        minority,
                        fanout or minority,
                        witness,
                        tuning=tuning,
                        after_s=after_s,
                        progress=progress,
                    )
                )
                if corosync:
                    coro.append(
                        corosync_partition(
                            lab,
                            Path(where) / "corosync",
                            nodes_n,
                            minority,
                            after_s=after_s,
                            progress=progress,
                        )
                    )
    finally:
        left = lab.teardown()
    if left:
        raise PartitionError(f"processes left in the lab's namespaces: {left}")
    return hier, coro


def partition_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the three figures (None when a run missed one: it is then reported as such),
    the primary side of every run, the repeats."""
    out: dict[str, Any] = {}
    for key in FIELDS:
        values = [r[key] for r in runs]
        out[key] = None if any(v is None for v in values) else round(statistics.median(values), 1)
        out[f"{key}_runs"] = values
    out["primary_side"] = sorted({r["primary_side"] for r in runs})
    out["repeats"] = len(runs)
    out["version"] = runs[0]["version"]
    return out
