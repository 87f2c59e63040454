"""Fuzz seeds that once failed, kept as regressions, and the designed scenarios behind them.

Each seed test asserts the observable fact that failed (nobody was accused while alive, who leads,
who knows), not merely that the schedule passes.
"""

from __future__ import annotations

import random

import pytest

from hierclust.core.timeouts import MS
from hierclust.core.types import Received
from hierclust.sim.fuzz import run_schedule
from hierclust.sim.network import Partition
from hierclust.sim.scenario import lease_holder
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document
from tests.sim.test_scenarios import booted as booted_topology


def booted(nodes: int, fanout: int, seed: int = 1) -> Simulator:
    # balanced groups: the layout these seeds and scenarios were found on
    return booted_topology(from_dict(generate_document(nodes, fanout, sizes="balanced")), seed)


def accused(sim: Simulator, victim: int) -> list[int]:
    """Live nodes holding a failure notice about ``victim``'s current incarnation."""
    inc = sim.slots[victim].incarnation
    return [
        r
        for r in sim.live_ranks()
        if any(n.identity == ("failed", victim, inc) for n in sim.nodes[r].known_notices())
    ]


# seed -> (the live node that was declared failed, what happened)
FALSE_ACCUSATIONS = {
    # cn20 paused: its 2-slot tier-1 group lost quorum, so its leader cn21 stepped down and left
    # the root group; after slot_grace_ms the root leader declared cn21, which was alive.
    5729: 20,
    # cn22 crashed: the 2-slot groups above it lost quorum; their leader (rank 24) stepped down
    # and the newly elected root leader declared it when its slot's grace ran out.
    21543: 24,
    # three of six nodes of rank 0's leaf group were down or paused: rank 0 lost its lease,
    # left its tier-1 group, and that group's leader declared it after the slot grace.
    21777: 0,
}


@pytest.mark.parametrize("seed", sorted(FALSE_ACCUSATIONS))
def test_fuzz_seed_accuses_no_live_node(seed: int) -> None:
    outcome = run_schedule(seed, admin=False)
    victim = FALSE_ACCUSATIONS[seed]
    assert not any("false-positive" in v for v in outcome.violations), outcome.violations
    assert not any(f"node {victim} declared failed" in v for v in outcome.violations)
    assert outcome.ok, (outcome.faults, outcome.violations, outcome.liveness)


def test_fuzz_seed_61977_a_leader_whose_clock_slowed_still_judges_its_lease() -> None:
    # cn1 led a group of three (+ witness) when its clock was slowed by 2 %: its lease timer
    # fired early, was not re-armed, and the lapsed lease was never judged. cn1 stayed leader
    # without a lease, so the crash of cn2 could never be declared (no lease, no verdict).
    outcome = run_schedule(61977, admin=False)
    assert not any("does not know that cn2" in p for p in outcome.liveness), outcome.liveness
    assert outcome.ok, (outcome.faults, outcome.violations, outcome.liveness)


def test_a_holder_that_steps_down_for_lack_of_quorum_is_not_declared_failed() -> None:
    sim = booted(9, 3)  # a root of three slots over three leaf groups of three
    leaf = sim.topology.leaf_of(4).index
    holder = lease_holder(sim, leaf)
    assert holder is not None
    others = [r for r in sim.topology.by_index[leaf].ranks if r != holder]
    for r in others:
        sim.pause(r, 4_000 * MS)  # the holder's leaf group loses quorum, the holder stays up
    sim.run_until(sim.now + 3_500 * MS)  # past lease loss, slot grace and confirm
    assert not sim.nodes[holder].lease_valid(leaf, sim.local_now(holder))
    assert sim.topology.root.index not in sim.nodes[holder].groups(), "it left the root group"
    assert accused(sim, holder) == []
    assert sim.checker.false_positives == 0 and sim.checker.excused_positives == 0


def test_a_whole_child_group_crashing_is_still_reported_through_its_slot() -> None:
    sim = booted(9, 3)
    leaf = sim.topology.leaf_of(4).index
    holder = lease_holder(sim, leaf)
    assert holder is not None
    for r in sim.topology.by_index[leaf].ranks:
        sim.crash(r)  # nobody is left to elect a leader who would declare the old one
    sim.run_until(sim.now + 4_000 * MS)
    assert sorted(accused(sim, holder)) == sim.live_ranks()
    assert sim.checker.violations == []


