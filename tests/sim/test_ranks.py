"""The simulator's per-rank columns: views of them, clock state only on demand."""

from __future__ import annotations

import pytest

from hierclust.core.node import Node
from hierclust.core.timeouts import MS
from hierclust.sim.ranks import NEVER, Ranks, SlotViews
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document


def test_a_slot_view_reads_and_writes_the_columns() -> None:
    ranks = Ranks(4)
    slots = SlotViews(ranks)
    assert len(slots) == 4 and [s.incarnation for s in slots] == [1, 1, 1, 1]
    slots[2].incarnation += 5
    slots[2].disk = ("state",)
    slots[2].wall = -7
    assert ranks.incarnation[2] == 6 and ranks.disk[2] == ("state",) and ranks.wall[2] == -7
    assert slots[3].disk is None and slots[3].wall == 0
    # no clock state until a pause or skew asks for it
    assert not ranks.clocks
    assert (slots[1].paused_until, slots[1].skew_ppm, slots[1].skewed) == (NEVER, 0, False)
    with pytest.raises(IndexError):
        slots[4]


def test_clock_state_starts_at_the_ranks_own_shift() -> None:
    ranks = Ranks(3)
    ranks.shift[1] = 12345
    state = ranks.clock(1)
    assert state.anchor_local == 12345 and state.anchor_true == 0 and not state.skewed
    assert ranks.clock(1) is state and list(ranks.clocks) == [1]


def test_a_paused_and_a_skewed_node_keep_their_state_in_a_real_run() -> None:
    topology = from_dict(generate_document(48, 16), source="test")
    sim = Simulator(topology, seed=5)
    sim.start_all(spread_ns=200 * MS)
    sim.run_until(1500 * MS)
    assert isinstance(sim.nodes[0], Node) and not sim.ranks.clocks
    # every node persisted at boot, into the disk column
    assert all(slot.disk is not None for slot in sim.slots)
    local = sim.local_now(5)
    sim.set_skew(5, 200)
    sim.pause(9, 50 * MS)
    assert sorted(sim.ranks.clocks) == [5, 9]
    assert sim.local_now(5) == local  # continuous across the change of rate
    sim.run_until(sim.now + 1000 * MS)
    # 1 s of true time is 1.0002 s on the skewed clock
    assert sim.local_now(5) - local == 1000 * MS + 200_000
    assert sim.slots[9].paused_until == 1550 * MS and sim.slots[5].skewed
    # timers keep firing for the skewed and the paused node: both still hear their leaders
    for rank in (5, 9):
        assert sim.timers[rank]
