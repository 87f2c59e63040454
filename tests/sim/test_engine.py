"""The simulator's own mechanics, driven with a tiny echo node (not the protocol)."""

from __future__ import annotations

import random
from typing import Any

from hierclust.core.messages import TieVoteResp
from hierclust.core.timeouts import MS
from hierclust.core.types import (
    CancelTimer,
    ElectionStarted,
    Emit,
    Failure,
    LeaseChanged,
    NoticeLearned,
    Persist,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
    VoteGranted,
    WallClock,
)
from hierclust.sim.network import Network, Partition
from hierclust.sim.queue import EventQueue
from hierclust.sim.simulator import WALL_ERROR_NS, Simulator
from hierclust.topology import from_dict, generate_document

TOPO = from_dict(generate_document(6, 3))


class Echo:
    """Rank 0 pings everyone every 10 ms; others answer. Records what it saw, with local times."""

    def __init__(
        self,
        topology: Any,
        rank: int,
        *,
        rng: random.Random,
        incarnation: int,
        persisted: Any,
        amnesiac: bool = False,
    ) -> None:
        self.rank = rank
        self.incarnation = incarnation
        self.persisted = persisted
        self.amnesiac = amnesiac
        self.seen: list[tuple[int, Any]] = []
        self.n = topology.num_nodes

    def step(self, now: int, event: Any) -> list[Any]:
        self.seen.append((now, event))
        if isinstance(event, Start):
            return [SetTimer(("tick",), now + 10 * MS)] if self.rank == 0 else []
        if isinstance(event, TimerFired):
            sends: list[Any] = [Send(d, ("ping", now)) for d in range(1, self.n)]
            return [*sends, SetTimer(("tick",), now + 10 * MS)]
        if isinstance(event, Received) and event.msg[0] == "ping":
            return [Persist(("saw", event.msg[1])), Send(event.src, ("pong", event.msg[1]))]
        return []


def make(seed: int = 1, clocks: bool = False, **net: Any) -> Simulator:
    network = Network(random.Random(seed), **net)
    sim = Simulator(TOPO, seed=seed, network=network, node_factory=Echo, clocks=clocks)
    sim.start_all()
    return sim


def received(sim: Simulator, rank: int, what: str) -> list[int]:
    node = sim.nodes[rank]
    return [t for t, e in node.seen if isinstance(e, Received) and e.msg[0] == what]


def test_queue_orders_by_time_then_insertion() -> None:
    queue = EventQueue()
    for t, label in [(5 * MS, "c"), (1, "a"), (5 * MS, "d"), (2, "b"), (3 * MS + 7, "x")]:
        queue.push(t, 0, 0, label)
    popped = []
    while (entry := queue.pop_until(10 * MS)) is not None:
        popped.append(entry[4])
        if entry[4] == "a":
            queue.push(2, 0, 0, "b2")  # same time as b, pushed later: runs after b
    assert popped == ["a", "b", "b2", "x", "c", "d"]
    queue.push(20 * MS, 0, 0, "late")
    assert queue.pop_until(19 * MS) is None
    assert queue.next_time() == 20 * MS


def test_queue_matches_one_global_heap() -> None:
    """Sorted buckets, the late heap for pushes into the running bucket and pops up to a limit
    give exactly the order of one heap of ``(time, seq)``."""
    import heapq

    rng = random.Random(5)
    queue = EventQueue()
    reference: list[tuple[int, int]] = []
    seq = 0
    now = 0
    popped: list[int] = []
    expected: list[int] = []
    for _ in range(3000):
        if rng.random() < 0.55:
            # mostly ahead, sometimes due now or in the running bucket (zero latency, timers)
            at = now + rng.choice([0, 1, rng.randrange(150_000), rng.randrange(3 * MS)])
            seq += 1
            queue.push(at, 0, 0, seq)
            heapq.heappush(reference, (at, seq))
            continue
        limit = now + rng.randrange(200_000)
        entry = queue.pop_until(limit)
        if reference and reference[0][0] <= limit:
            at, want = heapq.heappop(reference)
            expected.append(want)
            assert entry is not None and entry[0] == at
            popped.append(entry[4])
            now = at
        else:
            assert entry is None
        assert len(queue) == len(reference)
        assert queue.next_time() == (reference[0][0] if reference else None)
    assert popped == expected and len(popped) > 1000