def test_fuzz_seed_100155_a_leader_drained_by_a_notice_still_forwards_it() -> None:
    # cn[05-07] drained by an admin notice that cn08 issued and sent to its leader cn05: cn05
    # stepped down on learning it before forwarding it, so cn06 and cn07 never got it, and their
    # pulls went unanswered (a node without failure notices ignored pulls). Now the hand-over
    # waits until the notice has been forwarded, and pulls are answered with admin notices too.
    outcome = run_schedule(100155)
    assert "live nodes disagree on admin modes" not in outcome.liveness
    assert outcome.ok, (outcome.faults, outcome.violations, outcome.liveness)


def test_fuzz_seed_200503_a_leader_pulls_from_a_member_with_an_equal_count_digest() -> None:
    # cn1 issued maintenance for cn[2-4] while its root leader cn4 held an older admin notice
    # (active cn[3-4]) that the new one replaces: both digests counted 3 notices with different
    # hashes. Members pulled from the leader on such a mismatch, leaders only on a higher count,
    # so cn4 never fetched the newer notice and cn[3-4] disagreed with cn[1-2] for good.
    outcome = run_schedule(200503)
    assert "live nodes disagree on admin modes" not in outcome.liveness
    assert outcome.ok, (outcome.faults, outcome.violations, outcome.liveness)


def test_fuzz_seed_302320_stale_refutations_do_not_feed_an_incarnation_storm() -> None:
    # cn10 was paused while 20 % of datagrams were duplicated; its leader had declared it
    # failed. When the pause ended, every queued or duplicated ping (older incarnations) got an
    # ack with FLAG_REFUTE, and each such ack made cn10 take a new incarnation, which made its
    # other pings in flight stale in turn: thousands of incarnations and failure notices within
    # 100 virtual ms, and the run never ended. Now an ack refutes at most once per heartbeat.
    outcome = run_schedule(302320)
    assert outcome.ok, (outcome.faults, outcome.violations, outcome.liveness)


def test_a_burst_of_refuting_acks_costs_one_incarnation() -> None:
    from hierclust.core.messages import FLAG_LEASE, FLAG_REFUTE, Ack
    from hierclust.core.node import Node
    from hierclust.core.types import Received, Start

    node = Node(from_dict(generate_document(7, 8)), 3, rng=random.Random(1))
    node.step(0, Start())
    for i in range(20):  # e.g. answers to pings queued during a pause, all at once
        flags = FLAG_LEASE | FLAG_REFUTE
        node.step(MS + i, Received(0, Ack(0, 1, 1, MS, 1, flags, 500 * MS, -1, 0, 0, 0)))
    assert node.incarnation == 2
    heartbeat = 200 * MS
    node.step(MS + heartbeat, Received(0, Ack(0, 1, 1, 2 * MS, 1, FLAG_REFUTE, 0, -1, 0, 0, 0)))
    assert node.incarnation == 3, "a refutation a heartbeat later is a new one"


# seed -> what the nodes disagreed on. A leader and its members held different admin notices:
# one side had the newest notice for a range, the other older notices it supersedes (more of
# them, so a higher digest count). The side with the lower count never pulled, and a pull by the
# other side only brought it notices it had dropped already. Now a node that receives an admin
# notice it dropped for a newer one sends the newer one back.
ADMIN_DISAGREEMENTS = {
    1374: "3 nodes: a leader kept two old maintenance notices, its member the newer drain",
    7947: "7 nodes: the leader had the newest maintenance notice, its members two older ones",
}


@pytest.mark.parametrize("seed", sorted(ADMIN_DISAGREEMENTS))
def test_fuzz_seed_every_live_node_ends_with_the_newest_admin_notices(seed: int) -> None:
    outcome = run_schedule(seed)
    assert "live nodes disagree on admin modes" not in outcome.liveness, ADMIN_DISAGREEMENTS[seed]
    assert outcome.ok, (outcome.faults, outcome.violations, outcome.liveness)


def test_a_node_answers_a_superseded_admin_notice_with_the_newer_one() -> None:
    from hierclust.core.messages import Notices
    from hierclust.core.node import Node
    from hierclust.core.types import DRAINED, MAINTENANCE, Admin, Command, Send, Start

    topology = from_dict(generate_document(7, 8))
    node = Node(topology, 3, rng=random.Random(1))
    node.step(0, Start())
    node.step(1 * MS, Command("admin", (DRAINED, ((0, 7),))))  # the newest notice for all
    (newest,) = [a for a in node.known_notices() if isinstance(a, Admin)]
    old = Admin(2, 3, MAINTENANCE, newest.seq - 1, 0)
    effects = node.step(2 * MS, Received(5, Notices(topology.root.index, 9, (old,))))
    replies = [e.msg for e in effects if isinstance(e, Send) and e.dst == 5]
    assert any(isinstance(m, Notices) and m.notices == (newest,) for m in replies), replies
    assert not node.has_notice(old)


