"""A cut-off leaf group on real UDP (127.0.0.1, one process): what ``status``, ``members``,
``members --from``, ``quorum --from`` and ``events`` show, through the control socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tomli_w
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.runtime.control import ControlServer
from hierclust.topology import generate_document, load
from tests.runtime.conftest import FAST, Cluster, free_base_port, init_states, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

SLOT_GRACE_MS = 600


async def cli(*args: str) -> Any:
    """``hierclust ARGS`` in a thread (its control requests are answered by this loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Nine nodes, three leaf groups of three under a root of three slots, and a control socket;
    slots wait 600 ms for a new leader of their child group."""
    document = generate_document(9, 3, base_port=free_base_port(9), name="t")
    document["defaults"] = {**FAST, "slot_grace_ms": SLOT_GRACE_MS}
    (tmp_path / "t.toml").write_text(tomli_w.dumps(document))
    topology = load(tmp_path / "t.toml")  # the commands read it from the worker's snapshot
    init_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path)
    control = ControlServer(cluster.host, tmp_path / "w0.sock")
    await cluster.host.start()
    await control.start()
    try:
        await wait_for(cluster.all_led, 10.0, "every group led")
        yield cluster
    finally:
        await control.close()
        await cluster.host.stop()
        cluster.bus.close()


async def quorum_from(
    name: str, s: tuple[str, ...], holds: Callable[[dict[str, Any]], Any]
) -> dict[str, Any] | None:
    """``quorum --from NAME --json`` until its answer ``holds``, for at most a second (a lease
    lapses for a heartbeat when this busy loop stalls for longer than the 250 ms lease, and
    members hear of the renewal with the next ack); None if it never does."""
    for _ in range(10):
        answer: dict[str, Any] = json.loads(
            (await cli("quorum", "--from", name, *s, "--json")).stdout
        )
        if holds(answer):
            return answer
        await asyncio.sleep(0.1)
    return None


def held_cut_off(cluster: Cluster, rank: int) -> set[int]:
    node = cluster.host.drivers[rank].node
    assert node is not None
    return {r for r in range(cluster.topology.num_nodes) if not node.reachable(r)}


async def test_a_cut_off_leaf_group_is_unreachable_from_the_primary_and_back(
    served: Cluster, tmp_path: Path
) -> None:
    cluster, topology = served, served.topology
    s = ("--state-dir", str(tmp_path))
    root = topology.root.index
    leaf = topology.leaf_of(8)
    rest = [r for r in range(9) if r not in leaf.ranks]
    viewer = cluster.leaders()[root]
    if viewer in leaf.ranks:  # cut a leaf group that does not lead the root
        leaf = topology.leaf_of(0)
        rest = [r for r in range(9) if r not in leaf.ranks]
    cut = set(leaf.ranks)
    names = [topology.node_name(r) for r in leaf.ranks]
    inside = names[1]

    cluster.host.partition(cut)
    await wait_for(
        lambda: all(held_cut_off(cluster, r) == cut for r in rest),
        4.0,
        f"the rest to hold {leaf.name} cut off",
    )
    seen = await cli("members", "--from", topology.node_name(viewer), *s, "--json")
    assert seen.exit_code == 0, seen.output
    answer = json.loads(seen.stdout)
    assert answer["from"] == topology.node_name(viewer)
    rows = {row["name"]: row for row in answer["members"]}
    assert list(rows[names[0]]) == [
        "name", "rank", "group", "state", "mode", "incarnation", "leads",
    ]  # fmt: skip
    assert {n for n, row in rows.items() if row["state"] == "unreachable"} == set(names)
    assert {row["state"] for n, row in rows.items() if n not in names} == {"alive"}
    assert all(rows[n]["leads"] == [] for n in names), "an unreachable node leads nothing"
    assert topology.root.name in rows[topology.node_name(viewer)]["leads"]
    table = await cli("members", "--from", topology.node_name(viewer), *s)
    assert "unreachable" in table.stdout and "as " + topology.node_name(viewer) in table.stdout

    merged = json.loads((await cli("members", *s, "--json")).stdout)["members"]
    assert {row["node"] for row in merged if row["state"] == "unreachable"} == set(names)
    summary = json.loads((await cli("status", *s, "--json")).stdout)
    assert summary["unreachable_nodes"] == names and summary["unreachable_groups"] == [leaf.name]
    assert "cut_off" not in summary and summary["unreachable"] == 3
    status_text = " ".join((await cli("status", *s)).stdout.split())
    assert f"cut off from the primary component: {leaf.name}" in status_text

    outside = await quorum_from(inside, s, lambda q: q["group_quorum"][leaf.name]["quorate"])
    assert outside is not None, "the cut-off group keeps a leader of its own"
    assert outside["from"] == inside and outside["in_primary"] is False
    primary = await quorum_from(
        topology.node_name(viewer), s, lambda q: q["group_quorum"][topology.root.name]["leading"]
    )
    assert primary is not None, "the root's leader goes on leading it"
    assert primary["in_primary"] is True
    text = await cli("quorum", "--from", inside, *s)
    assert f"{inside}: not in the primary component" in text.stdout
    lines = (await cli("events", *s)).stdout.splitlines()
    folded = f"{names[0][:2]}[{names[0][2:]}-{names[-1][2:]}]"
    assert any(f"SubtreeUnreachable {leaf.name} {folded}" in line for line in lines), lines[-5:]

    cluster.host.partition(None)
    await wait_for(
        lambda: not any(held_cut_off(cluster, r) for r in range(9)),
        3.0,
        "everyone to hold everyone reachable",
    )
    seen = await cli("members", "--from", topology.node_name(viewer), *s, "--json")
    assert not [r for r in json.loads(seen.stdout)["members"] if r["state"] == "unreachable"]
    lines = (await cli("events", *s)).stdout.splitlines()
    assert any(f"SubtreeReachable {leaf.name} {folded}" in line for line in lines)


async def test_members_from_a_node_that_is_unknown_or_not_running(
    served: Cluster, tmp_path: Path
) -> None:
    s = ("--state-dir", str(tmp_path))
    unknown = await cli("members", "--from", "cn99", *s)
    assert unknown.exit_code == 2 and "cn99" in unknown.stderr
    assert len([line for line in unknown.stderr.splitlines() if line.strip()]) == 1
    unknown = await cli("quorum", "--from", "cn99", *s, "--json")
    assert unknown.exit_code == 2 and json.loads(unknown.stdout)["node"] == "cn99"
    victim = next(r for r in range(9) if r not in served.leaders().values())
    name = served.topology.node_name(victim)
    served.host.kill(victim)
    down = await cli("members", "--from", name, *s)
    assert down.exit_code == 1 and f"{name} is not running (killed)" in down.stderr
    down = await cli("quorum", "--from", name, *s, "--json")
    assert down.exit_code == 1 and json.loads(down.stdout)["node"] == name