def test_latency_and_determinism() -> None:
    a, b = make(7, latency_ns=MS, jitter_ns=0), make(7, latency_ns=MS, jitter_ns=0)
    a.run_until(100 * MS)
    b.run_until(100 * MS)
    pongs = received(a, 0, "pong")
    # 9 ticks at 10..90 ms, answered by 5 nodes, each way 1 ms.
    assert len(pongs) == 9 * 5
    assert pongs[0] == 12 * MS
    assert [t for t, _ in a.nodes[0].seen] == [t for t, _ in b.nodes[0].seen]
    # Persist happened and is the node's disk.
    assert a.slots[3].disk == ("saw", 90 * MS)


def test_every_node_has_its_own_clocks_and_timers_keep_true_time() -> None:
    plain = make(7, latency_ns=MS, jitter_ns=0)
    sim = make(7, clocks=True, latency_ns=MS, jitter_ns=0)
    plain.run_until(100 * MS)
    sim.run_until(100 * MS)
    shifts = sim.shifts
    # monotonic origins days apart, and each node sees its own clock
    assert len(set(shifts)) == 6 and max(shifts) - min(shifts) > 86_400 * 10**9
    for rank in range(6):
        assert [t - shifts[rank] for t, _ in sim.nodes[rank].seen] == [
            t for t, _ in plain.nodes[rank].seen
        ]
        assert sim.local_now(rank) == sim.now + shifts[rank]
    # the same exchange at the same true times: rank 0's timer, armed on its own clock, fires at
    # 10 ms of true time and the pongs come back 2 ms later
    assert received(sim, 0, "pong")[0] - shifts[0] == 12 * MS
    # wall clocks: each Start carries that node's wall-minus-monotonic offset; wall clocks agree
    # within the NTP error, whatever the monotonic origins
    walls = [sim.slots[r].wall + shifts[r] for r in range(6)]
    assert max(walls) - min(walls) <= 2 * WALL_ERROR_NS
    starts = [e for _, e in sim.nodes[3].seen if isinstance(e, Start)]
    assert starts == [Start(sim.slots[3].wall)]


def test_a_wall_clock_step_reaches_the_node() -> None:
    sim = make(7, clocks=True)
    sim.run_until(20 * MS)
    before = sim.slots[2].wall
    sim.step_wall(2, -3_600 * 10**9)
    assert sim.slots[2].wall == before - 3_600 * 10**9
    assert [e for _, e in sim.nodes[2].seen if isinstance(e, WallClock)] == [
        WallClock(before - 3_600 * 10**9)
    ]
    sim.slew_wall(4, 500 * MS, over_ns=1000 * MS)
    sim.run_until(1100 * MS)
    slewed = [e.offset_ns for _, e in sim.nodes[4].seen if isinstance(e, WallClock)]
    assert len(slewed) == 10 and slewed[-1] - sim.slots[4].wall == 0
    assert sim.slots[4].wall - slewed[0] == 450 * MS


def test_loss_drops_about_the_given_share() -> None:
    sim = make(3, loss=0.3, jitter_ns=0)
    sim.run_until(1000 * MS)
    pings = sum(len(received(sim, r, "ping")) for r in range(1, 6))
    sent = 99 * 5
    assert 0.6 * sent < pings < 0.8 * sent


def test_partition_blocks_across_sides_and_one_way() -> None:
    sim = make(1, jitter_ns=0)
    sim.partition(Partition([(3, 6, 1)]))
    sim.run_until(50 * MS)
    assert received(sim, 4, "ping") == [] and received(sim, 1, "ping") != []
    sim.partition(Partition([(3, 6, 1)], one_way=True))  # side 0 -> side 1 blocked only
    sim.run_until(100 * MS)
    assert received(sim, 4, "ping") == []
    sim.partition(None)
    sim.run_until(150 * MS)
    assert received(sim, 4, "ping") != []
    assert sim.partition_ended_ns == 100 * MS


