"""Tie-breakers over the real runtime: a root group of two slots plus a witness or a disk lease;
then the witness server with a fake candidate over real UDP, the lease file with explicit clocks,
and the commands that start a witness."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tomli_w
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.core.disk import LeaseWatch
from hierclust.core.messages import TieRenew, TieRenewAck, TieVote, TieVoteResp
from hierclust.core.types import LeaderChanged, Send, witness_id
from hierclust.runtime import tiebreak
from hierclust.runtime.host import NodeHost
from hierclust.runtime.state import StateFileError
from hierclust.runtime.tiebreak import (
    LeaseFileError,
    WitnessServer,
    disk_exchange,
    init_witness_states,
    load_witness_state,
    witness_state_path,
)
from hierclust.topology import Topology, from_dict
from tests.runtime.conftest import (
    FAST,
    Cluster,
    FakePeer,
    free_base_port,
    init_states,
    wait_for,
)

MS = 1_000_000
HOLD_MS = FAST["election_timeout_ms"]  # a tie-breaker holds for the group's election timeout


def two_slot_document(tmp_path: Path, kind: str) -> dict[str, Any]:
    base = free_base_port(7)
    tiebreaker = (
        {"kind": "witness", "address": f"127.0.0.1:{base + 6}"}
        if kind == "witness"
        else {"kind": "disk", "path": str(tmp_path / "root.lease")}
    )
    return {
        "cluster": {"name": "tb"},
        "defaults": dict(FAST),
        "addresses": {"host": "127.0.0.1", "base_port": base},
        "group": {
            "root": {"tiebreaker": tiebreaker},
            "a": {"parent": "root", "nodes": "a[1-3]"},
            "b": {"parent": "root", "nodes": "b[1-3]"},
        },
    }


def two_slot_topology(tmp_path: Path, kind: str) -> Topology:
    return from_dict(two_slot_document(tmp_path, kind), source=str(tmp_path / "tb.toml"))


async def running(topology: Topology, tmp_path: Path) -> Cluster:
    init_states(topology, tmp_path)
    init_witness_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path)
    cluster.host = NodeHost(cluster.ctx, list(range(topology.num_nodes)), witnesses=True)
    await cluster.host.start()
    return cluster


@pytest_asyncio.fixture(params=["witness", "disk"])
async def tiebroken(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = await running(two_slot_topology(tmp_path, request.param), tmp_path)
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
    assert json.loads(record.read_text())["holder"] == tiebroken.leaders()[root]


# -- the witness server ----------------------------------------------------------------------------
class Candidate(FakePeer):
    """A fake node asking the witness."""

    @property
    def answers(self) -> list[Any]:
        return [d.msg for d in self.inbox]

    async def ask(self, msg: Any, group: int) -> None:
        await self.send(msg, witness_id(group))

    async def vote(self, group: int, term: int, side: int) -> Any:
        """Ask for the witness's vote and wait for its answer."""
        before = len(self.inbox)
        await self.ask(TieVote(group, term, side, False), group)
        await wait_for(lambda: len(self.inbox) > before, 3.0, f"an answer to {self.rank}")
        return self.inbox[before].msg


