"""Tie-breakers over the real runtime: a root group of two slots plus a witness or a disk lease."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from hierclust.core.messages import TieVote
from hierclust.runtime.tiebreak import disk_exchange
from hierclust.topology import Topology, from_dict
from tests.runtime.conftest import FAST, Cluster, free_base_port, init_states, wait_for


def two_slot_topology(tmp_path: Path, kind: str) -> Topology:
    base = free_base_port(7)
    tiebreaker = (
        {"kind": "witness", "address": f"127.0.0.1:{base + 6}"}
        if kind == "witness"
        else {"kind": "disk", "path": str(tmp_path / "root.lease")}
    )
    document = {
        "cluster": {"name": "tb"},
        "defaults": dict(FAST),
        "addresses": {"host": "127.0.0.1", "base_port": base},
        "group": {
            "root": {"tiebreaker": tiebreaker},
            "a": {"parent": "root", "nodes": "a[1-3]"},
            "b": {"parent": "root", "nodes": "b[1-3]"},
        },
    }
    return from_dict(document, source=str(tmp_path / "tb.toml"))


@pytest_asyncio.fixture(params=["witness", "disk"])
async def tiebroken(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    topology = two_slot_topology(tmp_path, request.param)
    init_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path)
    cluster.host = type(cluster.host)(cluster.ctx, list(range(6)), witnesses=True)
    await cluster.host.start()
    try:
        yield cluster
    finally:
        await cluster.host.stop()
        cluster.bus.close()


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_the_root_survives_losing_one_of_its_two_slots(tiebroken: Cluster) -> None:
    await wait_for(tiebroken.settled, 6.0, "leaders and quiet views")
    root = tiebroken.topology.root.index
    leaders = tiebroken.leaders()
    # kill the leader of the child group whose slot does NOT hold the root's leadership
    root_leader = leaders[root]
    victim = next(r for g, r in leaders.items() if g != root and r != root_leader)
    tiebroken.host.kill(victim)
    # 1 slot + the tie-breaker = 2 of 3 votes: the root keeps (or regains) a leader throughout
    await wait_for(tiebroken.all_led, 8.0, "every group led again")
    assert tiebroken.leaders()[root] != victim
    # the tie-breaker's vote was really used (and recorded durably)
    record = (
        tiebroken.state_dir / "nodes" / "witness-root.json"
        if tiebroken.ctx.witness_addresses
        else tiebroken.state_dir / "root.lease"
    )
    assert '"holder": ' in record.read_text()


def test_disk_lease_grants_one_candidate_per_term(tmp_path: Path) -> None:
    lease = tmp_path / "g.lease"
    first = disk_exchange(lease, 0, 1, TieVote(0, 3, 1, False))
    second = disk_exchange(lease, 0, 2, TieVote(0, 3, 1, False))
    assert first[0].msg.granted and not second[0].msg.granted
    assert '"holder": 1' in lease.read_text()
