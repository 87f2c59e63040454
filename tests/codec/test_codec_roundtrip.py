"""Messages survive encode -> decode exactly; ill-typed messages and bodies are refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierclust.codec import (
    Codec,
    DatagramTooLarge,
    Decoded,
    Dropped,
    DropReason,
    EncodeError,
    MessageRegistry,
    SchemaError,
)
from hierclust.core.types import Alive, Failure
from hierclust.tuning import MAX_DATAGRAM_BYTES
from tests.codec.samples import (
    CLUSTER,
    SAMPLE_TYPES,
    Beat,
    Empty,
    Mixed,
    Mode,
    Report,
    codec,
    keyring,
    messages_of,
    seal,
)

FAILURE = Failure(node=1000, incarnation=3, group=70, detected_by=990, term=12, age_ms=599_999)


def _roundtrip(msg: object, sender: Codec, receiver: Codec) -> None:
    try:
        datagram = sender.encode(msg, receiver.node)
    except DatagramTooLarge as exc:
        assert exc.size > MAX_DATAGRAM_BYTES
        assert sender.size_bound(msg) > MAX_DATAGRAM_BYTES
        return
    assert len(datagram) <= MAX_DATAGRAM_BYTES
    assert len(datagram) <= sender.size_bound(msg)
    result = receiver.decode(datagram)
    assert isinstance(result, Decoded), result
    assert result.msg == msg
    assert repr(result.msg) == repr(msg)  # fields left out of equality too (a Failure's age)
    assert type(result.msg) is type(msg)
    assert (result.src, result.incarnation, result.key_id) == (sender.node, 1, 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=messages_of(SAMPLE_TYPES))
def test_sample_messages_round_trip(msg: object) -> None:
    _roundtrip(msg, codec(1), codec(2))


def test_nested_notices_and_tuples_come_back_as_such() -> None:
    msg = Mixed(
        pairs=((1, "a"), (2, "b")),
        last=FAILURE,
        ratio=0.25,
        mode=Mode.LOUD,
        phase="vote",
        nested=((Alive(1, 2),), (), (Alive(3, 4), Alive(5, 6))),
    )
    result = codec(2).decode(codec(1).encode(msg, 2))
    assert isinstance(result, Decoded)
    got = result.msg
    assert got == msg
    assert got.last.age_ms == FAILURE.age_ms == 599_999
    assert type(got.pairs) is tuple and type(got.pairs[0]) is tuple
    assert type(got.nested[2]) is tuple and type(got.nested[2][0]) is Alive
    assert type(got.last) is Failure
    assert got.mode is Mode.LOUD


def test_union_of_notices_keeps_each_member_type() -> None:
    msg = Report(via=None, notices=(FAILURE, Alive(7, 8)), note="", urgent=True, blob=b"\x00")
    result = codec(2).decode(codec(1).encode(msg, 2))
    assert isinstance(result, Decoded)
    assert [type(n) for n in result.msg.notices] == [Failure, Alive]
    assert result.msg == msg


def test_core_messages_round_trip() -> None:
    messages = pytest.importorskip(
        "hierclust.core.messages", reason="hierclust.core.messages not written yet"
    )
    registry = MessageRegistry.from_module()
    assert set(registry.kinds) == {t.KIND for t in messages.MESSAGE_TYPES}

    def make(node: int) -> Codec:
        return Codec(
            cluster=CLUSTER, node=node, incarnation=1, keyring=keyring(), registry=registry
        )

    sender, receiver = make(1), make(2)

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(msg=messages_of(tuple(messages.MESSAGE_TYPES)))
    def check(msg: object) -> None:
        _roundtrip(msg, sender, receiver)

    check()


def test_heartbeat_datagram_size() -> None:
    messages = pytest.importorskip(
        "hierclust.core.messages", reason="hierclust.core.messages not written yet"
    )
    registry = MessageRegistry.from_module()
    sender = Codec(cluster="demo", node=42, incarnation=3, keyring=keyring(), registry=registry)
    ping = messages.Ping(
        group=5, term=12, slot=3, inc=3, echo=1234567, digest_count=17, digest_hash=2**64 - 1
    )
    # 38-byte header + CBOR envelope; a full 64-bit digest hash included.
    assert len(sender.encode(ping, 7)) == 74


def test_envelope_is_positional_not_named() -> None:
    datagram = codec(1).encode(Beat(view_id=5, digest=(1, 2)), 2)
    assert b"view_id" not in datagram and b"digest" not in datagram
    assert len(datagram) == 38 + 20


def test_encode_refuses_ill_typed_messages() -> None:
    sender = codec(1)
    with pytest.raises(EncodeError, match=r"Beat\.view_id: expected int, got bool"):
        sender.encode(Beat(view_id=True, digest=()), 2)
    with pytest.raises(EncodeError, match=r"Beat\.digest: expected a tuple, got list"):
        sender.encode(Beat(view_id=1, digest=[1, 2]), 2)  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="not a registered message type"):
        sender.encode(FAILURE, 2)
    with pytest.raises(EncodeError, match="dst"):
        sender.encode(Empty(), "n2")  # type: ignore[arg-type]
    assert sender.counters.encoded == 0 and sender.next_seq == 1


def test_registry_refuses_types_it_cannot_carry() -> None:
    @dataclass(frozen=True, slots=True)
    class HasDict:
        KIND: ClassVar[str] = "has-dict"
        table: dict[str, int]

    @dataclass(frozen=True, slots=True)
    class NoKind:
        x: int

    @dataclass(frozen=True, slots=True)
    class Twin:
        KIND: ClassVar[str] = "beat"

    with pytest.raises(SchemaError, match=r"HasDict\.table: unsupported annotation"):
        MessageRegistry([HasDict])
    with pytest.raises(SchemaError, match=r"NoKind\.KIND"):
        MessageRegistry([NoKind])
    with pytest.raises(SchemaError, match="already registered"):
        MessageRegistry([Beat, Twin])


def _envelope(kind: str, body: Any, *, src: int = 1, seq: int = 1) -> list[Any]:
    return [CLUSTER, src, 2, 1, seq, kind, body]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("beat", [1]),  # too few fields
        ("beat", [1, [], 3]),  # too many
        ("beat", [True, []]),  # bool where int
        ("beat", [1, [1, "x"]]),  # str inside tuple[int, ...]
        ("beat", {"view_id": 1}),  # map instead of array
        ("report", [None, [[5, [1, 2]]], "", False, b""]),  # union member index out of range
        ("report", [None, [[0, [1, 2, 3]]], "", False, b""]),  # Alive with 3 fields
        ("mixed", [[], None, 1.0, "shout", "pre", []]),  # not a Mode value
        ("mixed", [[], None, 1.0, "loud", "post", []]),  # not in the Literal
        ("mixed", [[[1]], None, 1.0, "loud", "pre", []]),  # 1-tuple where (int, str)
    ],
)
def test_ill_typed_body_is_bad_body(kind: str, body: Any) -> None:
    receiver = codec(2)
    result = receiver.decode(seal(_envelope(kind, body)))
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_BODY
    assert receiver.counters.dropped[DropReason.BAD_BODY] == 1
    assert receiver.counters.accepted == 0
    # A dropped body leaves no trace in the replay window: the same seq is still fresh.
    ok = receiver.decode(seal(_envelope("beat", [1, [2]])))
    assert isinstance(ok, Decoded) and ok.msg == Beat(1, (2,))


def test_unknown_kind_is_dropped() -> None:
    receiver = codec(2)
    result = receiver.decode(seal(_envelope("launch-missiles", [])))
    assert isinstance(result, Dropped) and result.reason is DropReason.UNKNOWN_KIND
    assert receiver.counters.dropped[DropReason.UNKNOWN_KIND] == 1


@pytest.mark.parametrize(
    "envelope",
    [
        "not an array",
        [CLUSTER, 1, 2, 1, 1, "beat"],  # 6 fields
        [CLUSTER, "n1", 2, 1, 1, "beat", [1, []]],  # src not an int
        [CLUSTER, 1, 2, -1, 1, "beat", [1, []]],  # negative incarnation
        [CLUSTER, 1, 2, 1, True, "beat", [1, []]],  # bool seq
    ],
)
def test_signed_but_malformed_envelope_is_garbage(envelope: Any) -> None:
    receiver = codec(2)
    result = receiver.decode(seal(envelope))
    assert isinstance(result, Dropped) and result.reason is DropReason.GARBAGE
    assert receiver.counters.dropped[DropReason.GARBAGE] == 1


@given(st.data())
@settings(max_examples=50, deadline=None)
def test_union_order_does_not_change_the_wire(data: st.DataObject) -> None:
    @dataclass(frozen=True, slots=True)
    class A:
        KIND: ClassVar[str] = "n"
        n: Failure | Alive

    @dataclass(frozen=True, slots=True)
    class B:
        KIND: ClassVar[str] = "n"
        n: Alive | Failure

    node = data.draw(st.integers(0, 100))
    notice = Alive(node, 1) if data.draw(st.booleans()) else FAILURE
    assert MessageRegistry([A]).encode_body(A(notice)) == MessageRegistry([B]).encode_body(
        B(notice)
    )


def test_largest_core_notice_batch_fits_a_datagram() -> None:
    messages = pytest.importorskip(
        "hierclust.core.messages", reason="hierclust.core.messages not written yet"
    )
    registry = MessageRegistry.from_module()
    big = 2**64 - 1
    worst = Failure(big, big, big, big, big, True, big)
    batch = messages.Notices(via=big, seq=big, notices=(worst,) * messages.MAX_NOTICES_PER_MESSAGE)
    sender = Codec(cluster="x" * 32, node=1, incarnation=1, keyring=keyring(), registry=registry)
    assert sender.fits(batch)
    assert sender.size_bound(batch) <= MAX_DATAGRAM_BYTES
