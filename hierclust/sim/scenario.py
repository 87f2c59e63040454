"""Ready-made simulations: boot a topology, measure a steady window, kill one node, report.

The report has the fields of the report schema (docs/architecture.md §5, shared with the UDP
benchmark), ``mode = "sim"``; simulator-only diagnostics sit under ``"sim"``.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hierclust import __version__
from hierclust.core.timeouts import MS
from hierclust.core.types import MAINTENANCE, Command, Failure
from hierclust.sim.cpu import CpuModel, attach
from hierclust.sim.network import Network
from hierclust.sim.simulator import Simulator
from hierclust.stats import percentile
from hierclust.topology.model import Topology

ROLES = ("leaf", "leader", "root-leader")
REPORT_FIELDS = (
    "mode",
    "nodes",
    "fanout",
    "depth",
    "victim",
    "victim_role",
    "kill_at_ms",
    "detect_ms",
    "notify_p50_ms",
    "notify_p99_ms",
    "notify_max_ms",
    "notified",
    "survivors",
    "reelect_ms",
    "groups_disturbed",
    "elections_elsewhere",
    "false_positives",
    "msgs_per_node_per_s",
    "bytes_per_node_per_s",
    "cpu_cores",
    "seed",
    "version",
)

Progress = Callable[[int, int, str], None]


class ScenarioError(RuntimeError):
    """The cluster did not reach the state a scenario needs (e.g. no leader everywhere)."""


@dataclass(frozen=True, slots=True)
class KillPlan:
    kill: str = "leaf"  # leaf | leader | root-leader | a node name
    seed: int = 1
    loss: float = 0.0
    latency_ms: float = 0.2
    jitter_ms: float = 0.3
    boot_limit_ms: int = 10_000
    steady_ms: int = 1_000
    after_ms: int = 3_000
    planned: bool = False  # put the victim into maintenance first, then stop it
    handover_ms: int = 1_000  # with planned: virtual time between the command and the stop
    # a starved CPU (sim/cpu.py): 0 = none (every step in zero time); F > 0 = ranks in hosts of
    # ``per_host`` nodes, each host one serial CPU whose step costs are scaled by F
    slow: float = 0.0
    per_host: int = 1000


def led_groups(sim: Simulator, rank: int) -> list[int]:
    """Groups whose valid lease ``rank`` holds now."""
    now = sim.now
    return [
        group
        for group, holders in sim.checker.leases.items()
        if rank in holders and holders[rank][1] > now
    ]


def lease_holder(sim: Simulator, group: int) -> int | None:
    """The one live node holding a valid lease of ``group``, or None (none, or several)."""
    holders = sim.checker.leases.get(group)
    if not holders:
        return None
    now = sim.now
    nodes = sim.nodes
    found = None
    for rank, (_term, end) in holders.items():
        if end > now and nodes[rank] is not None:
            if found is not None:
                return None
            found = rank
    return found


def all_led(sim: Simulator) -> bool:
    return all(lease_holder(sim, g.index) is not None for g in sim.topology.by_index)


def pick_victim(sim: Simulator, kill: str, rng: random.Random) -> tuple[int, str]:
    topology = sim.topology
    root_leader = lease_holder(sim, topology.root.index)
    if kill == "root-leader":
        if root_leader is None:
            raise ScenarioError("the root group has no leader to kill")
        return root_leader, "root-leader"
    if kill in ("leaf", "leader"):
        leaves = list(topology.leaves)
        rng.shuffle(leaves)
        for leaf in leaves:
            leader = lease_holder(sim, leaf.index)
            if leader is None:
                continue
            if kill == "leaf":
                others = [r for r in leaf.ranks if r != leader and sim.nodes[r] is not None]
                if others:
                    return rng.choice(others), "leaf"
            elif leaf.parent is not None and led_groups(sim, leader) == [leaf.index]:
                return leader, "leader"
        raise ScenarioError(f"no node fits --kill {kill} in this topology")
    try:
        rank = topology.rank(kill)
    except KeyError as exc:
        raise ScenarioError(str(exc.args[0])) from None
    led = led_groups(sim, rank)
    role = "leaf" if not led else ("root-leader" if rank == root_leader else "leader")
    return rank, role


def sits_in(sim: Simulator, rank: int) -> set[int]:
    """Groups ``rank`` sits in: its path up to the parent of the highest group it leads."""
    path = sim.topology.path(rank)
    led = set(led_groups(sim, rank))
    inside = {path[0].index}
    for lower, upper in zip(path, path[1:], strict=False):
        if lower.index not in led:
            break
        inside.add(upper.index)
    return inside


def run_kill(
    topology: Topology,
    plan: KillPlan,
    *,
    progress: Progress | None = None,
    sizer: Callable[[Any], int] | None = None,
    tiebreakers: bool = True,
) -> dict[str, Any]:
    """Boot, wait for leaders, measure a steady window, kill, measure; one report
    (docs/architecture.md §5)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    network = Network(
        random.Random(plan.seed),
        latency_ns=int(plan.latency_ms * MS),
        jitter_ns=int(plan.jitter_ms * MS),
        loss=plan.loss,
    )
    if sizer is None:
        sizer = codec_sizer(topology.name)
    sim = Simulator(topology, seed=plan.seed, network=network, sizer=sizer, tiebreakers=tiebreakers)
    cpu_model: CpuModel | None = None
    if plan.slow > 0:
        cpu_model = CpuModel(per_host=plan.per_host, slow=plan.slow)
        attach(sim, cpu_model)
    heartbeat_ns = topology.tuning.heartbeat_ms * MS
    total_ns = plan.boot_limit_ms * MS + plan.steady_ms * MS + plan.after_ms * MS
    sim.start_all(spread_ns=heartbeat_ns)
    step_ns = 100 * MS

    def advance(until_ns: int, phase: str, shown_offset_ns: int = 0) -> None:
        while sim.now < until_ns:
            sim.run_until(min(sim.now + step_ns, until_ns))
            if progress:
                progress(sim.now + shown_offset_ns, total_ns, phase)

    while not all_led(sim):
        if sim.now >= plan.boot_limit_ms * MS:
            count = sum(1 for g in topology.by_index if lease_holder(sim, g.index) is not None)
            raise ScenarioError(
                f"after {plan.boot_limit_ms} ms only {count} of {len(topology.by_index)} groups "
                f"have a leader ({boot_counts(sim, sim.now)})"
            )
        sim.run_until(sim.now + step_ns)
        if progress:
            progress(sim.now, total_ns, "electing")
    boot_ms = sim.now / MS
    boot_ns = sim.now
    # Steady window: count datagrams, let leases settle.
    sim.mark()
    steady_start = sim.now
    advance(steady_start + plan.steady_ms * MS, "steady")
    live = len(sim.live_ranks())
    steady_s = (sim.now - steady_start) / 1e9
    msgs_per_node_per_s = sim.records.sent_since_mark / live / steady_s
    bytes_per_msg = sim.records.bytes_sampled / sim.records.samples if sim.records.samples else None
    # the report's bytes per datagram are the ones sampled up to here: stop encoding samples
    # (the codec costs about 3 % of a run at 10^5 nodes, the rest of which comes after this)
    sim.sizer = None
    fp_before = sim.checker.false_positives
    # The kill.
    victim, role = pick_victim(sim, plan.kill, random.Random(plan.seed * 31 + 7))
    handover: dict[str, Any] | None = None
    if plan.planned:
        handover = planned_handover(sim, victim, plan.handover_ms * MS, advance)
    inside = sits_in(sim, victim)
    led = led_groups(sim, victim)
    kill_at = sim.now
    sim.mark()
    sim.crash(victim)
    incarnation = sim.slots[victim].incarnation
    end = kill_at + plan.after_ms * MS
    advance(end, "after kill", total_ns - end)
    records = sim.records
    identity = ("failed", victim, incarnation)
    learned = records.learned.get(identity, {})
    survivors = sim.live_ranks()
    delays = [(learned[r] - kill_at) / MS for r in survivors if r in learned]
    detected = records.detected.get(identity)
    reelect: float | None = None
    if led:
        firsts: list[int | None] = []
        for group in led:
            times = [
                t for t, g, r, _ in records.elected if g == group and t >= kill_at and r != victim
            ]
            firsts.append(min(times) if times else None)
        if all(t is not None for t in firsts):
            reelect = max((t - kill_at) / MS for t in firsts if t is not None)
    disturbed = sorted(g for g in records.view_changes if g not in inside)
    elsewhere = [e for e in records.elections if e[0] >= kill_at and e[1] not in inside]
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    report: dict[str, Any] = {
        "mode": "sim",
        "nodes": topology.num_nodes,
        "fanout": max(g.size for g in topology.by_index),
        "depth": topology.depth,
        "victim": topology.node_name(victim),
        "victim_role": role,
        "kill_at_ms": round(kill_at / MS, 3),
        "detect_ms": round((detected[0] - kill_at) / MS, 3) if detected else None,
        "notify_p50_ms": round(percentile(delays, 0.5), 3) if delays else None,
        "notify_p99_ms": round(percentile(delays, 0.99), 3) if delays else None,
        "notify_max_ms": round(max(delays), 3) if delays else None,
        "notified": len(delays),
        "survivors": len(survivors),
        "reelect_ms": round(reelect, 3) if reelect is not None else None,
        "groups_disturbed": len(disturbed),
        "elections_elsewhere": len(elsewhere),
        "false_positives": sim.checker.false_positives,
        "msgs_per_node_per_s": round(msgs_per_node_per_s, 3),
        "bytes_per_node_per_s": (
            round(msgs_per_node_per_s * bytes_per_msg, 1) if bytes_per_msg is not None else None
        ),
        "cpu_cores": round(cpu / wall, 3) if wall > 0 else None,
        "seed": plan.seed,
        "version": __version__,
        "sim": {
            "boot_ms": round(boot_ms, 3),
            "virtual_s": round(sim.now / 1e9, 3),
            "wall_s": round(wall, 3),
            "events": sim.events_run,
            "violations": [str(v) for v in sim.checker.violations],
            "false_positives_in_steady": fp_before,
            "excused_positives": sim.checker.excused_positives,
            "disturbed_groups": [topology.by_index[g].name for g in disturbed[:10]],
            "detector": topology.node_name(detected[1]) if detected else None,
        },
    }
    if cpu_model is not None:
        # (only for loaded runs: the plain report, and its golden digests, stay as they were)
        report["sim"]["cpu"] = {**cpu_model.summary(sim.now), "boot": boot_counts(sim, boot_ns)}
    if handover is not None:
        handover["departure_planned"] = departure_planned(sim, victim, incarnation)
        report["sim"]["planned"] = handover
    return report


