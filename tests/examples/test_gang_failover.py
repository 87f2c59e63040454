"""The gang scheduler of ``examples/gang_scheduler.py`` on a real (in-process, UDP on 127.0.0.1)
12-node cluster: a leader crash, a partition with the scheduler on the minority side, a restart.

Every test ends with :func:`check_invariants` on the final table: every submitted job is in it
and done, no job ran twice at once, no group held two jobs at once, the token never went down.
Placement is first fit in submission order over leaf groups in topology order, so with four
one-group jobs job ``i`` lands on leaf group ``i``: the tests give the job on the group they
hurt a longer duration, so it is still running when the failure is noticed."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.examples.gang import (
    Watch,
    check_invariants,
    deployment,
    example,
    root_leader,
    stop,
    write_jobs,
)

gang = example()
pytestmark = pytest.mark.timeout(60)


def four_jobs(long_on: int, long: float = 5.0, short: float = 1.0) -> list[dict[str, Any]]:
    return [
        {"name": f"j{i}", "groups": 1, "duration": long if i == long_on else short}
        for i in range(4)
    ]


def running_on(table: dict[str, Any], group: str) -> str | None:
    for name, job in table["jobs"].items():
        if job["state"] == "running" and group in job["runs"][-1]["groups"]:
            return str(name)
    return None


@pytest.mark.asyncio
@pytest.mark.parametrize("victim", ["scheduler", "leaf-leader"])
async def test_leader_crash_requeues_and_places_elsewhere(tmp_path: Path, victim: str) -> None:
    async with deployment(tmp_path) as (agent, topology, clients):
        leader = await root_leader(clients)
        leaves = [g.name for g in topology.leaves]
        if victim == "scheduler":
            killed = leader
        else:  # the leader of another leaf group
            killed = ""
            for c in clients:
                if c.node != leader and topology.leaf_of(c.rank).name in await c.leads():
                    killed = c.node
            assert killed, "no other leaf leader found"
        group = topology.leaf_of(topology.rank(killed)).name
        jobs = tmp_path / "jobs.json"
        write_jobs(jobs, four_jobs(long_on=leaves.index(group)))
        table = gang.JobTable(tmp_path / "shared" / "table.json")
        watch = Watch()
        scheduler = gang.GangScheduler(clients, table, jobs, tick=0.1, on_change=watch.poke)
        task = asyncio.ensure_future(scheduler.run(until_done=True))
        try:
            await watch.until(
                lambda: len(gang._running(table.read())) == 4, 10, "four jobs running"
            )
            victim_job = running_on(table.read(), group)
            first_term = table.read()["token"]["term"]
            agent.host.kill(topology.rank(killed))
            await asyncio.wait_for(task, 20)
        finally:
            await stop(task)
        final = table.read()
        check_invariants(final, {f"j{i}" for i in range(4)})
        job = final["jobs"][victim_job]
        assert job["requeued"] == 1, job
        assert job["runs"][0]["groups"] == [group]
        assert group not in job["runs"][1]["groups"], "placed again on the group that lost a node"
        assert killed not in job["runs"][1]["nodes"]
        others = [j for n, j in final["jobs"].items() if n != victim_job]
        assert all(j["requeued"] == 0 for j in others), f"requeued without cause: {others}"
        if victim == "scheduler":
            assert final["token"]["term"] > first_term, "the new scheduler wrote no larger token"
            assert final["token"]["leader"] != killed
            assert any(kind == "stepdown" for kind, _ in scheduler.notes)
        else:
            assert final["token"]["term"] == first_term, "the scheduler moved without cause"
            assert len(final["tokens"]) == 1


class GatedTable:
    """The example's table with a slow disk: ``gate`` holds a write before it takes the lock,
    like an NFS write in flight when the writer loses its quorum. Outcomes are recorded: the
    scheduler that started the write may have been cancelled and never sees them."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, watch: Watch) -> None:
        self.inner = gang.JobTable(path)
        self.path = path
        self.gate = threading.Event()
        self.gate.set()
        self.held = threading.Event()
        self.outcomes: list[tuple[int, BaseException | None]] = []
        self.loop, self.watch = loop, watch

    def read(self) -> dict[str, Any]:
        table: dict[str, Any] = self.inner.read()
        return table

    def write(self, table: dict[str, Any], token: Any, base: int) -> dict[str, Any]:
        if not self.gate.is_set():
            self.held.set()
            self.loop.call_soon_threadsafe(self.watch.poke)
            self.gate.wait(30)
        try:
            written: dict[str, Any] = self.inner.write(table, token, base)
        except Exception as exc:
            self.outcomes.append((token.term, exc))
            raise
        finally:
            self.loop.call_soon_threadsafe(self.watch.poke)
        self.outcomes.append((token.term, None))
        return written


