"""No protocol decision compares one node's clock with another's.

Every simulated node has its own monotonic clock (origins up to 30 days apart) and its own wall
clock. If the core never compares an instant of one node's clock with another's, where the
monotonic clocks start cannot change what happens: the same seed gives the same events at the same
true times, only with each node's own instants in them.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from hierclust.core.timeouts import MS
from hierclust.core.types import Failure, LeaseChanged, NoticeLearned
from hierclust.sim.network import Network
from hierclust.sim.scenario import all_led, lease_holder
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document

TOPOLOGY = from_dict(generate_document(300, 8))  # three tiers, a witness on the even root


def run(clocks: bool, seed: int = 3) -> tuple[Simulator, list[tuple[int, int, Any]]]:
    """Boot, kill the root leader under 5 % loss, 3 s more; every event in true time."""
    network = Network(random.Random(seed), latency_ns=200_000, jitter_ns=300_000, loss=0.05)
    sim = Simulator(TOPOLOGY, seed=seed, network=network, clocks=clocks, wall_error_ns=0)
    seen: list[tuple[int, int, Any]] = []
    emit = sim._event

    def record(rank: int, event: Any) -> None:
        shown = event
        if type(event) is LeaseChanged:  # the one event that carries an instant: in true time
            shown = LeaseChanged(
                event.group, event.term, event.held, event.until_ns - sim.shifts[rank]
            )
        seen.append((sim.now, rank, shown))
        emit(rank, event)

    sim._event = record  # type: ignore[method-assign]
    sim.start_all(spread_ns=200 * MS)
    while not all_led(sim):
        sim.run_until(sim.now + 100 * MS)
    victim = lease_holder(sim, TOPOLOGY.root.index)
    assert victim is not None
    sim.crash(victim)
    sim.run_until(sim.now + 3_000 * MS)
    return sim, seen


def test_where_monotonic_clocks_start_changes_nothing() -> None:
    shared, one_clock = run(clocks=False)
    apart, own_clocks = run(clocks=True)
    assert max(apart.shifts) - min(apart.shifts) > 7 * 86_400 * 10**9  # days apart
    assert len(own_clocks) > 2_000
    assert own_clocks == one_clock
    assert shared.checker.violations == apart.checker.violations == []
    # and the kill was news to every survivor, on every clock
    failures = [
        e for _, _, e in own_clocks if type(e) is NoticeLearned and type(e.notice) is Failure
    ]
    assert len({r for _, r, e in own_clocks if type(e) is NoticeLearned}) >= 299
    assert failures


@pytest.mark.parametrize("step_ms", [-3_600_000, 3_600_000])
def test_upper_terms_keep_growing_when_a_wall_clock_steps(step_ms: int) -> None:
    """Terms above the leaf tier start from the wall clock (a hybrid logical clock) but never go
    below what the node knows: a leader whose wall clock stepped an hour back still wins a
    higher term than the one before, and the checker's fencing-token rule holds."""
    network = Network(random.Random(5), latency_ns=200_000, jitter_ns=300_000)
    sim = Simulator(TOPOLOGY, seed=5, network=network)
    sim.start_all(spread_ns=200 * MS)
    while not all_led(sim):
        sim.run_until(sim.now + 100 * MS)
    root = TOPOLOGY.root.index
    leader = lease_holder(sim, root)
    assert leader is not None
    before = sim.nodes[leader].term(root)
    for rank in range(TOPOLOGY.num_nodes):  # every clock steps: nobody is ahead any more
        sim.step_wall(rank, step_ms * MS)
    sim.crash(leader)
    sim.run_until(sim.now + 3_000 * MS)
    after = lease_holder(sim, root)
    assert after is not None and after != leader
    assert sim.nodes[after].term(root) > before
    assert sim.checker.violations == []  # (it checks every group's terms only grow)