def test_a_new_leader_in_a_cut_off_site_never_tells_its_members_they_are_primary() -> None:
    """Found by the chaos campaign (``hierclust chaos --minutes 30 --seed 1``, england cut off):
    a leaf group's new leader built its first heartbeat before it had joined the group above,
    so it took its own leaf group for the top of its path and flagged the heartbeat primary;
    its members, cut off from the rest of the tree, held themselves in the primary component
    for a heartbeat or two after every election in the cut-off site."""
    sim = booted(81, 3)
    site = sim.topology.by_index[sim.topology.root.index + 1]  # a tier-2 child of the root
    first, end = site.first_rank, site.end_rank
    sim.partition(Partition(ranges=[(first, end, 1)]))
    sim.run_until(sim.now + 3_000 * MS)  # the site's leases above the leaf tier run out
    primary_after: list[tuple[int, int]] = []
    for _round in range(4):  # kill leaf leaders inside the site: each makes a new one
        leaf = next(
            g
            for g in sim.topology.by_index
            if g.is_leaf and first <= g.first_rank < end and lease_holder(sim, g.index) is not None
        )
        victim = lease_holder(sim, leaf.index)
        assert victim is not None
        sim.crash(victim)
        for _tick in range(300):  # 3 s in 10 ms steps
            sim.run_until(sim.now + 10 * MS)
            for rank in range(first, end):
                node = sim.nodes[rank]
                if node is not None and node.in_primary(sim.local_now(rank)):
                    primary_after.append((sim.now, rank))
    assert primary_after == [], f"cut-off nodes in the primary component: {primary_after[:5]}"


def test_a_site_nobody_hears_leaves_the_primary_component_within_a_lease() -> None:
    """Found by the chaos campaign (``hierclust chaos --minutes 30 --seed 1``, fault #126, a
    one-way cut): a site's frames to the rest were dropped while it still heard the rest. The
    root's leader was re-elected during the cut; the cut-off site's holder followed the new
    leader, whose acks reached it, and told its site it was primary until the leader gave its
    slot up: 4.8 s into the cut, against a window of 3.6 s. A leader now tells the lease and the
    primary flag only to members whose echoes could hold its lease."""
    sim = booted(27, 3)
    sim.run_until(sim.now + 1_500 * MS)
    topology = sim.topology
    root = topology.root
    leader = lease_holder(sim, root.index)
    assert leader is not None
    site = next(
        g
        for g in topology.by_index
        if g.tier == root.tier - 1 and not g.first_rank <= leader < g.end_rank
    )
    first, end = site.first_rank, site.end_rank
    rest = [(a, b, 1) for a, b in ((0, first), (end, topology.num_nodes)) if a < b]
    cut = sim.now
    sim.partition(Partition(ranges=rest, one_way=True))  # the site's frames are dropped
    sim.at(cut + 600 * MS, lambda s: s.crash(leader))  # and the root elects again meanwhile
    last_primary = cut
    while sim.now < cut + 8_000 * MS:
        sim.run_until(sim.now + 50 * MS)
        sim.check_primaries()
        if any(sim.nodes[r].in_primary(sim.local_now(r)) for r in range(first, end) if r != leader):
            last_primary = sim.now
    assert lease_holder(sim, root.index) not in (None, leader)  # re-elected on the heard side
    tm = topology.tuning
    assert last_primary - cut <= (tm.lease_ms + 2 * tm.heartbeat_ms) * MS
    outside = [r for r in sim.live_ranks() if not first <= r < end]
    assert all(sim.nodes[r].in_primary(sim.local_now(r)) for r in outside)
    assert not [v for v in sim.checker.violations if v.kind == "two-primaries"]


@pytest.mark.parametrize("seed", [20467, 20553, 21662])
def test_fuzz_seed_a_one_way_cut_leaves_one_primary_component(seed: int) -> None:
    """Seeds whose one-way partitions left the unheard side in the primary component past the
    window (found when the fuzzer's checker learnt to look at the primary component)."""
    outcome = run_schedule(seed)
    assert any("partition one-way" in f for f in outcome.faults)
    assert not [v for v in outcome.violations if "two-primaries" in v]


def test_fuzz_seed_26507_a_maintenance_leader_hands_over_past_the_witness_hold() -> None:
    """A 3-node group with a witness, one node dead: its leader, in maintenance, handed the
    group to the active member, but the witness still held its vote for the old leader, so the
    successor lost, the old leader won again and handed over again, for good. The leader now
    releases the witness when it hands over."""
    outcome = run_schedule(26507)
    assert any("maintenance" in f for f in outcome.faults)
    assert outcome.liveness == []
