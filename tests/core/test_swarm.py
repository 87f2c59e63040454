"""Small seeded swarms on the fake link: crashes, restarts (with and without state) and partitions
under 10-20 % loss; safety checked every virtual millisecond (one lease per group, one leader per
term), liveness after the faults heal. (The simulator runs the big fuzz.)"""

from __future__ import annotations

import random

import pytest

from hierclust.core.types import (
    ElectionStarted,
    Failure,
    LeaderChanged,
    NoticeLearned,
    ViewChanged,
)
from tests.core.link import MS, Link, topo


def swarm(seed: int, nodes: int, fanout: int, loss: float) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    t = topo(nodes, fanout)
    link = Link(t, seed=seed)
    lossy = [True]
    link.drop_if = lambda src, dst, msg: lossy[0] and rng.random() < loss
    link.start_all()
    link.run_until(3000 * MS)
    dead: set[int] = set()
    unsafe: list[str] = []
    for _ in range(6):
        live = [r for r in range(nodes) if r not in dead]
        # never kill a majority of a leaf group: a group without quorum rightly cannot act
        killable = [
            v
            for v in live
            if 2 * sum(1 for x in t.leaf_of(v).ranks if x in dead or x == v) < t.leaf_of(v).size
        ]
        action = rng.random()
        if action > 0.8:
            side = set(rng.sample(range(nodes), rng.randrange(1, nodes)))
            link.partition(side, set(range(nodes)) - side)
        elif action > 0.7:
            link.heal()
        elif action < 0.5 and killable:
            victim = rng.choice(killable)
            link.crash(victim)
            dead.add(victim)
        elif dead:
            back = rng.choice(sorted(dead))
            link.restart(back, with_state=rng.random() < 0.7)
            dead.discard(back)
        for _ in range(rng.randrange(200, 2000)):
            link.run_for(1 * MS)
            for g in t.by_index:
                if len(link.lease_holders(g.index)) > 1:
                    unsafe.append(f"two leases in group {g.index} at {link.now}")
    winners: dict[tuple[int, int], int] = {}
    for record in link.of(LeaderChanged):
        if record.event.leader == record.rank:
            key = (record.event.group, record.event.term)
            if winners.setdefault(key, record.rank) != record.rank:
                unsafe.append(f"two leaders of group {key[0]} in term {key[1]} (fencing token)")
    lossy[0] = False
    link.heal()
    link.run_for(6000 * MS)
    stuck: list[str] = []
    for g in t.by_index:
        if len(link.leaders(g.index)) != 1:
            stuck.append(f"group {g.index} leaders {link.leaders(g.index)}")
    for rank, node in link.nodes.items():
        leaf = t.leaf_of(rank).index
        if node.leader_of(leaf) not in link.leaders(leaf):
            stuck.append(f"node {rank} follows {node.leader_of(leaf)} in {leaf}")
        if not node.in_primary(link.now):
            stuck.append(f"node {rank} not in the primary component")
    if len({node.digest() for node in link.nodes.values()}) != 1:
        stuck.append("notice digests differ")
    for d in dead:
        for rank, node in link.nodes.items():
            if not any(isinstance(n, Failure) and n.node == d for n in node.known_notices()):
                stuck.append(f"node {rank} misses the failure of {d}")
    return unsafe, stuck


@pytest.mark.parametrize("seed", range(8))
def test_swarm_two_tiers(seed: int) -> None:
    assert swarm(seed, 9, 3, 0.2) == ([], [])


@pytest.mark.parametrize("seed", range(6))
def test_swarm_three_tiers(seed: int) -> None:
    assert swarm(seed, 27, 3, 0.1) == ([], [])


@pytest.mark.parametrize(("nodes", "fanout", "victim"), [(27, 3, 0), (27, 3, 9), (64, 4, 16)])
def test_three_tier_leader_crash_stays_on_the_victims_path(
    nodes: int, fanout: int, victim: int
) -> None:
    t = topo(nodes, fanout)
    link = Link(t)
    link.start_all()
    link.run_until(4000 * MS)
    led = {g.index for g in t.by_index if link.leaders(g.index) == [victim]}
    kill = link.now
    link.crash(victim)
    link.run_for(4000 * MS)
    path = {g.index for g in t.path(victim)}
    elections = [r.event.group for r in link.of(ElectionStarted, since=kill)]
    assert sorted(elections) == sorted(led)  # one election in each group the victim led, no other
    assert {r.event.group for r in link.of(ViewChanged, since=kill)} <= path
    assert all(len(link.leaders(g.index)) == 1 for g in t.by_index)
    seen = [r.rank for r in link.of(NoticeLearned, since=kill)]
    assert sorted(seen) == [r for r in range(nodes) if r != victim]
