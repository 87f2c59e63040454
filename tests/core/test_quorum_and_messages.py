from __future__ import annotations

import dataclasses

import cbor2

from hierclust.core.messages import (
    BY_KIND,
    MAX_NOTICES_PER_MESSAGE,
    MESSAGE_TYPES,
    Notices,
    Roster,
)
from hierclust.core.quorum import lease_base, majority, quorate
from hierclust.core.timeouts import health_after, retransmit_delay, stretched
from hierclust.core.types import Alive, Failure
from hierclust.tuning import MAX_DATAGRAM_BYTES, MAX_GROUP_SIZE


def test_majority_of_configured_votes() -> None:
    assert [majority(v) for v in (1, 2, 3, 4, 5, 16, 17)] == [1, 2, 2, 3, 3, 9, 9]
    assert quorate(3, 5) and not quorate(2, 5) and not quorate(2, 4) and quorate(3, 4)


def test_lease_base_is_the_quorum_th_newest_echo() -> None:
    assert lease_base([10, 50, 30], 2) == 30
    assert lease_base([10, 50, 30], 3) == 10
    assert lease_base([10], 2) is None


def test_timeout_formulas() -> None:
    assert stretched(800, 0) == 800 and stretched(800, 2) == 2400
    assert health_after(0, 150, 200) == 1 and health_after(1, 10, 200) == 0
    assert [retransmit_delay(100, a) for a in range(4)] == [100, 200, 400, 800]


def _encode(msg: object) -> bytes:
    body = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}  # type: ignore[arg-type]

    def plain(value: object) -> object:
        if dataclasses.is_dataclass(value):
            return [type(value).__name__] + [
                getattr(value, f.name) for f in dataclasses.fields(value)
            ]
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    envelope = {
        "v": 1,
        "cluster": "hc1000000",
        "src": 999_999,
        "inc": 2**31,
        "seq": 2**40,
        "kind": type(msg).KIND,  # type: ignore[attr-defined]
        "body": {k: plain(v) for k, v in body.items()},
    }
    return cbor2.dumps(envelope) + b"k" * 4 + b"t" * 32  # key id + HMAC-SHA256 tag


def test_every_message_kind_is_unique_and_fields_are_plain() -> None:
    assert len(BY_KIND) == len(MESSAGE_TYPES)
    for kind in MESSAGE_TYPES:
        assert dataclasses.is_dataclass(kind)
        assert kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert hasattr(kind, "__slots__")


def test_largest_messages_fit_one_datagram() -> None:
    big = 2**62
    failure = Failure(999_999, 2**31, 70_000, 999_998, 2**62, True, big)  # terms: wall ms
    batch = Notices(70_000, 2**40, tuple([failure] * MAX_NOTICES_PER_MESSAGE))
    assert len(_encode(batch)) <= MAX_DATAGRAM_BYTES
    mixed = Notices(1, 1, tuple([Alive(999_999, 2**31)] * MAX_NOTICES_PER_MESSAGE))
    assert len(_encode(mixed)) <= MAX_DATAGRAM_BYTES
    roster = Roster(70_000, 2**40, 2**40, tuple([999_999] * MAX_GROUP_SIZE))
    assert len(_encode(roster)) <= MAX_DATAGRAM_BYTES


def test_overload_timings_widen_only_under_lag() -> None:
    from hierclust.core.timeouts import MAX_HEALTH, backoff, leader_period

    hb = 200 * 1_000_000
    # healthy: exactly as without local health
    assert backoff(hb, 0, 5) == hb and leader_period(hb, 0) == hb
    # lagging: back-off doubles per failed round in a row (capped), heartbeats halve at most
    assert backoff(hb, 1, 1) == 2 * hb
    assert backoff(hb, 1, 2) == 4 * hb and backoff(hb, 1, 3) == 8 * hb
    assert backoff(hb, 1, 50) == 16 * hb
    assert leader_period(hb, 1) == 2 * hb and leader_period(hb, MAX_HEALTH) == 2 * hb
    # a loop a second late is sick at once; calm samples bring it back one step at a time
    assert health_after(0, 1000, 200) == 5
    assert health_after(MAX_HEALTH - 1, 5000, 200) == MAX_HEALTH
    assert health_after(5, 10, 200) == 4
