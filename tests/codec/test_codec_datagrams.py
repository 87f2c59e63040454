"""Whatever arrives, decode returns Decoded or Dropped(reason), counts it, and never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hierclust.codec import HEADER_BYTES, DatagramTooLarge, Decoded, Dropped, DropReason, Keyring
from hierclust.tuning import MAX_DATAGRAM_BYTES
from tests.codec.samples import CLUSTER, SECRET_1, Beat, Sync, codec, seal

BEAT = Beat(view_id=9, digest=(1, 2, 3))


def _dropped(result: Decoded | Dropped, reason: DropReason) -> None:
    assert isinstance(result, Dropped), result
    assert result.reason is reason, result


def test_accepted_datagram_is_counted() -> None:
    sender, receiver = codec(1), codec(2)
    result = receiver.decode(sender.encode(BEAT, 2))
    assert isinstance(result, Decoded)
    assert (result.src, result.incarnation, result.seq, result.msg) == (1, 1, 1, BEAT)
    assert receiver.counters.accepted == 1 and receiver.counters.total_dropped == 0
    assert sender.counters.encoded == 1 and sender.next_seq == 2
    assert receiver.counters.as_dict()["accepted"] == 1


def test_forged_tag_is_bad_tag() -> None:
    receiver = codec(2)
    datagram = bytearray(codec(1).encode(BEAT, 2))
    datagram[6:HEADER_BYTES] = bytes(32)
    _dropped(receiver.decode(bytes(datagram)), DropReason.BAD_TAG)
    # Signed with a secret the receiver does not hold, under a key id it knows.
    forger = codec(1, ring=Keyring(1, {1: b"\x55" * 32}))
    _dropped(receiver.decode(forger.encode(BEAT, 2)), DropReason.BAD_TAG)
    assert receiver.counters.dropped[DropReason.BAD_TAG] == 2
    assert receiver.counters.accepted == 0


def test_every_tampered_byte_is_dropped() -> None:
    datagram = codec(1).encode(BEAT, 2)
    allowed = {DropReason.BAD_TAG, DropReason.GARBAGE, DropReason.VERSION}
    allowed |= {DropReason.UNKNOWN_KEY, DropReason.TRUNCATED}
    for index in range(len(datagram)):
        for flip in (0x01, 0x80):
            tampered = bytearray(datagram)
            tampered[index] ^= flip
            receiver = codec(2)
            result = receiver.decode(bytes(tampered))
            assert isinstance(result, Dropped), (index, flip)
            assert result.reason in allowed, (index, flip, result)
            assert receiver.counters.total_dropped == 1
    # The untouched datagram is still good: tampering was what got it dropped.
    assert isinstance(codec(2).decode(datagram), Decoded)


def test_every_prefix_is_truncated() -> None:
    datagram = codec(1).encode(BEAT, 2)
    receiver = codec(2)
    for size in range(len(datagram)):
        _dropped(receiver.decode(datagram[:size]), DropReason.TRUNCATED)
    assert receiver.counters.dropped[DropReason.TRUNCATED] == len(datagram)
    assert receiver.counters.accepted == 0


def test_trailing_bytes_are_garbage() -> None:
    datagram = codec(1).encode(BEAT, 2)
    _dropped(codec(2).decode(datagram + b"\x00"), DropReason.GARBAGE)


def test_oversized_datagram_is_dropped() -> None:
    receiver = codec(2)
    _dropped(receiver.decode(b"\x68\x01" + bytes(MAX_DATAGRAM_BYTES - 1)), DropReason.OVERSIZED)
    assert receiver.counters.dropped[DropReason.OVERSIZED] == 1


def test_encoding_past_the_limit_raises_and_keeps_the_sequence() -> None:
    sender = codec(1)
    big = Sync(part=0, items=("x" * 100,) * 14)
    with pytest.raises(DatagramTooLarge, match=r"'sync' would be a \d+-byte datagram") as info:
        sender.encode(big, 2)
    assert info.value.size > MAX_DATAGRAM_BYTES == info.value.limit
    assert sender.next_seq == 1 and sender.counters.encoded == 0
    assert not sender.fits(big)
    just_fits = Sync(part=0, items=("x" * 100,) * 12)
    assert sender.fits(just_fits)
    assert len(sender.encode(just_fits, 2)) <= MAX_DATAGRAM_BYTES


def test_other_version_and_magic() -> None:
    receiver = codec(2)
    _dropped(receiver.decode(seal([], version=2)), DropReason.VERSION)
    _dropped(receiver.decode(seal([], magic=0x00)), DropReason.GARBAGE)
    assert receiver.counters.dropped[DropReason.VERSION] == 1


def test_unknown_key_id() -> None:
    receiver = codec(2)
    _dropped(receiver.decode(seal([], key_id=77)), DropReason.UNKNOWN_KEY)
    assert receiver.counters.dropped[DropReason.UNKNOWN_KEY] == 1


def test_wrong_cluster_same_keys() -> None:
    receiver = codec(2)
    stranger = codec(1, cluster="other-cluster")
    result = receiver.decode(stranger.encode(BEAT, 2))
    _dropped(result, DropReason.WRONG_CLUSTER)
    assert isinstance(result, Dropped) and "other-cluster" in result.detail
    assert receiver.counters.dropped[DropReason.WRONG_CLUSTER] == 1


def test_datagram_for_another_node_is_wrong_dst() -> None:
    sender, intended, other = codec(1), codec(2), codec(3)
    datagram = sender.encode(BEAT, 2)
    _dropped(other.decode(datagram), DropReason.WRONG_DST)
    assert isinstance(intended.decode(datagram), Decoded)
    # Our own datagram reflected back at us is not addressed to us either.
    _dropped(sender.decode(datagram), DropReason.WRONG_DST)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM_BYTES + 10))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    receiver = codec(2)
    result = receiver.decode(data)
    assert isinstance(result, Dropped)
    assert receiver.counters.total_dropped == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
def test_bytes_behind_a_plausible_header_never_raise(tail: bytes, length: int) -> None:
    receiver = codec(2)
    header = bytes([0x68, 0x01, 0x00, 0x01]) + length.to_bytes(2, "big") + bytes(32)
    result = receiver.decode(header + tail)
    assert isinstance(result, Dropped)
    assert result.reason in {DropReason.TRUNCATED, DropReason.GARBAGE, DropReason.BAD_TAG}


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.integers() | st.text() | st.binary() | st.none(), st.lists, max_leaves=20))
def test_any_signed_cbor_never_raises(envelope: object) -> None:
    receiver = codec(2)
    result = receiver.decode(seal(envelope))
    assert isinstance(result, Dropped)
    assert receiver.counters.total_dropped == 1


def test_counters_cover_every_reason() -> None:
    receiver = codec(2)
    receiver.decode(b"")
    receiver.decode(b"junk")
    receiver.decode(seal([CLUSTER, 1, 2, 1, 1, "beat", [1, []]], secret=SECRET_1))
    flat = receiver.counters.as_dict()
    assert flat["dropped"] == 2 and flat["accepted"] == 1
    assert flat["dropped_truncated"] == 1 and flat["dropped_garbage"] == 1
    assert {f"dropped_{r.value}" for r in DropReason} <= set(flat)
