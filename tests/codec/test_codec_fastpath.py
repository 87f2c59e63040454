"""The codec's hot-path shortcuts give exactly what the plain construction gives.

Encoding assembles the envelope from cached pieces, signs with pre-hashed HMAC pads and keeps the
encoded body of the last immutable message object; decoding runs generated per-dataclass
converters. Each is checked here against the straightforward construction (``cbor2.dumps`` of
the whole envelope, ``hmac.digest``, the datagram sealed by hand in ``samples.seal``)."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierclust.codec import Codec, Decoded, Dropped, DropReason, MessageRegistry
from hierclust.codec.keyring import HmacSha256
from hierclust.codec.wire import U64_MAX, cbor_int
from hierclust.core.messages import MESSAGE_TYPES
from tests.codec.samples import (
    CLUSTER,
    SAMPLE_TYPES,
    SECRET_1,
    SECRET_2,
    Beat,
    codec,
    keyring,
    messages_of,
    registry,
    seal,
)

INT64_MIN = -(1 << 63)


def _reference(sender: Codec, msg: object, dst: int, seq: int) -> bytes:
    """The datagram ``sender`` must produce, built the plain way."""
    kind, body = sender.registry.encode_body(msg)
    envelope = [sender.cluster, sender.node, dst, sender.incarnation, seq, kind, body]
    ring = sender.keyring
    return seal(envelope, key_id=ring.primary_id, secret=ring.primary_secret)


EDGES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, U64_MAX]


@pytest.mark.parametrize("n", EDGES + [-1 - e for e in EDGES])
def test_cbor_int_matches_cbor2_at_the_edges(n: int) -> None:
    assert cbor_int(n) == cbor2.dumps(n)


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_cbor_int_matches_cbor2(n: int) -> None:
    assert cbor_int(n) == cbor2.dumps(n)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=1, max_size=200), head=st.binary(max_size=8), body=st.binary())
def test_hmac_with_prehashed_pads_is_hmac_sha256(key: bytes, head: bytes, body: bytes) -> None:
    assert HmacSha256(key).tag(head, body) == hmac.digest(key, head + body, "sha256")


def test_hmac_repr_hides_the_key() -> None:
    assert SECRET_1.hex() not in repr(HmacSha256(SECRET_1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msg=messages_of(SAMPLE_TYPES),
    dst=st.integers(min_value=INT64_MIN, max_value=U64_MAX),
    node=st.integers(min_value=INT64_MIN, max_value=U64_MAX),
    inc=st.integers(min_value=0, max_value=U64_MAX),
    first_seq=st.integers(min_value=0, max_value=U64_MAX - 2),
)
def test_encoding_is_byte_for_byte_the_plain_construction(
    msg: object, dst: int, node: int, inc: int, first_seq: int
) -> None:
    sender = Codec(
        cluster=CLUSTER,
        node=node,
        incarnation=inc,
        keyring=keyring(),
        registry=registry(),
        first_seq=first_seq,
    )
    if sender.size_bound(msg) > 1400:
        return
    assert sender.encode(msg, dst) == _reference(sender, msg, dst, first_seq)
    # the same object again (its body comes from the cache), to another destination
    assert sender.encode(msg, dst ^ 1) == _reference(sender, msg, dst ^ 1, first_seq + 1)


def test_one_message_object_to_many_members() -> None:
    sender = codec(1)
    beat = Beat(view_id=7, digest=(1, 2, 3))
    datagrams = [sender.encode(beat, dst) for dst in range(2, 18)]
    assert datagrams == [
        _reference(sender, beat, dst, seq) for seq, dst in enumerate(range(2, 18), 1)
    ]
    for dst, datagram in zip(range(2, 18), datagrams, strict=True):
        result = codec(dst).decode(datagram)
        assert isinstance(result, Decoded) and result.msg == beat and result.src == 1


def test_identity_changes_and_key_rotation_reach_the_envelope() -> None:
    sender = codec(1)
    beat = Beat(view_id=1, digest=())
    sender.encode(beat, 2)
    sender.incarnation = 9
    assert sender.encode(beat, 2) == _reference(sender, beat, 2, 2)
    sender.keyring = keyring().with_primary(2)
    datagram = sender.encode(beat, 2)
    assert datagram == _reference(sender, beat, 2, 3)
    assert datagram == seal([CLUSTER, 1, 2, 9, 3, "beat", [1, []]], key_id=2, secret=SECRET_2)
    sender.cluster = "other"
    sender.node = 5
    assert sender.encode(beat, 2) == _reference(sender, beat, 2, 4)


@dataclass(slots=True)
class Mutable:
    KIND: ClassVar[str] = "mutable"
    value: int


@dataclass(frozen=True, slots=True)
class Holder:
    KIND: ClassVar[str] = "holder"
    inner: Mutable


def test_mutable_messages_are_encoded_afresh_every_time() -> None:
    reg = MessageRegistry([Mutable, Holder, Beat])
    assert reg.encoder(Beat) is not None and reg.encoder(Beat)[3]  # frozen: body reused
    assert not reg.encoder(Mutable)[3]  # type: ignore[index]
    assert not reg.encoder(Holder)[3]  # type: ignore[index]  # frozen, but holds a mutable
    sender = Codec(cluster=CLUSTER, node=1, incarnation=1, keyring=keyring(), registry=reg)
    receiver = Codec(cluster=CLUSTER, node=2, incarnation=1, keyring=keyring(), registry=reg)
    msg = Mutable(1)
    first = receiver.decode(sender.encode(msg, 2))
    msg.value = 2
    second = receiver.decode(sender.encode(msg, 2))
    assert isinstance(first, Decoded) and first.msg == Mutable(1)
    assert isinstance(second, Decoded) and second.msg == Mutable(2)


def test_receive_is_decode_without_the_wrapper() -> None:
    sender, receiver = codec(1), codec(2)
    beat = Beat(view_id=3, digest=(4,))
    got = receiver.receive(sender.encode(beat, 2))
    assert got == (1, beat, 1, 1, 1)
    again = receiver.receive(sender.encode(beat, 3))
    assert isinstance(again, Dropped) and again.reason is DropReason.WRONG_DST
    assert receiver.counters.accepted == 1
    assert receiver.counters.dropped[DropReason.WRONG_DST] == 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=messages_of(MESSAGE_TYPES))
def test_core_messages_encode_as_the_plain_construction(msg: object) -> None:
    sender = Codec(
        cluster="mpp-1k",
        node=3,
        incarnation=1_764_150_000,
        keyring=keyring(),
        registry=MessageRegistry.from_module(),
        first_seq=1_764_150_000_123_456,
    )
    if sender.size_bound(msg) > 1400:
        return
    datagram = sender.encode(msg, 7)
    assert datagram == _reference(sender, msg, 7, 1_764_150_000_123_456)
    receiver = Codec(
        cluster="mpp-1k",
        node=7,
        incarnation=1,
        keyring=keyring(),
        registry=MessageRegistry.from_module(),
    )
    result = receiver.decode(datagram)
    assert isinstance(result, Decoded) and result.msg == msg and type(result.msg) is type(msg)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([1], "Beat: expected array of 2 fields"),
        ([True, []], "Beat.view_id: expected int, got bool"),
        ([1, [1, "x"]], r"Beat.digest\[\]: expected int, got text"),
        ([1, 2], "Beat.digest: expected array, got int"),
    ],
)
def test_generated_decoders_raise_the_general_errors(body: list[Any], error: str) -> None:
    result = codec(2).decode(seal([CLUSTER, 1, 2, 1, 1, "beat", body]))
    assert isinstance(result, Dropped) and result.reason is DropReason.BAD_BODY
    assert re.search(error, result.detail), result.detail
