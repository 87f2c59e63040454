"""Operator modes (maintenance, drain) in the simulator: planned work is not reported as failure,
and a leader going into maintenance hands its groups over without an election timeout."""

from __future__ import annotations

import random

from hierclust.core.messages import Handoff
from hierclust.core.node import Node
from hierclust.core.timeouts import MS
from hierclust.core.types import (
    ACTIVE,
    DRAINED,
    MAINTENANCE,
    Admin,
    Command,
    Failure,
    Received,
)
from hierclust.sim.scenario import all_led, lease_holder, led_groups
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document
from tests.sim.test_scenarios import booted as booted_quiet

T200 = from_dict(generate_document(200, 8))  # leaf groups of 7 or 5, 3 tiers, root of 6 + witness


def booted(topology, seed: int = 1) -> Simulator:  # type: ignore[no-untyped-def]
    """Every group led and half a second more, then another half second of quiet."""
    sim = booted_quiet(topology, seed)
    sim.run_until(sim.now + 500 * MS)
    return sim


def admin(mode: int, *ranges: tuple[int, int]) -> Command:
    return Command("admin", (mode, ranges))


def failures(sim: Simulator, victim: int) -> dict[int, Failure]:
    """Who holds a failure notice about ``victim`` (rank -> notice)."""
    found = {}
    for rank in sim.live_ranks():
        for n in sim.nodes[rank].known_notices():
            if type(n) is Failure and n.node == victim:
                found[rank] = n
    return found


def root_leader(sim: Simulator) -> int:
    leader = lease_holder(sim, sim.topology.root.index)
    assert leader is not None
    return leader


def test_admin_notice_reaches_every_node_and_sets_the_mode() -> None:
    sim = booted(T200)
    issuer = 150
    sim.command(issuer, admin(MAINTENANCE, (10, 3)))
    sim.run_until(sim.now + 1_000 * MS)
    for rank in sim.live_ranks():
        node = sim.nodes[rank]
        assert [node.admin_mode(r) for r in (9, 10, 11, 12, 13)] == [
            ACTIVE,
            MAINTENANCE,
            MAINTENANCE,
            MAINTENANCE,
            ACTIVE,
        ], f"node {rank}"
    assert sim.nodes[11].mode == MAINTENANCE and sim.nodes[13].mode == ACTIVE
    digests = {sim.nodes[r].digest() for r in sim.live_ranks()}
    assert len(digests) == 1, "every node holds the same notices"
    # back to active, issued elsewhere: the newer notice wins everywhere
    sim.command(3, admin(ACTIVE, (10, 3)))
    sim.run_until(sim.now + 1_000 * MS)
    assert all(sim.nodes[r].admin_mode(11) == ACTIVE for r in sim.live_ranks())
    assert len({sim.nodes[r].digest() for r in sim.live_ranks()}) == 1
    assert sim.checker.violations == []


def test_crash_in_maintenance_is_a_planned_departure_everywhere() -> None:
    sim = booted(T200)
    victim = 42
    assert not led_groups(sim, victim) or True
    sim.command(0, admin(MAINTENANCE, (victim, 1)))
    sim.run_until(sim.now + 500 * MS)
    kill_at = sim.now
    sim.crash(victim)
    sim.run_until(sim.now + 2_000 * MS)
    seen = failures(sim, victim)
    assert set(seen) == set(sim.live_ranks()), "every survivor learns the departure"
    assert all(n.planned for n in seen.values()), "and it is planned, not a fault"
    learned = sim.records.learned[("failed", victim, 1)]
    assert max(learned.values()) - kill_at <= 1_000 * MS
    # an unannounced crash next to it is still a fault
    other = 43
    sim.crash(other)
    sim.run_until(sim.now + 2_000 * MS)
    seen = failures(sim, other)
    assert set(seen) == set(sim.live_ranks())
    assert not any(n.planned for n in seen.values())
    assert sim.checker.violations == []


def test_maintenance_of_the_root_leader_hands_over_every_group_it_leads() -> None:
    sim = booted(T200)
    victim = root_leader(sim)
    led = led_groups(sim, victim)
    assert len(led) == T200.depth, "the root leader leads its whole path"
    sim.mark()
    start = sim.now
    issuer = (victim + 100) % T200.num_nodes
    sim.command(issuer, admin(MAINTENANCE, (victim, 1)))
    sim.run_until(sim.now + 3_000 * MS)
    assert led_groups(sim, victim) == [], "it leads nothing any more"
    assert all_led(sim)
    election_timeout = T200.tuning.election_timeout_ms * MS
    for group in led:
        new = lease_holder(sim, group)
        assert new is not None and new != victim
        times = [t for t, g, r, _ in sim.records.elected if g == group and t >= start]
        assert times and min(times) - start < election_timeout, (
            f"group {group}: handed over in {(min(times) - start) / MS} ms, before any timeout"
        )
    elsewhere = [e for e in sim.records.elections if e[0] >= start and e[1] not in led]
    assert elsewhere == [], "no election outside the groups it led"
    assert not failures(sim, victim), "nobody reports it failed: it is alive"
    assert sim.checker.violations == []
    # Then it goes down for its maintenance: a planned departure, nobody elects again.
    elections = len(sim.records.elections)
    sim.crash(victim)
    sim.run_until(sim.now + 2_000 * MS)
    seen = failures(sim, victim)
    assert set(seen) == set(sim.live_ranks()) and all(n.planned for n in seen.values())
    assert len(sim.records.elections) == elections
    assert sim.checker.violations == []


