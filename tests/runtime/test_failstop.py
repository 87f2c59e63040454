"""Fail-stop: an exception in a node's step, or in carrying out one of its effects, crashes that
node at once (socket closed, timers dropped, nothing more of the step carried out) with a reason
naming the node and the exception; the event log says ``Failed``, ``status`` and ``members``
show the node failed with its reason, the host's other nodes run on, and ``restart`` brings it
back. Faults are injected by wrapping ``Node.step`` for one rank (the core itself is untouched).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tomli_w
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.codec import Codec
from hierclust.core.messages import Ack, LeaderHint
from hierclust.core.node import Node
from hierclust.core.state import PersistentState
from hierclust.core.types import (
    Alive,
    Command,
    Effect,
    Emit,
    Input,
    LoopLag,
    NoticeLearned,
    Persist,
    Received,
    Send,
    Start,
    TimerFired,
)
from hierclust.runtime.control import ControlServer
from hierclust.runtime.errors import NodeFailedError
from hierclust.runtime.events import EventRecord
from hierclust.runtime.status import aggregate
from hierclust.topology import Topology, generate_document, load
from tests.runtime.conftest import (
    FAST,
    Cluster,
    free_base_port,
    init_states,
    make_topology,
    wait_for,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

Step = Callable[[Node, int, Input], list[Effect]]
REAL_STEP: Step = Node.step


def fail_step(
    monkeypatch: pytest.MonkeyPatch,
    victim: int,
    when: Callable[[Input], bool],
    then: Callable[[Node, int, Input], list[Effect]] | None = None,
) -> None:
    """``victim``'s step, for inputs ``when`` accepts, runs ``then`` (default: raise); every
    other step is the real one."""

    def step(node: Node, now: int, inp: Input) -> list[Effect]:
        if node.rank == victim and when(inp):
            if then is None:
                raise RuntimeError(f"injected into {type(inp).__name__}")
            return then(node, now, inp)
        return REAL_STEP(node, now, inp)

    monkeypatch.setattr(Node, "step", step)


def log_lines(cluster: Cluster) -> list[dict[str, Any]]:
    path = cluster.state_dir / "events-test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def failed_lines(cluster: Cluster) -> list[dict[str, Any]]:
    return [r for r in log_lines(cluster) if r["event"] == "Failed"]


@dataclass(frozen=True, slots=True)
class Marker:
    """An event the injected step emits, to see which of its effects were carried out."""

    label: str


def markers(cluster: Cluster) -> list[str]:
    return [r.event.label for r in cluster.records if type(r.event) is Marker]


@dataclass(frozen=True, slots=True)
class Poison:
    """A message whose encoding raises (a codec bug, not a counted encode error)."""


@pytest_asyncio.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Ranks 1 and 0 of a 3-node group in one host, rank 1 first (it issues admin commands);
    not started."""
    topology = make_topology(3, 3)
    init_states(topology, tmp_path)
    cluster = Cluster(topology, tmp_path, ranks=[1, 0])
    try:
        yield cluster
    finally:
        await cluster.host.stop()
        cluster.bus.close()


def assert_crashed(cluster: Cluster, rank: int, *parts: str) -> str:
    """``rank`` is down as after a kill, its reason (kept, logged once) holds ``parts``."""
    driver = cluster.host.drivers[rank]
    assert not driver.running and driver.endpoint is None and not driver.timers
    assert driver.stop_event == "Failed" and driver.stop_reason is not None
    reason = driver.stop_reason
    assert reason.startswith(f"{driver.name}: "), reason
    for part in parts:
        assert part in reason, (part, reason)
    assert [(r["node"], r["reason"]) for r in failed_lines(cluster)] == [(driver.name, reason)]
    return reason


