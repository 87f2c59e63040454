"""Swarm fuzzing: random fault mixes, safety checked throughout, liveness after healing.

Each schedule is a pure function of its seed: a small generated topology (sometimes with a witness
on an even group), a boot, a fault phase with a random mix of crashes, restarts with and without
disk, pauses, partitions (by subtree, random split, one-way), loss, duplication and clock skew,
then a heal and a liveness phase. Every node's monotonic clock has its own origin (days apart)
and its wall clock its own error. Most schedules also put a few random nodes or leaf groups into
maintenance or drain, and back, from random nodes, and some step a wall clock by an hour or slew
it (each drawn from a separate stream of the seed, so the fault mix of a seed does not depend on
them). A failing seed is reported with the one command
reproducing it.

Liveness, after every fault is healed and the liveness window has passed
(:func:`liveness_window_ns`: ``3 x detection timeout``, with detection timeout =
``suspect_after_ms + confirm_ms + election_timeout_ms``: notice a silent leader or member,
confirm, re-elect; and in deep trees at least one detection timeout plus two election timeouts
per tier above the leaves, for a re-election that climbs tier by tier, each new leader joining
the group above and waiting out the vote-free election timeout it inherits with its slot):
- every group whose live members hold a majority of its votes has exactly one leader, agreed on by
  all of its live members, and that leader is live;
- every live node knows the failure of every node that has stayed crashed (of the newest
  incarnation that any node learned was alive: a node that came back and crashed again before
  anyone heard of it is covered by its old notice);
- every live node sees the same admin mode for every node, and no node in maintenance or drained
  leads a leaf group that has a live active member;
- no live node holds a subtree cut off when that group and every group above it are led.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hierclust.core.timeouts import MS
from hierclust.core.types import ACTIVE, ADMIN_MODES, Command
from hierclust.sim.cpu import SETTLED_BUSY, CpuModel, attach
from hierclust.sim.network import Network, Partition
from hierclust.sim.scenario import all_led
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document
from hierclust.topology.model import Topology


@dataclass(slots=True)
class Outcome:
    seed: int
    nodes: int
    fanout: int
    faults: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    liveness: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.liveness


def schedule_topology(rng: random.Random, nodes: int | None, fanout: int | None) -> Topology:
    count = nodes or rng.randint(3, 40)
    spread = fanout or rng.randint(3, 7)
    # balanced sizes: the fuzzer covers even groups too (and old seeds replay the same topology)
    document = generate_document(count, spread, name="fz", sizes="balanced")
    roll = rng.random()
    if roll < 0.2:
        document["group"]["fz"]["tiebreaker"] = {"kind": "witness", "address": "127.0.0.1:1"}
    elif roll < 0.3:
        document["group"]["fz"]["tiebreaker"] = {"kind": "disk", "path": "/sim/fz.lease"}
    return from_dict(document, source=f"fuzz(nodes={count}, fanout={spread})")


def detection_timeout_ns(topology: Topology) -> int:
    t = topology.tuning
    return (t.suspect_after_ms + t.confirm_ms + t.election_timeout_ms) * MS


def liveness_window_ns(topology: Topology) -> int:
    """How long after the heal liveness is judged (see the module docstring)."""
    detection = detection_timeout_ns(topology)
    election = topology.tuning.election_timeout_ms * MS
    return max(3 * detection, detection + 2 * (topology.depth - 1) * election)


def run_schedule(
    seed: int,
    *,
    nodes: int | None = None,
    fanout: int | None = None,
    fault_ms: int = 6_000,
    admin: bool = True,
    clocks: bool = True,
    load: float = 0.0,
) -> Outcome:
    """One schedule; ``admin=False`` leaves out the operator commands, ``clocks=False`` the wall
    clock steps and slews (each comes from its own random stream of the seed, so leaving it out
    does not change the other faults). ``load`` > 0: the nodes run in two hosts with the CPU
    model of ``sim/cpu.py``, step costs scaled so that a host's settled work is about ``load``
    of its CPU (their loops lag, and local health acts, while faults hit them)."""
    rng = random.Random(seed)
    topology = schedule_topology(rng, nodes, fanout)
    outcome = Outcome(seed, topology.num_nodes, max(g.size for g in topology.by_index))
    network = Network(
        random.Random(seed + 1), latency_ns=200_000, jitter_ns=rng.choice([0, 300_000, 2 * MS])
    )
    sim = Simulator(topology, seed=seed, network=network)
    boot_end = 10_000 * MS
    if load > 0:
        per_host = -(-topology.num_nodes // 2)
        attach(sim, CpuModel(per_host=per_host, slow=load / (SETTLED_BUSY * per_host)))
        boot_end = 30_000 * MS
    sim.start_all(spread_ns=topology.tuning.heartbeat_ms * MS)
    while not all_led(sim) and sim.now < boot_end:
        sim.run_until(sim.now + 100 * MS)
    if not all_led(sim):
        outcome.liveness.append(
            f"boot: not every group elected a leader within {boot_end // (1000 * MS)} s"
        )
        outcome.violations = [str(v) for v in sim.checker.violations]
        return outcome
    start = sim.now
    plan_faults(sim, rng, start, start + fault_ms * MS, outcome.faults)
    if admin:
        plan_admin(sim, random.Random(seed ^ 0xAD317), start, start + fault_ms * MS, outcome.faults)
    if clocks:
        plan_clocks(sim, random.Random(seed ^ 0xC10C), start, start + fault_ms * MS, outcome.faults)
    watch_primaries(sim, start + fault_ms * MS)
    heal(sim)
    sim.run_until(sim.now + liveness_window_ns(topology))
    outcome.violations = [str(v) for v in sim.checker.violations]
    outcome.liveness = check_liveness(sim)
    return outcome


def watch_primaries(sim: Simulator, end_ns: int) -> None:
    """Run to ``end_ns``, showing the checker the primary component every heartbeat."""
    step = sim.topology.tuning.heartbeat_ms * MS
    while sim.now < end_ns:
        sim.run_until(min(sim.now + step, end_ns))
        sim.check_primaries()


def plan_faults(sim: Simulator, rng: random.Random, start: int, end: int, log: list[str]) -> None:
    """Schedule a random mix of faults in ``[start, end)``; everything network-wide heals at end."""
    topology = sim.topology
    n = topology.num_nodes
    count = rng.randint(1, 6)
    # Crash at most a minority of each leaf group, so a healed cluster can still reach quorum.
    budget = {leaf.index: (leaf.size - 1) // 2 for leaf in topology.leaves}
    kinds = ["crash", "restart", "pause", "partition", "loss", "duplicate", "skew"]
    for _ in range(count):
        kind = rng.choice(kinds)
        at = start + int(rng.random() * (end - start) * 0.8)
        span = int(rng.uniform(0.3, 3.0) * 1e9)
        rank = rng.randrange(n)
        if kind in ("crash", "restart"):
            leaf = topology.leaf_of(rank).index
            if budget[leaf] <= 0:
                continue
            budget[leaf] -= 1
            keep = rng.random() < 0.5
            back = kind == "restart"
            log.append(
                f"{at / MS:.0f}ms crash {topology.node_name(rank)}"
                + (
                    f", restart {'with' if keep else 'without'} disk at +{span / MS:.0f}ms"
                    if back
                    else ""
                )
            )
            sim.at(at, _crash(rank))
            if back:
                sim.at(min(at + span, end), _restart(rank, keep))
        elif kind == "pause":
            log.append(f"{at / MS:.0f}ms pause {topology.node_name(rank)} {span / MS:.0f}ms")
            sim.at(at, _pause(rank, span))
        elif kind == "partition":
            partition = random_partition(topology, rng)
            log.append(
                f"{at / MS:.0f}ms partition {describe(topology, partition)} for {span / MS:.0f}ms"
            )
            sim.at(at, _partition(partition))
            sim.at(min(at + span, end), _partition(None))
        elif kind == "loss":
            loss = rng.choice([0.05, 0.1, 0.2, 0.3])
            log.append(f"{at / MS:.0f}ms loss {loss:.0%} for {span / MS:.0f}ms")
            sim.at(at, _loss(loss, 0.0))
            sim.at(min(at + span, end), _loss(0.0, 0.0))
        elif kind == "duplicate":
            dup = rng.choice([0.05, 0.2])
            log.append(f"{at / MS:.0f}ms duplicate {dup:.0%} for {span / MS:.0f}ms")
            sim.at(at, _loss(0.0, dup))
            sim.at(min(at + span, end), _loss(0.0, 0.0))
        else:
            ppm = rng.choice([-20_000, -5_000, 5_000, 20_000])
            log.append(f"{at / MS:.0f}ms skew {topology.node_name(rank)} {ppm:+d}ppm")
            sim.at(at, _skew(rank, ppm))


def plan_admin(sim: Simulator, rng: random.Random, start: int, end: int, log: list[str]) -> None:
    """Up to three operator commands (maintenance, drain or back to active) on a few ranks or a
    whole leaf group, each issued by a random live node."""
    topology = sim.topology
    n = topology.num_nodes
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        at = start + int(rng.random() * (end - start))
        mode = rng.choice([1, 1, 2, 0])
        if rng.random() < 0.3:
            leaf = topology.leaf_of(rng.randrange(n))
            first, count = leaf.first_rank, leaf.size
        else:
            first = rng.randrange(n)
            count = min(rng.randint(1, 3), n - first)
        log.append(
            f"{at / MS:.0f}ms {ADMIN_MODES[mode]} {topology.names.fold(first, first + count)}"
        )
        sim.at(at, _admin(mode, first, count, rng.random()))


def plan_clocks(sim: Simulator, rng: random.Random, start: int, end: int, log: list[str]) -> None:
    """Up to two wall-clock faults: a step of an hour either way, or a slew of half a second over
    two seconds, on a random node (every node's monotonic clock already has its own origin)."""
    topology = sim.topology
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        at = start + int(rng.random() * (end - start))
        rank = rng.randrange(topology.num_nodes)
        name = topology.node_name(rank)
        if rng.random() < 0.5:
            delta = rng.choice([-3_600_000, 3_600_000]) * MS
            log.append(f"{at / MS:.0f}ms wall clock of {name} steps {delta // MS:+d}ms")
            sim.at(at, _wall_step(rank, delta))
        else:
            delta = rng.choice([-500, 500]) * MS
            log.append(f"{at / MS:.0f}ms wall clock of {name} slews {delta // MS:+d}ms over 2s")
            sim.at(at, _wall_slew(rank, delta))


def _wall_step(rank: int, delta: int) -> Callable[[Simulator], None]:
    return lambda sim: sim.step_wall(rank, delta)


def _wall_slew(rank: int, delta: int) -> Callable[[Simulator], None]:
    return lambda sim: sim.slew_wall(rank, delta, 2_000 * MS)


def _admin(mode: int, first: int, count: int, pick: float) -> Callable[[Simulator], None]:
    def issue(sim: Simulator) -> None:
        live = sim.live_ranks()
        if live:
            sim.command(live[int(pick * len(live))], Command("admin", (mode, ((first, count),))))

    return issue


def random_partition(topology: Topology, rng: random.Random) -> Partition:
    """Cut off a random subtree (a site), or split the ranks at a random point; maybe one-way."""
    if rng.random() < 0.5 and len(topology.by_index) > 1:
        group = rng.choice([g for g in topology.by_index if g is not topology.root])
        ranges = [(group.first_rank, group.end_rank, 1)]
    else:
        cut = rng.randrange(1, topology.num_nodes) if topology.num_nodes > 1 else 1
        ranges = [(cut, topology.num_nodes, 1)]
    return Partition(ranges, one_way=rng.random() < 0.2)


def describe(topology: Topology, partition: Partition) -> str:
    sides = ", ".join(topology.names.fold(first, end) for first, end, _side in partition.ranges)
    return f"{'one-way ' if partition.one_way else ''}{{{sides}}} from the rest"


def _crash(rank: int) -> Callable[[Simulator], None]:
    return lambda sim: sim.crash(rank) if sim.nodes[rank] is not None else None


def _restart(rank: int, keep: bool) -> Callable[[Simulator], None]:
    return lambda sim: sim.restart(rank, keep_disk=keep)


def _pause(rank: int, span: int) -> Callable[[Simulator], None]:
    return lambda sim: sim.pause(rank, span)


def _partition(partition: Partition | None) -> Callable[[Simulator], None]:
    return lambda sim: sim.partition(partition)


def _loss(loss: float, dup: float) -> Callable[[Simulator], None]:
    return lambda sim: sim.set_loss(loss, dup)


def _skew(rank: int, ppm: int) -> Callable[[Simulator], None]:
    return lambda sim: sim.set_skew(rank, ppm)


def heal(sim: Simulator) -> None:
    sim.partition(None)
    sim.set_loss(0.0, 0.0)
    for rank, slot in enumerate(sim.slots):
        if slot.skewed and slot.skew_ppm:
            sim.set_skew(rank, 0)


def check_liveness(sim: Simulator) -> list[str]:
    problems: list[str] = []
    topology = sim.topology
    for group in topology.by_index:
        members = sim.members_now(group.index)
        tie = 1 if group.tiebreaker is not None and group.index in sim.witnesses else 0
        if len(members) + tie < group.quorum:
            continue
        views = {m: sim.nodes[m].leader_of(group.index) for m in members}
        leaders = set(views.values())
        if len(leaders) != 1 or None in leaders:
            problems.append(
                f"group {group.name}: members disagree on the leader: {_names(topology, views)}"
            )
            continue
        (leader,) = leaders
        if leader is None or sim.nodes[leader] is None:
            problems.append(f"group {group.name}: leader {leader} is not live")
    problems.extend(check_admin(sim))
    problems.extend(check_reach(sim))
    crashed = sorted(sim.crashed)
    if crashed:
        # A node that came back and crashed again before anyone heard of it is still down: the old
        # failure notice tells the truth. What must be known is the failure of the newest
        # incarnation that the cluster ever learned was alive.
        announced = dict.fromkeys(crashed, 1)
        for identity in sim.records.learned:
            if identity[0] == "alive" and identity[1] in announced:
                node, incarnation = identity[1], identity[2]
                announced[node] = max(announced[node], incarnation)
        for rank in sim.live_ranks():
            failed: dict[int, int] = {}
            for notice in sim.nodes[rank].known_notices():
                if notice.identity[0] == "failed":
                    failed[notice.node] = max(failed.get(notice.node, 0), notice.incarnation)
            for victim in crashed:
                if failed.get(victim, 0) < announced[victim]:
                    problems.append(
                        f"node {topology.node_name(rank)} does not know that "
                        f"{topology.node_name(victim)} (incarnation {announced[victim]}) failed"
                    )
                    if len(problems) > 20:
                        return problems
    return problems


def check_reach(sim: Simulator) -> list[str]:
    """No live node holds a subtree cut off once that group and every group above it has a
    live leader that all its live members follow (its slot is filled again)."""
    topology = sim.topology
    led = {g.index for g in topology.by_index if sim.leader_of(g.index) is not None}
    problems: list[str] = []
    for rank in sim.live_ranks():
        for group in sim.nodes[rank].unreachable_groups():
            above = topology.path(topology.by_index[group].first_rank)
            chain = above[[g.index for g in above].index(group) :]
            if all(g.index in led for g in chain):
                problems.append(
                    f"node {topology.node_name(rank)} holds {topology.by_index[group].name} "
                    "cut off, but it and every group above it are led"
                )
                if len(problems) > 20:
                    return problems
    return problems


def check_admin(sim: Simulator) -> list[str]:
    """Everyone agrees on every node's admin mode; no inactive node leads a leaf group that has
    a live active member to hand it to."""
    topology = sim.topology
    live = sim.live_ranks()
    if not live:
        return []
    problems: list[str] = []
    modes = {r: tuple(sim.nodes[r].admin_mode(x) for x in range(topology.num_nodes)) for r in live}
    if len(set(modes.values())) > 1:
        problems.append("live nodes disagree on admin modes")
        return problems
    mode = modes[live[0]]
    for leaf in topology.leaves:
        leader = sim.leader_of(leaf.index)
        if leader is None or mode[leader] == ACTIVE:
            continue
        if any(sim.nodes[r] is not None and mode[r] == ACTIVE for r in leaf.ranks):
            problems.append(
                f"group {leaf.name}: {topology.node_name(leader)} is {ADMIN_MODES[mode[leader]]} "
                "but still leads, with an active member alive"
            )
    return problems


def _names(topology: Topology, views: dict[int, Any]) -> str:
    return ", ".join(
        f"{topology.node_name(m)}->{topology.node_name(v) if v is not None and v >= 0 else None}"
        for m, v in views.items()
    )


def fuzz(
    schedules: int,
    seed: int,
    *,
    nodes: int | None = None,
    fanout: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    load: float = 0.0,
) -> dict[str, Any]:
    """Run ``schedules`` schedules with seeds ``seed, seed+1, ...`` (on lagging hosts with
    ``load``, see :func:`run_schedule`); the JSON summary."""
    failed: list[Outcome] = []
    violations = liveness = 0
    for i in range(schedules):
        outcome = run_schedule(seed + i, nodes=nodes, fanout=fanout, load=load)
        violations += len(outcome.violations)
        liveness += 1 if outcome.liveness else 0
        if not outcome.ok:
            failed.append(outcome)
        if progress:
            progress(i + 1, schedules)
    extra = (f" --nodes {nodes}" if nodes else "") + (f" --fanout {fanout}" if fanout else "")
    extra += f" --load {load}" if load else ""
    return {
        "schedules": schedules,
        "seed": seed,
        "load": load,
        "violations": violations,
        "liveness_failures": liveness,
        "failed_seeds": [o.seed for o in failed],
        "reproduce": [
            f"hierclust sim fuzz --schedules 1 --seed {o.seed}{extra} --json" for o in failed
        ],
        "failures": [
            {
                "seed": o.seed,
                "nodes": o.nodes,
                "faults": o.faults,
                "violations": o.violations[:5],
                "liveness": o.liveness[:5],
            }
            for o in failed[:10]
        ],
    }