def boot_counts(sim: Simulator, until_ns: int) -> dict[str, int]:
    """What the boot did up to ``until_ns``: elections started, distinct (group, term) pairs,
    leaderships won, and the most elections one group held."""
    elections = [e for e in sim.records.elections if e[0] <= until_ns]
    per_group: dict[int, int] = {}
    for _t, group, _rank, _term in elections:
        per_group[group] = per_group.get(group, 0) + 1
    return {
        "elections_started": len(elections),
        "terms": len({(g, term) for _t, g, _r, term in elections}),
        "leaderships_won": sum(1 for e in sim.records.elected if e[0] <= until_ns),
        "busiest_group_elections": max(per_group.values(), default=0),
    }


def departure_planned(sim: Simulator, victim: int, incarnation: int) -> bool | None:
    """Whether the failure notice of ``victim`` that live nodes hold says planned (None: none)."""
    for rank in sim.live_ranks():
        for n in sim.nodes[rank].known_notices():
            if type(n) is Failure and n.node == victim and n.incarnation == incarnation:
                return n.planned
    return None


def planned_handover(
    sim: Simulator, victim: int, settle_ns: int, advance: Callable[[int, str], None]
) -> dict[str, Any]:
    """Put ``victim`` into maintenance (issued by the lowest other live rank) and let it hand
    over what it leads: when each of its groups had a new leader, and elections elsewhere."""
    led = led_groups(sim, victim)
    issued = sim.now
    issuer = next(r for r in sim.live_ranks() if r != victim)
    sim.command(issuer, Command("admin", (MAINTENANCE, ((victim, 1),))))
    advance(issued + settle_ns, "maintenance")
    firsts = [
        min((t for t, g, r, _ in sim.records.elected if g == group and t >= issued and r != victim),
            default=None)
        for group in led
    ]  # fmt: skip
    done = [t for t in firsts if t is not None]
    return {
        "issuer": sim.topology.node_name(issuer),
        "groups_led": len(led),
        "handed_over": len(done),
        "handover_ms": round((max(done) - issued) / MS, 3)
        if done and len(done) == len(led)
        else None,
        "still_leading": len(led_groups(sim, victim)),
        "elections_elsewhere": sum(
            1 for t, g, _, _ in sim.records.elections if t >= issued and g not in led
        ),
    }


def deterministic_view(report: dict[str, Any]) -> dict[str, Any]:
    """The report without wall-clock fields, for comparing two runs of one seed."""
    same = {k: v for k, v in report.items() if k not in ("cpu_cores", "sim")}
    same["sim"] = {k: v for k, v in report["sim"].items() if k != "wall_s"}
    return same


def codec_sizer(cluster: str) -> Callable[[Any], int]:
    """Bytes on the wire of a message: the real codec (CBOR + 38-byte header and tag)."""
    from hierclust.codec import Codec, Keyring, MessageRegistry

    codec = Codec(
        cluster=cluster,
        node=0,
        incarnation=1,
        keyring=Keyring(1, {1: bytes(32)}),
        registry=MessageRegistry.from_module(),
    )
    return lambda msg: len(codec.encode(msg, 1))


def median_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field medians of numeric report fields (others from the first run)."""
    summary: dict[str, Any] = {}
    for key in REPORT_FIELDS:
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        if values and not isinstance(runs[0][key], bool) and key not in ("seed", "nodes"):
            summary[key] = round(statistics.median(values), 3)
        else:
            summary[key] = runs[0].get(key)
    return summary
