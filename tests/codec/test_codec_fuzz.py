"""Fuzzing the decoder with the protocol's real messages: what any bytes can do to a receiver.

The properties, for any input:

- :meth:`Codec.decode` returns a ``Decoded`` or a ``Dropped`` and counts it, and never gets there
  through its safety net (``undecodable: ...``, the catch-all for a decoder bug): every refusal
  has its own reason;
- a body decoder raises nothing but :class:`BodyError`;
- a message the codec accepts encodes again (what a node took in, it can forward).

Inputs are signed with the receiver's key (an unsigned datagram never gets past the tag; the
unsigned side is covered by tests/codec/test_codec_datagrams.py): real messages of every kind,
then mutated (a field replaced by any CBOR value, dropped, duplicated, the body nested or
swapped for another kind's), and arbitrary CBOR. ``make test`` runs a few hundred examples;
``make fuzz`` (marker ``fuzz``) a hundred times more.
"""

from __future__ import annotations

import os
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierclust.codec import (
    BodyError,
    Codec,
    Decoded,
    Dropped,
    EncodeError,
    Keyring,
    MessageRegistry,
)
from tests.codec.samples import SECRET_1, seal, strategy_for

REGISTRY = MessageRegistry.from_module()
KINDS = REGISTRY.kinds
CLUSTER = "fuzz"
FUZZ_EXAMPLES = int(os.environ.get("HIERCLUST_FUZZ_EXAMPLES", "30000"))

scalars = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.booleans()
    | st.none()
)
cbor_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


def real_bodies() -> st.SearchStrategy[tuple[str, Any]]:
    """(kind, body) of a real message of any kind, as the sender's codec would put it."""
    return st.one_of(*(strategy_for(t) for t in REGISTRY.message_types)).flatmap(
        lambda msg: st.just(_encoded(msg))
    )


def _encoded(msg: object) -> tuple[str, Any]:
    try:
        kind, body = REGISTRY.encode_body(msg)
    except EncodeError:
        kind, body = type(msg).KIND, []  # type: ignore[attr-defined]  # out-of-range field
    return kind, cbor2.loads(cbor2.dumps(body))


@st.composite
def mutated(draw: st.DrawFn, base: tuple[str, Any]) -> tuple[str, Any]:
    kind, body = base
    for _ in range(draw(st.integers(1, 4))):
        body = _mutate(draw, body)
    if draw(st.integers(0, 9)) == 0:
        kind = draw(st.sampled_from(KINDS))  # another kind's decoder reads this body
    return kind, body


def _mutate(draw: st.DrawFn, value: Any) -> Any:
    """One change somewhere in ``value``: replace, drop, duplicate, nest or truncate."""
    if isinstance(value, list) and value and draw(st.booleans()):
        items = list(value)
        i = draw(st.integers(0, len(items) - 1))
        items[i] = _mutate(draw, items[i])
        return items
    action = draw(st.sampled_from(("replace", "drop", "dup", "nest", "cut")))
    if action == "replace" or not isinstance(value, list) or not value:
        return draw(cbor_values)
    items = list(value)
    i = draw(st.integers(0, len(items) - 1))
    if action == "drop":
        del items[i]
    elif action == "dup":
        items.insert(i, items[i])
    elif action == "nest":
        items[i] = [items[i]]
    else:
        items = items[:i]
    return items


envelope_fields = st.tuples(
    st.sampled_from([CLUSTER, CLUSTER, "other"]) | st.text(max_size=6) | cbor_values,
    st.integers(-3, 40) | cbor_values,
    st.just(2) | st.integers(-(2**65), 2**65),
    st.integers(0, 2**64) | cbor_values,
    st.integers(0, 2**64) | cbor_values,
)


def receiver() -> Codec:
    return Codec(
        cluster=CLUSTER,
        node=2,
        incarnation=1,
        keyring=Keyring(1, {1: SECRET_1}),
        registry=REGISTRY,
    )


def check_decode(datagram: bytes) -> Decoded | Dropped:
    codec = receiver()
    result = codec.decode(datagram)
    assert isinstance(result, Decoded | Dropped)
    counters = codec.counters
    assert counters.accepted + counters.total_dropped == 1
    if isinstance(result, Dropped):
        assert not result.detail.startswith("undecodable"), result.detail
    else:
        kind, body = REGISTRY.encode_body(result.msg)  # accepted: it can be sent on
        assert kind == result.msg.KIND and isinstance(body, list)
    return result


def _envelope(head: tuple[Any, ...], kind: Any, body: Any) -> list[Any]:
    cluster, src, dst, inc, seq = head
    return [cluster, src, dst, inc, seq, kind, body]


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz_settings(400)
@given(real_bodies().flatmap(mutated), envelope_fields)
def test_signed_mutations_of_real_messages(kind_body: tuple[str, Any], head: Any) -> None:
    kind, body = kind_body
    check_decode(seal(_envelope(head, kind, body)))


@fuzz_settings(200)
@given(real_bodies())
def test_real_messages_round_trip_or_are_refused_as_bad_body(kind_body: tuple[str, Any]) -> None:
    kind, body = kind_body
    result = check_decode(seal([CLUSTER, 1, 2, 1, 1, kind, body]))
    if isinstance(result, Dropped):
        assert result.reason.value == "bad_body"  # a field out of its range, never anything else


@fuzz_settings(300)
@given(st.sampled_from(KINDS), cbor_values)
def test_body_decoders_raise_only_body_error(kind: str, body: Any) -> None:
    decode = REGISTRY.decoder(kind)
    assert decode is not None
    try:
        decode(body)
    except BodyError:
        pass


@fuzz_settings(200)
@given(cbor_values, st.sampled_from(KINDS) | st.text(max_size=8) | cbor_values)
def test_arbitrary_signed_envelopes(body: Any, kind: Any) -> None:
    check_decode(seal([CLUSTER, 1, 2, 1, 1, kind, body]))


@pytest.mark.fuzz
@pytest.mark.timeout(3600)
@fuzz_settings(FUZZ_EXAMPLES)
@given(real_bodies().flatmap(mutated), envelope_fields)
def test_many_signed_mutations_of_real_messages(kind_body: tuple[str, Any], head: Any) -> None:
    kind, body = kind_body
    check_decode(seal(_envelope(head, kind, body)))


@pytest.mark.fuzz
@pytest.mark.timeout(3600)
@fuzz_settings(FUZZ_EXAMPLES)
@given(st.sampled_from(KINDS), cbor_values)
def test_many_bodies_raise_only_body_error(kind: str, body: Any) -> None:
    decode = REGISTRY.decoder(kind)
    assert decode is not None
    try:
        decode(body)
    except BodyError:
        pass