def test_crash_drops_inbound_and_timers_restart_bumps_incarnation() -> None:
    sim = make(1, jitter_ns=0)
    sim.run_until(25 * MS)
    sim.crash(0)
    sim.run_until(60 * MS)
    assert sim.nodes[0] is None
    assert max(t for t, _ in sim.nodes[1].seen) < 30 * MS, "no ticks while crashed"
    sim.restart(0, keep_disk=True)
    assert sim.nodes[0].incarnation == 2
    sim.run_until(100 * MS)
    assert received(sim, 0, "pong")[0] >= 70 * MS
    sim.crash(3)
    sim.restart(3, keep_disk=False)
    assert sim.nodes[3].persisted is None and sim.nodes[3].incarnation > 2
    assert sim.nodes[3].amnesiac and not sim.nodes[0].amnesiac, "only a lost disk is amnesia"


def test_pause_delivers_late_in_order() -> None:
    sim = make(1, jitter_ns=0)
    sim.run_until(5 * MS)
    sim.pause(2, 40 * MS)
    sim.run_until(100 * MS)
    pings = received(sim, 2, "ping")
    assert pings[:4] == [45 * MS] * 4, "queued pings run at resume"
    node = sim.nodes[2]
    stamps = [e.msg[1] for _, e in node.seen if isinstance(e, Received)]
    assert stamps == sorted(stamps)