# -- a step that raises ---------------------------------------------------------------------------
async def test_a_step_that_raises_stops_that_node_and_no_other(
    cluster9: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = cluster9
    await wait_for(cluster.settled, 15.0, "every group led")
    leaders = cluster.leaders()
    victim = min(r for r in range(9) if r not in leaders.values())
    driver = cluster.host.drivers[victim]
    seen: dict[str, int] = {}

    def step_then_raise(node: Node, now: int, inp: Input) -> list[Effect]:
        # the real step runs (the node's state moves on) and decides effects; then it raises
        effects = REAL_STEP(node, now, inp)
        seen.update(effects=len(effects), sent=driver.stats.sent)
        raise KeyError("no such slot")

    fail_step(
        monkeypatch,
        victim,
        lambda inp: type(inp) is Received and type(inp.msg) is Ack,
        step_then_raise,
    )
    await wait_for(lambda: not driver.running, 5.0, "the victim to stop")
    name = driver.name
    reason = assert_crashed(
        cluster, victim, "step(Received Ack from cn", "KeyError: 'no such slot'"
    )
    assert seen["effects"] >= 1, "the Ack's step decided an echo"
    assert driver.stats.sent == seen["sent"], "an effect of the failed step was carried out"

    # to everyone else it is a crash like any other: declared, learned by every survivor
    survivors = [r for r in range(9) if r != victim]

    def learned() -> bool:
        told = {
            r.rank
            for r in cluster.records
            if type(r.event) is NoticeLearned
            and type(r.event.notice) is not Alive
            and r.event.notice.node == victim
        }
        return told >= set(survivors)

    await wait_for(learned, 10.0, "every survivor to learn of the failure")
    assert cluster.running() == survivors
    assert cluster.leaders() == leaders, "a group changed leader over another node's error"

    summary = aggregate(cluster.topology, [cluster.host.snapshot()])
    assert summary["failed_nodes"] == [name] and summary["suspect"] == 0
    assert summary["stopped_on_error"] == {name: reason}
    assert summary["alive"] == 8 and summary["groups_led"] == summary["groups"]


# -- every input path ------------------------------------------------------------------------------
INPUTS: dict[str, tuple[type, str]] = {
    "start": (Start, "step(Start)"),
    "datagram": (Received, "step(Received "),
    "timer": (TimerFired, "step(TimerFired ("),
    "loop lag": (LoopLag, "step(LoopLag "),
    "command": (Command, "step(Command admin)"),
}


@pytest.mark.parametrize("path", list(INPUTS))
async def test_every_input_path_fails_stop(
    pair: Cluster, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    kind, where = INPUTS[path]
    fail_step(monkeypatch, 1, lambda inp: type(inp) is kind)
    host = pair.host
    await host.start()
    if path == "command":
        with pytest.raises(NodeFailedError, match="cn2: step.Command admin. raised RuntimeError"):
            host.admin(1, [(2, 1)])
    driver = host.drivers[1]
    await wait_for(lambda: not driver.running, 5.0, "rank 1 to stop")
    assert_crashed(pair, 1, where, f"raised RuntimeError: injected into {kind.__name__}")
    assert host.drivers[0].running, "the host's other node stopped too"
    entry = next(n for n in host.snapshot()["nodes"] if n["rank"] == 1)
    assert (entry["running"], entry["stop_event"]) == (False, "Failed")
    assert entry["stop_reason"] == driver.stop_reason


async def test_restart_brings_a_failed_node_back_unless_it_fails_again(
    pair: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_step(monkeypatch, 1, lambda inp: type(inp) is Start)
    host = pair.host
    await host.start()
    driver = host.drivers[1]
    assert not driver.running and host.drivers[0].running
    with pytest.raises(NodeFailedError, match="stopped again as it started: cn2: step.Start."):
        await host.restart(1)
    assert not driver.running and len(failed_lines(pair)) == 2
    monkeypatch.undo()
    await host.restart(1)
    assert driver.running and driver.stop_event is None and driver.stop_reason is None
    await wait_for(pair.all_led, 5.0, "the group led again")


# -- an effect that raises half-way ----------------------------------------------------------------
def break_encoding(monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> None:
    real = Codec.encode

    def encode(codec: Codec, msg: Any, dst: int) -> bytes:
        if type(msg) is Poison:
            raise RuntimeError("encoder bug")
        return real(codec, msg, dst)

    monkeypatch.setattr(Codec, "encode", encode)


def break_disk(monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> None:
    # not an OSError (a disk that refuses writes is a storage fault, test_storage_faults.py):
    # a bug in the writer stops the node
    def buggy_writer(path: Path, state: object) -> None:
        raise TypeError("Object of type bytes is not JSON serializable")

    monkeypatch.setattr("hierclust.runtime.driver.save_state", buggy_writer)


def break_disk_inline(monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> None:
    pool = cluster.ctx.persist_pool
    assert pool is not None
    pool.shutdown()
    cluster.ctx.persist_pool = None  # the write runs inside the step's effects
    break_disk(monkeypatch, cluster)


def break_subscriber(monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> None:
    def subscriber(record: EventRecord) -> None:
        if record.event == Marker("poison"):
            raise ValueError("subscriber cannot take it")

    cluster.bus.subscribe(subscriber)


# what fails, the effect that does, and what the reason says
EFFECTS: dict[str, tuple[Callable[[pytest.MonkeyPatch, Cluster], None], Effect, str]] = {
    "send": (
        break_encoding,
        Send(0, Poison()),
        "Send Poison to cn1 raised RuntimeError: encoder bug",
    ),
    "persist in the pool": (
        break_disk,
        Persist(PersistentState(7)),
        "nodes/cn2.json raised TypeError: Object of type bytes is not JSON serializable",
    ),
    "persist inline": (
        break_disk_inline,
        Persist(PersistentState(7)),
        "nodes/cn2.json raised TypeError: Object of type bytes is not JSON serializable",
    ),
    "emit": (
        break_subscriber,
        Emit(Marker("poison")),
        "Emit Marker raised ValueError: subscriber cannot take it",
    ),
}


@pytest.mark.parametrize("what", list(EFFECTS))
async def test_an_effect_that_raises_stops_the_node_before_the_rest_of_its_step(
    pair: Cluster, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    breaks, failing, reason = EFFECTS[what]
    host = pair.host
    await host.start()
    driver = host.drivers[1]
    breaks(monkeypatch, pair)
    sent: list[int] = []

    def inject(node: Node, now: int, inp: Input) -> list[Effect]:
        sent.append(driver.stats.sent)
        return [
            Emit(Marker("before")),
            Send(0, LeaderHint(0, 0, 1)),
            failing,
            Emit(Marker("after")),
            Send(0, LeaderHint(0, 0, 2)),
        ]

    fail_step(monkeypatch, 1, lambda inp: inp == Command("inject"), inject)
    driver.feed(Command("inject"))
    await wait_for(lambda: not driver.running, 5.0, "rank 1 to stop")
    assert_crashed(pair, 1, reason)
    # (a subscriber that raises comes after the log and the earlier subscribers)
    done = [m for m in markers(pair) if m != "poison"]
    assert done == ["before"], "an effect after the failing one was carried out"
    assert driver.stats.sent == sent[0] + 1, "only the Send before the failing effect went out"
    logged = [r["label"] for r in log_lines(pair) if r["event"] == "Marker"]
    assert [m for m in logged if m != "poison"] == ["before"]
    assert host.drivers[0].running


# -- what status and members show, through the control socket --------------------------------------
def topology_file(path: Path) -> Topology:
    document = generate_document(3, 3, base_port=free_base_port(3), name="t")
    document["defaults"] = dict(FAST)
    path.write_text(tomli_w.dumps(document))
    return load(path)


async def cli(*args: str) -> Any:
    """``hierclust ARGS`` in a thread (its control requests are answered by this loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_status_and_members_show_the_node_failed_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = topology_file(tmp_path / "t.toml")
    state = tmp_path / "state"
    init_states(topology, state)
    cluster = Cluster(topology, state)
    control = ControlServer(cluster.host, state / "w0.sock")
    s = ("--state-dir", str(state))
    try:
        await cluster.host.start()
        await control.start()
        await wait_for(cluster.all_led, 10.0, "the group led")
        leader = cluster.leaders()[0]
        victim = min(r for r in range(3) if r != leader)
        name = topology.node_name(victim)
        fail_step(monkeypatch, victim, lambda inp: type(inp) is Received)
        driver = cluster.host.drivers[victim]
        await wait_for(lambda: not driver.running, 5.0, "the victim to stop")
        reason = driver.stop_reason
        assert reason is not None and "raised RuntimeError: injected into Received" in reason

        members = await cli("members", *s, "--json")
        assert members.exit_code == 0, members.output
        rows = {row["node"]: row for row in json.loads(members.stdout)["members"]}
        assert (rows[name]["state"], rows[name]["reason"]) == ("failed", reason)
        assert all(row["reason"] is None for n, row in rows.items() if n != name)
        status = await cli("status", *s, "--json")
        summary = json.loads(status.stdout)
        assert summary["failed_nodes"] == [name] and summary["stopped_on_error"] == {name: reason}
        text = await cli("status", *s)
        assert f"stopped on an error: {name}: step(Received " in " ".join(text.stdout.split())
        table = await cli("members", *s)
        assert "reason" in table.stdout and "RuntimeError" in table.stdout
        killed = await cli("kill", name, *s)
        assert killed.exit_code == 1 and "RuntimeError" in killed.stderr

        monkeypatch.undo()
        restarted = await cli("restart", name, *s, "--json")
        assert restarted.exit_code == 0, restarted.output
        assert driver.running
        members = await cli("members", *s, "--json")
        rows = {row["node"]: row for row in json.loads(members.stdout)["members"]}
        assert rows[name]["state"] != "failed" and rows[name]["reason"] is None
        summary = json.loads((await cli("status", *s, "--json")).stdout)
        assert summary["stopped_on_error"] == {}
    finally:
        await control.close()
        await cluster.host.stop()
        cluster.bus.close()