@pytest.mark.asyncio
async def test_partition_minority_scheduler_is_fenced_out(tmp_path: Path) -> None:
    async with deployment(tmp_path) as (agent, topology, clients):
        leader = await root_leader(clients)
        cut = topology.leaf_of(topology.rank(leader))
        minority = [c for c in clients if c.rank in cut.ranks]
        majority = [c for c in clients if c.rank not in cut.ranks]
        leaves = [g.name for g in topology.leaves]
        jobs = tmp_path / "jobs.json"
        submitted = four_jobs(long_on=leaves.index(cut.name))
        write_jobs(jobs, submitted)
        path = tmp_path / "shared" / "table.json"
        watch = Watch()
        slow = GatedTable(path, asyncio.get_running_loop(), watch)
        a = gang.GangScheduler(minority, slow, jobs, tick=0.1, on_change=watch.poke)
        b = gang.GangScheduler(majority, gang.JobTable(path), jobs, tick=0.1, on_change=watch.poke)
        tasks = [asyncio.ensure_future(a.run()), asyncio.ensure_future(b.run(until_done=True))]
        try:
            await watch.until(
                lambda: len(gang._running(slow.read())) == 4, 10, "A placing four jobs"
            )
            assert a.leading == leader and b.leading is None
            a_term = slow.read()["token"]["term"]
            victim_job = running_on(slow.read(), cut.name)
            # A's next write (the new job j4 queued) hangs on its disk; then the cut
            slow.gate.clear()
            submitted.append({"name": "j4", "groups": 1, "duration": 1.0})
            write_jobs(jobs, submitted)
            await watch.until(slow.held.is_set, 10, "A writing j4")
            cut_at = time.time()
            agent.host.partition(set(cut.ranks))
            await watch.until(
                lambda: any("QuorumLost" in m for k, m in a.notes if k == "stepdown"),
                10,
                "A's primary() body cancelled with QuorumLost",
            )
            await watch.until(
                lambda: slow.read()["token"]["term"] > a_term, 10, "B writing a larger term"
            )
            done_before = len(slow.outcomes)
            slow.gate.set()  # A's write in flight lands now: the storage must refuse it
            await watch.until(lambda: len(slow.outcomes) > done_before, 10, "A's held write")
            await asyncio.wait_for(tasks[1], 20)
            assert a.leading is None
        finally:
            slow.gate.set()
            for task in tasks:
                await stop(task)
        final = slow.read()
        check_invariants(final, {j["name"] for j in submitted})
        term, refused = slow.outcomes[-1]
        assert term == a_term and isinstance(refused, gang.StaleToken), slow.outcomes
        assert all(e is None for _, e in slow.outcomes[:-1]), "A was refused before the cut"
        after_cut = [r for j in final["jobs"].values() for r in j["runs"] if r["start"] >= cut_at]
        assert after_cut and all(r["term"] > a_term for r in after_cut), "A placed after the cut"
        assert all(r["by"] in {c.node for c in majority} for r in after_cut)
        job = final["jobs"][victim_job]
        assert job["requeued"] == 1 and job["runs"][0]["groups"] == [cut.name], job
        assert cut.name not in job["runs"][1]["groups"]
        why = job["runs"][0]["why"]
        assert "SubtreeUnreachable" in why or any(c.node in why for c in minority), why
        assert final["jobs"]["j4"]["runs"][0]["by"] != leader


@pytest.mark.asyncio
async def test_restart_rereads_the_table_and_continues(tmp_path: Path) -> None:
    async with deployment(tmp_path) as (_agent, _topology, clients):
        jobs = tmp_path / "jobs.json"
        names = {f"j{i}" for i in range(6)}
        write_jobs(jobs, [{"name": n, "groups": 1, "duration": 1.5} for n in sorted(names)])
        table = gang.JobTable(tmp_path / "shared" / "table.json")
        watch = Watch()
        first = gang.GangScheduler(clients, table, jobs, tick=0.1, on_change=watch.poke)
        task = asyncio.ensure_future(first.run())
        try:
            await watch.until(lambda: len(gang._running(table.read())) == 4, 10, "four running")
        finally:
            await stop(task)
        before = table.read()
        assert (
            sorted(j["state"] for j in before["jobs"].values()) == ["queued"] * 2 + ["running"] * 4
        )
        second = gang.GangScheduler(clients, table, jobs, tick=0.1, on_change=watch.poke)
        await asyncio.wait_for(second.run(until_done=True), 20)
        final = table.read()
        check_invariants(final, names)
        assert final["version"] > before["version"]
        for name, job in before["jobs"].items():
            runs = final["jobs"][name]["runs"]
            assert len(runs) == 1, f"{name} was placed again after the restart: {runs}"
            if job["state"] == "running":  # kept where it ran, not restarted
                assert runs[0]["start"] == job["runs"][0]["start"]
        placed = {m.split()[0] for k, m in second.notes if k == "place"}
        queued = {n for n, j in before["jobs"].items() if j["state"] == "queued"}
        assert placed == queued, "the restarted scheduler did not place exactly what was queued"