def test_skew_stretches_local_time_continuously() -> None:
    sim = make(1, jitter_ns=0)
    sim.run_until(10 * MS)
    sim.set_skew(0, 100_000)  # clock 10 % fast: 10 ms local ticks every ~9.09 ms true
    sim.run_until(55 * MS)
    ticks = [t for t, e in sim.nodes[0].seen if isinstance(e, TimerFired)]
    # The tick at 10 ms had already scheduled true 20 ms, which the fast clock reads as 21 ms.
    assert ticks[:2] == [10 * MS, 21 * MS], "local clock continuous at the change"
    assert 0 <= ticks[2] - ticks[1] - 10 * MS <= 1, "local intervals stay 10 ms, never early"
    assert sim._true(0, 31 * MS) == 10 * MS + -(-21 * MS * 10 // 11)


def test_safety_checker_flags_two_leases_and_double_votes() -> None:
    sim = make(1)
    sim.run_until(0)  # boot the nodes: a crashed holder's lease would be dropped
    sim._event(1, LeaseChanged(group=0, term=1, held=True, until_ns=500 * MS))
    sim.now = 100 * MS
    sim._event(2, LeaseChanged(group=0, term=2, held=True, until_ns=600 * MS))
    sim._event(3, VoteGranted(group=0, term=2, candidate=2))
    sim._event(3, VoteGranted(group=0, term=2, candidate=1))
    sim._event(4, VoteGranted(group=0, term=2, candidate=2))
    kinds = [v.kind for v in sim.checker.violations]
    assert kinds == ["two-leases", "double-vote"]
    sim.now = 700 * MS
    sim._event(1, LeaseChanged(group=0, term=1, held=True, until_ns=900 * MS))
    assert [v.kind for v in sim.checker.violations][-1] == "fencing-token"
    # A crashed holder acts no more: its lease does not count against a new holder.
    sim.crash(1)
    sim.now = 800 * MS
    sim._event(3, LeaseChanged(group=0, term=3, held=True, until_ns=1200 * MS))
    assert [v.kind for v in sim.checker.violations].count("two-leases") == 1


def test_cancel_timer_and_emit_reach_the_simulator() -> None:
    class Once(Echo):
        def step(self, now: int, event: Any) -> list[Any]:
            self.seen.append((now, event))
            if isinstance(event, Start):
                return [
                    SetTimer(("a",), now + MS),
                    SetTimer(("b",), now + 2 * MS),
                    CancelTimer(("a",)),
                ]
            if isinstance(event, TimerFired):
                return [Emit(LeaseChanged(0, 1, True, now + MS))] if self.rank == 0 else []
            return []

    sim = Simulator(TOPO, seed=1, node_factory=Once)
    sim.start_all()
    sim.run_until(10 * MS)
    fired = [e.key for _, e in sim.nodes[0].seen if isinstance(e, TimerFired)]
    assert fired == [("b",)]
    assert sim.checker.leases[0][0] == (1, 3 * MS)


def accuse(sim: Simulator, accused: int, detector: int) -> None:
    """``detector`` declares ``accused`` (incarnation 1) failed, as a core node would report it."""
    notice = Failure(accused, 1, 0, detector, 1)
    sim._event(detector, NoticeLearned(notice, None))


def test_an_accusation_no_fault_explains_is_a_false_positive_from_the_first_instant() -> None:
    sim = make(1)
    sim.run_until(50 * MS)
    accuse(sim, 2, 0)
    assert sim.checker.false_positives == 1
    assert [v.kind for v in sim.checker.violations] == ["false-positive"]


def test_a_fault_excuses_an_accusation_only_on_its_nodes_and_links_and_until_it_settles() -> None:
    sim = make(1)
    settle = sim.settle_ns
    sim.run_until(100 * MS)
    sim.pause(2, 500 * MS)
    accuse(sim, 2, 0)  # the accused is paused: excused
    accuse(sim, 3, 0)  # a pause elsewhere explains nothing
    assert (sim.checker.excused_positives, sim.checker.false_positives) == (1, 1)
    sim.run_until(100 * MS + 500 * MS + settle - MS)
    accuse(sim, 2, 0)  # resumed, still settling
    sim.run_until(100 * MS + 500 * MS + settle + MS)
    accuse(sim, 2, 0)  # settled: no excuse left
    assert (sim.checker.excused_positives, sim.checker.false_positives) == (2, 2)
    sim.partition(Partition([(4, 6, 1)]))
    accuse(sim, 5, 0)  # cut off from its accuser
    accuse(sim, 1, 0)  # same side as its accuser
    assert (sim.checker.excused_positives, sim.checker.false_positives) == (3, 3)
    sim.set_skew(1, 5_000)
    accuse(sim, 1, 3)  # a skewed clock on the accused
    sim.set_skew(1, 0)
    sim.run_until(sim.now + settle + MS)
    accuse(sim, 1, 3)  # the skew ended a settle time ago
    assert (sim.checker.excused_positives, sim.checker.false_positives) == (4, 4)


def test_an_accusation_after_a_refutation_counts() -> None:
    sim = make(1)
    sim.run_until(50 * MS)
    sim.nodes[2].incarnation = 2  # it refuted an earlier accusation
    accuse(sim, 2, 0)  # about incarnation 1: that one is gone, rightly declared
    assert sim.checker.false_positives == 0
    sim._event(0, NoticeLearned(Failure(2, 2, 0, 0, 1), None))  # about the one running now
    assert sim.checker.false_positives == 1


def test_self_votes_and_tie_breaker_grants_count_in_the_double_vote_check() -> None:
    sim = make(1)
    sim.run_until(50 * MS)
    sim._event(1, ElectionStarted(0, 7))  # rank 1 stands in term 7: its own vote
    sim._event(1, VoteGranted(0, 7, 2))  # and then votes for rank 2 in that term
    assert [v.kind for v in sim.checker.violations] == ["double-vote"]
    # the tie-breaker's vote too: a witness that granted term 9 twice
    granted = iter([(1, 9), (2, 9)])

    class TwoFaced:
        on_reader_clock = False

        def step(self, now: int, inp: Any) -> list[Any]:
            dst, term = next(granted)
            return [Send(dst, TieVoteResp(0, term, True, False))]

    sim.witnesses[0] = TwoFaced()
    sim._witness(0, Received(1, None))
    sim._witness(0, Received(2, None))
    assert [v.kind for v in sim.checker.violations] == ["double-vote", "double-vote"]
    assert "voted for 1 and then 2 in group 0 term 9" in str(sim.checker.violations[-1])