def test_drained_nodes_stand_last_but_a_group_never_goes_unled() -> None:
    sim = booted(T200)
    leaf = T200.leaf_of(20)
    first, end = leaf.first_rank, leaf.end_rank
    # drain every member but the last one: it must end up leading
    sim.command(100, admin(DRAINED, (first, end - first - 1)))
    sim.run_until(sim.now + 3_000 * MS)
    assert lease_holder(sim, leaf.index) == end - 1
    # drain the last one too: somebody (drained) keeps leading rather than nobody
    sim.command(100, admin(DRAINED, (end - 1, 1)))
    sim.run_until(sim.now + 3_000 * MS)
    assert lease_holder(sim, leaf.index) == end - 1, "no active member to hand over to"
    # the active leader dies: a drained member takes over, the group is not left unled
    sim.command(100, admin(ACTIVE, (end - 1, 1)))
    sim.run_until(sim.now + 500 * MS)
    sim.crash(end - 1)
    sim.run_until(sim.now + 5_000 * MS)
    new = lease_holder(sim, leaf.index)
    assert new is not None and first <= new < end - 1
    assert sim.checker.violations == []


def test_stale_admin_notice_arriving_late_does_not_undo_a_newer_one() -> None:
    topology = from_dict(generate_document(7, 8))
    node = Node(topology, 0, rng=random.Random(1))
    older = Admin(2, 3, MAINTENANCE, 100, 5)
    newer = Admin(1, 5, ACTIVE, 101, 6)
    from hierclust.core.messages import Notices

    node.step(0, Received(5, Notices(-1, 0, (newer,))))
    node.step(1, Received(6, Notices(-1, 0, (older,))))
    assert node.admin_mode(3) == ACTIVE
    assert node.known_notices() == (newer,)
    other = Node(topology, 0, rng=random.Random(1))
    other.step(0, Received(6, Notices(-1, 0, (older,))))
    assert other.admin_mode(3) == MAINTENANCE
    other.step(1, Received(5, Notices(-1, 0, (newer,))))
    assert other.known_notices() == (newer,), "the older notice is dropped once covered"
    assert other.digest() == node.digest()


def test_only_the_followed_leader_can_hand_the_group_over() -> None:
    from hierclust.core.messages import Ack
    from hierclust.core.types import ElectionStarted, Emit, Start

    topology = from_dict(generate_document(7, 8))  # one group of 7
    node = Node(topology, 2, rng=random.Random(1))
    node.step(0, Start())
    node.step(1 * MS, Received(0, Ack(0, 4, 1, 1 * MS, 1, 1, 1_000 * MS, -1, 0, 0, 0)))
    assert node.leader_of(0) == 0

    def elections(effects: list) -> list:  # type: ignore[type-arg]
        return [e for e in effects if type(e) is Emit and type(e.event) is ElectionStarted]

    # a member that is not our leader names us successor: ignored, the leader stays
    assert elections(node.step(2 * MS, Received(5, Handoff(0, 4, 2)))) == []
    assert node.leader_of(0) == 0
    # a stale term from the leader: ignored too
    assert elections(node.step(3 * MS, Received(0, Handoff(0, 3, 2)))) == []
    # our leader hands over to us: we stand at once, in the next term
    started = elections(node.step(4 * MS, Received(0, Handoff(0, 4, 2))))
    assert [e.event.term for e in started] == [5]
    assert node.leader_of(0) is None and node.voted_for(0) == 2


def test_planned_kill_run_hands_over_first_and_reports_a_planned_departure() -> None:
    from hierclust.sim.scenario import KillPlan, run_kill

    topology = from_dict(generate_document(1000, 16))
    report = run_kill(topology, KillPlan(kill="root-leader", seed=5, planned=True))
    planned = report["sim"]["planned"]
    assert planned["groups_led"] == topology.depth == planned["handed_over"]
    assert planned["handover_ms"] < topology.tuning.election_timeout_ms
    assert planned["still_leading"] == 0 and planned["elections_elsewhere"] == 0
    assert planned["departure_planned"] is True
    assert report["notified"] == report["survivors"]
    assert report["reelect_ms"] is None, "nothing left to re-elect when it stops"
    assert report["groups_disturbed"] == 0 and report["elections_elsewhere"] == 0
    assert report["sim"]["violations"] == []
