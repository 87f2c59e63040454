"""The core's fast entry points and constructors are exact equivalents of the plain ones."""

from __future__ import annotations

import random
from dataclasses import FrozenInstanceError, fields
from typing import Any

import pytest

from hierclust.core.fast import (
    new_ack,
    new_emit,
    new_lease_changed,
    new_ping,
    new_send,
    new_set_timer,
)
from hierclust.core.messages import FLAG_LEASE, Ack, Ping
from hierclust.core.node import Node
from hierclust.core.timeouts import MS
from hierclust.core.types import Emit, LeaseChanged, Received, Send, SetTimer, Start, TimerFired
from hierclust.topology import from_dict, generate_document

TOPO = from_dict(generate_document(40, 8))


def test_fast_constructors_build_the_same_objects() -> None:
    ping = Ping(1, 2, 3, 4, 5, 6, 7)
    fast = new_ping(1, 2, 3, 4, 5, 6, 7)
    assert type(fast) is Ping and fast == ping and hash(fast) == hash(ping)
    assert repr(fast) == repr(ping)
    send = new_send(9, ping)
    assert type(send) is Send and send == Send(9, ping) and send.msg is ping


def test_every_fast_constructor_matches_its_dataclass_and_stays_frozen() -> None:
    ack = Ack(1, 2, 3, 4, 5, FLAG_LEASE, 7, 8, 9, 10, 11)
    pairs: list[tuple[Any, Any]] = [
        (new_ack(1, 2, 3, 4, 5, FLAG_LEASE, 7, 8, 9, 10, 11), ack),
        (new_set_timer(("t", 4), 99), SetTimer(("t", 4), 99)),
        (new_emit(ack), Emit(ack)),
        (new_lease_changed(3, 7, True, 12345), LeaseChanged(3, 7, True, 12345)),
    ]
    for fast, plain in pairs:
        assert type(fast) is type(plain) and fast == plain and hash(fast) == hash(plain)
        assert repr(fast) == repr(plain)
        with pytest.raises(FrozenInstanceError):
            fast.__setattr__(fields(plain)[0].name, 0)


def test_deliver_and_fire_match_step() -> None:
    plain, fast = (Node(TOPO, 3, rng=random.Random(5)) for _ in range(2))
    assert plain.step(0, Start()) == fast.step(0, Start())
    (leaf,) = fast.groups()
    leader = min(r for r in range(TOPO.num_nodes) if TOPO.path(r)[0].index == leaf)
    for i in range(5):
        ack = Ack(leaf, 1, 1, i * MS, 1, FLAG_LEASE, 500 * MS, -1, 0, 0, 0)
        now = (i + 1) * MS
        effects = fast.deliver(now, leader, ack)
        assert plain.step(now, Received(leader, ack)) == effects
        assert any(type(e) is Send and type(e.msg) is Ping for e in effects)
    assert plain.leader_of(leaf) == fast.leader_of(leaf) == leader
    for key in (("t", leaf), ("c", leaf), ("x",)):
        now = 10_000 * MS
        assert plain.step(now, TimerFired(key)) == fast.fire(now, key)
    assert plain.leader_of(leaf) == fast.leader_of(leaf)
