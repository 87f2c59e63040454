"""The Slurm adapter's loop with a fake membership and a fake Slurm: when it acts, and what it
asks Slurm to do (the real ones are in test_slurm_real.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from hierclust.adapters.slurm import Scontrol, SlurmAdapter, SlurmError
from hierclust.adapters.slurm_plan import REASON_FAILED, Command, SlurmNode, applied
from hierclust.api.errors import NotPrimary
from hierclust.api.types import ClusterEvent, EventsLost, Member, NodeAlive, NodeFailed
from hierclust.topology import from_dict, generate_document

TOPOLOGY = from_dict(generate_document(9, 3, name="t"), source="test")
NAMES = [TOPOLOGY.node_name(r) for r in range(9)]
EV = {"cursor": "e:1", "observer": "cn1", "t_ns": 0}


class FakeMembership:
    def __init__(self, leads: tuple[str, ...] = ("t",), primary: bool = True) -> None:
        self.node = "cn1"
        self.topology = TOPOLOGY
        self._leads = leads
        self._primary = primary
        self.states = dict.fromkeys(NAMES, "alive")

    async def members(self) -> list[Member]:
        return [
            Member(
                name=n, rank=i, group="t.t0.0", tier=0, state=self.states[n],  # type: ignore[arg-type]
                mode="active", incarnation=1, leads=(),
            )
            for i, n in enumerate(NAMES)
        ]  # fmt: skip

    async def events(self, since: str | None = None) -> AsyncIterator[ClusterEvent]:
        return
        yield

    async def leads(self) -> tuple[str, ...]:
        return self._leads

    @contextlib.asynccontextmanager
    async def primary(self) -> AsyncIterator[None]:
        if not self._primary:
            raise NotPrimary("not in the primary component")
        yield


class FakeSlurm(Scontrol):
    def __init__(self, nodes: dict[str, SlurmNode], fail: bool = False) -> None:
        super().__init__()
        self.state = nodes
        self.ran: list[list[str]] = []
        self.fail = fail

    async def nodes(self) -> dict[str, SlurmNode]:
        return dict(self.state)

    async def update(self, command: Command) -> None:
        if self.fail:
            raise SlurmError("scontrol update: Unable to contact slurm controller")
        self.ran.append(command.args())
        self.state = applied(self.state, [command])


def idle() -> dict[str, SlurmNode]:
    return {n: SlurmNode(n, "IDLE") for n in NAMES}


def failed(node: str) -> NodeFailed:
    return NodeFailed(
        **EV, node=node, rank=NAMES.index(node), incarnation=1, group="g", detected_by="cn1"
    )


@pytest.mark.asyncio
async def test_the_elected_adapter_reconciles_once_and_then_has_nothing_to_do() -> None:
    membership = FakeMembership()
    membership.states["cn4"] = "failed"
    slurm = FakeSlurm(idle())
    await SlurmAdapter(membership, slurm).run(once=True)
    assert slurm.ran == [["update", "NodeName=cn4", "State=DOWN", f"Reason={REASON_FAILED}"]]
    await SlurmAdapter(membership, slurm).run(once=True)
    assert len(slurm.ran) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("leads, primary", [(("t.t0.0",), True), (("t",), False)])
async def test_an_adapter_that_is_not_elected_or_not_primary_does_nothing(
    leads: tuple[str, ...], primary: bool
) -> None:
    membership = FakeMembership(leads=leads, primary=primary)
    membership.states["cn4"] = "failed"
    slurm = FakeSlurm(idle())
    notes: list[str] = []
    await SlurmAdapter(membership, slurm, note=notes.append).run(once=True)
    assert slurm.ran == []
    assert notes and ("does not lead" in notes[0] or "stopped acting" in notes[-1])


@pytest.mark.asyncio
async def test_events_move_slurm_and_lost_events_reconcile() -> None:
    membership = FakeMembership()
    slurm = FakeSlurm(idle())
    adapter = SlurmAdapter(membership, slurm)
    await adapter.reconcile("start")
    await adapter.handle([failed("cn5"), failed("cn6")])
    assert slurm.ran == [["update", "NodeName=cn[5-6]", "State=DOWN", f"Reason={REASON_FAILED}"]]
    # meanwhile cn5 came back and cn7 failed, but the events were lost: the members tell
    membership.states.update(cn6="failed", cn7="failed")
    await adapter.handle([EventsLost(**EV, count=2, reason="overflow")])
    assert slurm.ran[1:] == [
        ["update", "NodeName=cn7", "State=DOWN", f"Reason={REASON_FAILED}"],
        ["update", "NodeName=cn5", "State=RESUME"],
    ]
    await adapter.handle([NodeAlive(**EV, node="cn9", rank=8, incarnation=2)])
    assert len(slurm.ran) == 3


@pytest.mark.asyncio
async def test_a_failing_scontrol_is_recorded_and_retried_at_the_next_reconcile() -> None:
    membership = FakeMembership()
    membership.states["cn2"] = "failed"
    slurm = FakeSlurm(idle(), fail=True)
    adapter = SlurmAdapter(membership, slurm)
    [record] = await adapter.reconcile("start")
    assert not record.ok and "slurm controller" in record.error
    slurm.fail = False
    [record] = await adapter.reconcile("periodic")
    assert record.ok and slurm.ran == [
        ["update", "NodeName=cn2", "State=DOWN", f"Reason={REASON_FAILED}"]
    ]