class Witnessed:
    """A witness's topology and state directory (no nodes run), two candidates of its group."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.group = cluster.topology.root.index
        self.address = cluster.ctx.witness_addresses[self.group]
        self.path = witness_state_path(cluster.state_dir, cluster.topology, self.group)
        self.one = Candidate(cluster, 0)  # a1
        self.two = Candidate(cluster, 3)  # b1
        self.server: WitnessServer | None = None

    async def start(self) -> WitnessServer:
        """Start (or restart: only the state file carries over) the witness."""
        if self.server is not None:
            self.server.close()
            await asyncio.sleep(0)  # the old socket closes on the next loop turns
            await asyncio.sleep(0)
        self.server = WitnessServer(self.cluster.ctx, self.address, [self.group])
        await self.server.start()
        return self.server


@pytest_asyncio.fixture
async def witnessed(tmp_path: Path) -> AsyncIterator[Witnessed]:
    topology = two_slot_topology(tmp_path, "witness")
    init_witness_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path, ranks=[])
    found = Witnessed(cluster)
    await found.one.open()
    await found.two.open()
    try:
        yield found
    finally:
        if found.server is not None:
            found.server.close()
        await found.one.close()
        await found.two.close()
        cluster.bus.close()


async def nothing_for(seconds: float, *candidates: Candidate) -> None:
    """Wait ``seconds`` (well past the witness's 20 ms window); no candidate may hear a thing."""
    await asyncio.sleep(seconds)
    for candidate in candidates:
        assert candidate.answers == [], f"{candidate.rank} got {candidate.answers}"


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_witness_whose_write_fails_answers_nothing_and_grants_nothing_from_memory(
    witnessed: Witnessed, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = await witnessed.start()
    group, one, two = witnessed.group, witnessed.one, witnessed.two

    def full_disk(path: Path, payload: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tiebreak, "write_atomic", full_disk)
    with caplog.at_level(logging.ERROR, logger="hierclust.runtime"):
        await one.ask(TieVote(group, 5, 1, False), group)
        await nothing_for(0.3, one)
        # asked again: the grant of a moment ago was never durable, so it is not given now
        await one.ask(TieVote(group, 5, 1, False), group)
        await nothing_for(0.3, one)
    assert server.witnesses[group].durable() == (0, -1)
    assert load_witness_state(witnessed.path) == (0, -1)
    failed = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(failed) == 2 and all(str(witnessed.path) in m for m in failed)

    monkeypatch.undo()  # the disk works again
    # term 5 was never given: it goes to the first candidate whose grant becomes durable, once
    assert await two.vote(group, 5, 1) == TieVoteResp(group, 5, True, False)
    assert load_witness_state(witnessed.path) == (5, two.rank)
    assert await one.vote(group, 5, 1) == TieVoteResp(group, 5, False, False)


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_witness_restarted_between_two_elections_never_grants_one_term_twice(
    witnessed: Witnessed,
) -> None:
    await witnessed.start()
    group, one, two = witnessed.group, witnessed.one, witnessed.two
    assert await one.vote(group, 5, 1) == TieVoteResp(group, 5, True, False)

    await witnessed.start()
    restarted = time.monotonic_ns()
    # the larger side would win an open term; term 5 and below are closed
    assert await two.vote(group, 5, 2) == TieVoteResp(group, 5, False, False)
    assert await two.vote(group, 4, 2) == TieVoteResp(group, 4, False, False)
    assert await one.vote(group, 5, 1) == TieVoteResp(group, 5, True, False)  # its own, again

    # the next election: node 1 may have renewed just before the restart, so the witness keeps
    # refusing others for a hold from the restart, then gives term 6 to one candidate
    granted_at = 0
    while not granted_at:
        answer = await two.vote(group, 6, 2)
        if answer.granted:
            granted_at = time.monotonic_ns()
        else:
            await asyncio.sleep(0.05)
    assert granted_at - restarted >= HOLD_MS * MS
    assert await one.vote(group, 6, 1) == TieVoteResp(group, 6, False, False)
    assert load_witness_state(witnessed.path) == (6, two.rank)


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_witness_restarted_after_its_wall_clock_went_back_is_heard(
    witnessed: Witnessed, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await witnessed.start()
    group, one = witnessed.group, witnessed.one
    assert await one.vote(group, 5, 1) == TieVoteResp(group, 5, True, False)

    # the host's wall clock steps back two minutes before the restart: an incarnation taken
    # from the clock alone would be older than the one the candidate heard, and every answer
    # of the restarted witness would be dropped as a replay
    real = tiebreak.wall_ns
    monkeypatch.setattr(tiebreak, "wall_ns", lambda: real() - 120 * 1_000_000_000)
    second = await witnessed.start()
    assert await one.vote(group, 5, 1) == TieVoteResp(group, 5, True, False)
    assert second.incarnation == first.incarnation + 1
    assert tiebreak.load_witness_record(witnessed.path) == (5, one.rank, second.incarnation)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no witness state"),
        (b"", "not JSON"),
        (b'{"version": 1, "term": 5', "not JSON"),
        (b"[5, 1]", "expected a JSON object"),
        (b'{"version": 1, "term": -1, "holder": 2}', "term: expected a whole number >= 0"),
        (b'{"version": 1, "term": 3, "holder": "a1"}', "holder: expected a node rank or -1"),
        (b'{"version": 7, "term": 3, "holder": 1}', "version: expected 1"),
        ("dir", "cannot read"),
    ],
)
def test_a_missing_or_bad_witness_state_file_stops_the_witness(
    tmp_path: Path, content: bytes | str | None, problem: str
) -> None:
    topology = two_slot_topology(tmp_path, "witness")
    cluster = Cluster(topology, tmp_path, ranks=[])
    path = witness_state_path(tmp_path, topology, topology.root.index)
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    try:
        with pytest.raises(StateFileError) as raised:
            NodeHost(cluster.ctx, [], witnesses=True)
    finally:
        cluster.bus.close()
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def write_witness_topology(tmp_path: Path) -> Path:
    path = tmp_path / "tb.toml"
    path.write_text(tomli_w.dumps(two_slot_document(tmp_path, "witness")))
    return path


def test_the_witness_command_refuses_a_damaged_state_file_and_inits_only_on_request(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    topology = write_witness_topology(tmp_path)
    state = tmp_path / "w"
    path = state / "nodes" / "witness-root.json"
    command = ["witness", "--topology", str(topology), "--state-dir", str(state)]

    missing = runner.invoke(app, command)
    assert missing.exit_code == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: no witness state" in lines[0]

    created = runner.invoke(app, [*command, "--init", "--json"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout) == {"created": [str(path)], "existing": []}
    assert load_witness_state(path) == (0, -1)
    again = runner.invoke(app, [*command, "--init"])
    assert again.exit_code == 1 and "nothing to create" in again.stderr

    path.write_bytes(b'{"version": 1, "te')
    torn = runner.invoke(app, command)
    assert torn.exit_code == 2
    lines = torn.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: not JSON" in lines[0]
    assert path.read_bytes() == b'{"version": 1, "te'  # left for the operator to look at


def hierclust(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hierclust", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.timeout(90)
def test_deploy_inits_the_witness_of_a_new_state_directory_only(tmp_path: Path) -> None:
    topology = write_witness_topology(tmp_path)
    state = tmp_path / "s"
    path = state / "nodes" / "witness-root.json"
    deploy = ["deploy", str(topology), "--processes", "1", "--state-dir", str(state)]
    try:
        first = hierclust(*deploy, "--json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["all_led"]
    finally:
        stopped = hierclust("stop", "--state-dir", str(state))
    assert stopped.returncode == 0, stopped.stderr
    term, holder = load_witness_state(path)
    assert term > 0 and holder >= 0  # created by the deploy, then the root's leader renewed it

    # worker w0 serves the witness: a damaged or missing state file makes the deploy fail
    path.write_bytes(b"")
    damaged = hierclust(*deploy)
    assert damaged.returncode == 2
    assert f"worker w0 exited at start: worker w0: {path}: not JSON" in damaged.stderr
    path.unlink()
    missing = hierclust(*deploy)
    assert missing.returncode == 2 and f"{path}: no witness state" in missing.stderr
    assert not path.exists()  # the directory held a deployment: no silent fresh start
    init = hierclust("witness", "--topology", str(topology), "--state-dir", str(state), "--init")
    assert init.returncode == 0, init.stderr
    assert load_witness_state(path) == (0, -1)


# -- the lease file --------------------------------------------------------------------------------
class Reader:
    """A node acting on a lease file with its own clock and memory, as its driver does."""

    def __init__(self, path: Path, rank: int, clock_ns: int) -> None:
        self.path = path
        self.rank = rank
        self.clock_ns = clock_ns
        self.watch = LeaseWatch()

    def ask(self, msg: Any, after_ms: int = 0) -> Any:
        self.clock_ns += after_ms * MS
        effects = disk_exchange(
            self.path, 0, self.rank, msg, self.watch, lambda: self.clock_ns, HOLD_MS
        )
        assert len(effects) == 1 and isinstance(effects[0], Send) and effects[0].dst == self.rank
        return effects[0].msg

    def vote(self, term: int, after_ms: int = 0, pre: bool = False) -> bool:
        granted: bool = self.ask(TieVote(0, term, 1, pre), after_ms).granted
        return granted

    def renew(self, term: int, after_ms: int = 0) -> bool:
        ok: bool = self.ask(TieRenew(0, term, 77), after_ms).ok
        return ok


def record(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_the_lease_file_holds_a_counter_and_is_replaced_whole(tmp_path: Path) -> None:
    lease = tmp_path / "g.lease"
    one, two = Reader(lease, 1, 0), Reader(lease, 2, 0)
    assert one.vote(3) and not two.vote(3)
    assert record(lease) == {"version": 1, "group": 0, "term": 3, "holder": 1, "renewals": 1}
    inode = lease.stat().st_ino
    assert one.ask(TieRenew(0, 3, 9), 100) == TieRenewAck(0, 3, 9, True)
    assert record(lease) == {"version": 1, "group": 0, "term": 3, "holder": 1, "renewals": 2}
    assert lease.stat().st_ino != inode  # renamed into place, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.lease", "g.lease.lock"]


def test_a_reader_takes_over_only_after_the_counter_stood_still_for_hold_ms(tmp_path: Path) -> None:
    lease = tmp_path / "g.lease"
    # monotonic clocks of two hosts: origins a day apart, which must not matter
    holder, reader = Reader(lease, 1, 5 * MS), Reader(lease, 2, 86_400_000 * MS)
    assert holder.vote(4)
    assert not reader.vote(5, pre=True)  # first look
    assert not reader.vote(5, after_ms=HOLD_MS - 1)
    assert holder.renew(4, after_ms=200)  # the counter moves: every reader's wait starts again
    assert not reader.vote(5, after_ms=1)
    assert not reader.vote(5, after_ms=HOLD_MS - 1)
    assert record(lease)["holder"] == 1
    # the holder died after that renewal: hold_ms after the reader first saw it, it is free
    assert reader.vote(5, after_ms=1, pre=True)
    assert record(lease)["renewals"] == 2  # a pre-vote writes nothing
    assert reader.vote(5)
    assert record(lease) == {"version": 1, "group": 0, "term": 5, "holder": 2, "renewals": 3}
    assert not holder.renew(4, after_ms=1)  # fenced by term


def test_a_lease_record_of_an_older_version_counts_as_not_renewed_yet(tmp_path: Path) -> None:
    lease = tmp_path / "g.lease"
    lease.write_text('{"group": 0, "term": 4, "holder": 1, "renewed_ns": 1}')  # a wall-clock stamp
    reader = Reader(lease, 2, 0)
    assert not reader.vote(5)
    assert Reader(lease, 1, 0).renew(4)
    assert record(lease) == {"version": 1, "group": 0, "term": 4, "holder": 1, "renewals": 1}
    assert not reader.vote(5, after_ms=HOLD_MS - 1)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b'{"version": 1, "group": 0, "term": 3, "hol', "not a lease record"),
        (b"\x00\x00\x00\x00", "not a lease record"),
        (b'{"version": 1, "group": 0, "term": 3, "holder": 1}', "renewals: expected"),
        (b'{"version": 1, "group": 0, "term": -3, "holder": 1, "renewals": 2}', "term: expected"),
        (b'{"version": 1, "group": 4, "term": 3, "holder": 1, "renewals": 2}', "group 4"),
        (b'{"version": 2, "group": 0, "term": 3, "holder": 1, "renewals": 2}', "version"),
        (b'"free"', "expected a JSON object"),
    ],
)
@pytest.mark.parametrize("request_kind", ["vote", "renew"])
def test_a_torn_or_foreign_lease_record_is_an_error_never_a_free_lease(
    tmp_path: Path, content: bytes, problem: str, request_kind: str
) -> None:
    lease = tmp_path / "g.lease"
    lease.write_bytes(content)
    reader = Reader(lease, 1, 10**12)
    for after_ms in (0, 10 * HOLD_MS):  # standing still changes nothing
        with pytest.raises(LeaseFileError) as raised:
            reader.vote(9, after_ms) if request_kind == "vote" else reader.renew(3, after_ms)
        message = str(raised.value)
        assert message.startswith(f"{lease}: ") and problem in message and "\n" not in message
    assert lease.read_bytes() == content  # nothing was written over it


@pytest.mark.asyncio
@pytest.mark.timeout(40)
async def test_a_torn_lease_makes_its_holder_step_down_and_nobody_takes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topology = two_slot_topology(tmp_path, "disk")
    cluster = await running(topology, tmp_path)
    lease = tmp_path / "root.lease"
    root = topology.root.index
    try:
        await wait_for(cluster.settled, 8.0, "leaders and quiet views")
        # cut slot a's group from slot b's: the root's leader now keeps its lease through the
        # disk's share alone (one slot + the disk = 2 of 3 votes), renewing every heartbeat
        side_a = {r for g in topology.by_index if g.name == "a" for r in g.ranks}
        cluster.host.partition(side_a)
        settled = time.monotonic_ns() + 3 * FAST["election_timeout_ms"] * MS

        def disk_held() -> bool:
            leader = cluster.leaders().get(root)
            return time.monotonic_ns() > settled and record(lease)["holder"] == leader

        await wait_for(disk_held, 5.0, "the root led through the disk for 3 election timeouts")

        raw = lease.read_bytes()
        torn = raw[: len(raw) // 2]  # a write cut off half-way
        cut = time.monotonic_ns()
        with caplog.at_level(logging.WARNING, logger="hierclust.runtime"):
            lease.write_bytes(torn)
            await wait_for(lambda: root not in cluster.leaders(), 3.0, "the holder stepping down")
            stepped_down = time.monotonic_ns()
            for _ in range(100):  # 2 s, five election timeouts: nobody leads the root again
                await asyncio.sleep(0.02)
                assert root not in cluster.leaders(), cluster.leaders()
                assert lease.read_bytes() == torn
        assert (stepped_down - cut) / MS < FAST["lease_ms"] + 2 * FAST["heartbeat_ms"]
        new_leaders = [
            r
            for r in cluster.records
            if r.t_ns > cut
            and isinstance(r.event, LeaderChanged)
            and r.event.group == root
            and r.event.leader is not None
        ]
        assert new_leaders == []
        assert any(
            str(lease) in m and "not a lease record" in m
            for m in (r.getMessage() for r in caplog.records)
        )
    finally:
        await cluster.host.stop()
        cluster.bus.close()


def test_nothing_answers_for_the_disk_before_the_record_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = tmp_path / "g.lease"
    reader = Reader(lease, 1, 0)

    def failing(path: Path, payload: bytes) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(tiebreak, "write_atomic", failing)
    with pytest.raises(OSError):
        reader.vote(3)
    assert not lease.exists()
    monkeypatch.undo()
    assert Reader(lease, 2, 0).vote(3)  # nobody got term 3 from the failed write


def test_hierclust_witness_serves_the_witnesses_whose_address_is_on_its_host() -> None:
    """Loopback, or an address one of the host's interfaces holds (a lab host's eth0, a real
    host's LAN address); an address no interface holds, or a name, is another host's."""
    from hierclust.runtime.context import on_this_host

    assert on_this_host("127.0.0.1") and on_this_host("localhost")
    assert not on_this_host("192.0.2.1")  # TEST-NET-1: documentation only, on no interface
    assert not on_this_host("witness.example")
