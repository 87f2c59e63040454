"""Lab faults in a real-UDP cluster: a paused node, a partition and its healing."""

from __future__ import annotations

import asyncio

import pytest

from hierclust.core.types import Alive, Failure, NoticeLearned
from tests.runtime.conftest import Cluster, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


def holders(cluster: Cluster, kind: type, node: int) -> set[int]:
    return {
        r.rank
        for r in cluster.records
        if type(r.event) is NoticeLearned
        and type(r.event.notice) is kind
        and r.event.notice.node == node
    }


async def test_a_paused_node_is_declared_then_comes_back_as_a_new_incarnation(
    cluster9: Cluster,
) -> None:
    await wait_for(cluster9.settled, 6.0, "leaders and quiet views")
    leaders = set(cluster9.leaders().values())
    victim = max(r for r in range(9) if r not in leaders)
    before = cluster9.host.drivers[victim].node.incarnation  # type: ignore[union-attr]
    cluster9.host.pause(victim, 1.5)
    others = set(range(9)) - {victim}
    await wait_for(lambda: holders(cluster9, Failure, victim) >= others, 5.0, "the failure")
    # after the pause it learns it was declared failed and refutes with a higher incarnation
    await wait_for(lambda: holders(cluster9, Alive, victim) >= others, 8.0, "the comeback")
    after = cluster9.host.drivers[victim].node.incarnation  # type: ignore[union-attr]
    assert after > before
    await wait_for(cluster9.all_led, 5.0, "leaders again")


async def test_partition_and_heal(cluster9: Cluster) -> None:
    await wait_for(cluster9.settled, 6.0, "leaders and quiet views")
    topology = cluster9.topology
    cut = topology.leaves[-1]
    cluster9.host.partition(set(cut.ranks))
    # the cut-off leaf group keeps its own leader; the majority side keeps the root
    await asyncio.sleep(1.0)  # a real-network condition: let the partition bite
    leaders = cluster9.leaders()
    assert leaders.get(cut.index) in cut.ranks
    assert leaders.get(topology.root.index) not in (None, *cut.ranks)
    cluster9.host.partition(None)
    await wait_for(cluster9.all_led, 8.0, "every group led after healing")


async def test_a_silent_kill_keeps_the_port_mute_and_is_found_by_probes(cluster9: Cluster) -> None:
    """A power loss: no "port unreachable" shortcut, the leader's probes find it; a restart
    takes the port back."""
    await wait_for(cluster9.settled, 6.0, "leaders and quiet views")
    leaders = set(cluster9.leaders().values())
    victim = max(r for r in range(9) if r not in leaders)
    driver = cluster9.host.drivers[victim]
    cluster9.host.kill(victim, silent=True)
    assert driver.endpoint is None and driver.silenced is not None and not driver.silenced.closed
    others = set(range(9)) - {victim}
    await wait_for(lambda: holders(cluster9, Failure, victim) >= others, 5.0, "the failure")
    unreachable = sum(d.stats.unreachable for r, d in cluster9.host.drivers.items() if r != victim)
    assert unreachable == 0  # nobody heard ICMP from the mute port
    await cluster9.host.restart(victim)
    assert driver.silenced is None and driver.running
    await wait_for(lambda: holders(cluster9, Alive, victim) >= others, 8.0, "the comeback")
