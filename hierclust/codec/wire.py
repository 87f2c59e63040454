"""Datagram layout, and the :class:`Codec` that seals messages into it and opens them again.

Layout (all integers big-endian)::

    offset  size  field
    0       1     magic 0x68 ("h")
    1       1     format version v (1)
    2       2     key id of the signing key
    4       2     length n of the envelope
    6       32    tag = HMAC-SHA256(key, bytes 0..5 + envelope)
    38      n     envelope: CBOR array [cluster, src, dst, inc, seq, kind, body]

``v`` sits in the fixed header rather than inside the CBOR so that a node can tell a newer format
(``version``) from noise (``garbage``) without parsing anything; the tag covers it all the same.
``dst`` is in the envelope (beyond the design's ``{v, cluster, src, inc, seq, kind, body}``) because
a datagram signed for one node must not be accepted by another: a ``VoteResp`` granted to one
candidate, replayed to a rival candidate, would otherwise count twice. ``seq`` numbers every
datagram a sender sends in one incarnation; ``inc`` is the sender's incarnation.

Receiving checks, in this order, and stops at the first failure: size (``oversized``), magic
(``garbage``), version (``version``), header and length (``truncated``; trailing bytes are
``garbage``), key id (``unknown_key``), tag (``bad_tag``, constant-time compare), envelope shape
(``garbage``), cluster (``wrong_cluster``), destination (``wrong_dst``), replay window
(``stale_incarnation``, ``replayed``), kind (``unknown_kind``), body (``bad_body``). Nothing is
parsed before the tag is verified, and the replay window records a datagram only once everything
else passed. :meth:`Codec.decode` never raises: every outcome is a :class:`Decoded` or a
:class:`Dropped`, counted in :attr:`Codec.counters`.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cbor2

from hierclust.codec.errors import DatagramTooLarge, EncodeError
from hierclust.codec.keyring import HmacSha256, Keyring
from hierclust.codec.replay import ReplayWindow, Verdict
from hierclust.codec.schema import BodyError, MessageRegistry
from hierclust.tuning import MAX_DATAGRAM_BYTES

MAGIC = 0x68
VERSION = 1
TAG_BYTES = 32
_PREFIX = struct.Struct(">BBHH")
_PREFIX_BYTES = _PREFIX.size
HEADER_BYTES = _PREFIX.size + TAG_BYTES
"""Bytes before the envelope: magic, version, key id, envelope length, tag (38)."""
MAX_ENVELOPE_BYTES = MAX_DATAGRAM_BYTES - HEADER_BYTES
U64_MAX = (1 << 64) - 1
_INT64_MIN = -(1 << 63)
_CBOR_MAX_DEPTH = 32
_FRESH = Verdict.FRESH


class DropReason(StrEnum):
    """Why a datagram was dropped; the values are the names counters and logs use."""

    GARBAGE = "garbage"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    BAD_TAG = "bad_tag"
    UNKNOWN_KEY = "unknown_key"
    WRONG_CLUSTER = "wrong_cluster"
    WRONG_DST = "wrong_dst"
    REPLAYED = "replayed"
    STALE_INCARNATION = "stale_incarnation"
    UNKNOWN_KIND = "unknown_kind"
    BAD_BODY = "bad_body"
    VERSION = "version"


@dataclass(frozen=True, slots=True)
class Decoded:
    """An authenticated, fresh, well-typed message from ``src`` (incarnation ``incarnation``)."""

    src: int
    incarnation: int
    seq: int
    msg: Any
    key_id: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """A datagram that was refused; ``detail`` is for the log line, ``reason`` for counters."""

    reason: DropReason
    detail: str


_DROPPED_NAMES = {reason: f"dropped_{reason.value}" for reason in DropReason}


class CodecCounters:
    """What one codec sent, accepted and dropped (by reason); all start at zero."""

    __slots__ = ("accepted", "dropped", "encoded")

    def __init__(self) -> None:
        self.encoded = 0
        self.accepted = 0
        self.dropped: dict[DropReason, int] = dict.fromkeys(DropReason, 0)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, int]:
        """Flat names for metrics and ``status --json``: ``dropped_<reason>`` etc."""
        dropped = self.dropped
        flat = {
            "encoded": self.encoded,
            "accepted": self.accepted,
            "dropped": sum(dropped.values()),
        }
        flat.update({_DROPPED_NAMES[reason]: n for reason, n in dropped.items()})
        return flat


def _is_int(value: object) -> bool:
    return type(value) is int


_B_U8 = struct.Struct(">BB").pack
_B_U16 = struct.Struct(">BH").pack
_B_U32 = struct.Struct(">BI").pack
_B_U64 = struct.Struct(">BQ").pack
_SMALL_INTS = tuple(bytes((n,)) for n in range(24))
_SMALL_NEGATIVE = tuple(bytes((0x20 | n,)) for n in range(24))


def cbor_int(n: int) -> bytes:
    """The CBOR encoding of ``n`` (-2**64 <= n < 2**64) in its shortest form, byte for byte what
    ``cbor2.dumps(n)`` gives."""
    if n >= 0:
        if n < 24:
            return _SMALL_INTS[n]
        major = 0x00
        u = n
    else:
        u = -1 - n
        if u < 24:
            return _SMALL_NEGATIVE[u]
        major = 0x20
    if u < 0x100:
        return _B_U8(major | 24, u)
    if u < 0x10000:
        return _B_U16(major | 25, u)
    if u < 0x100000000:
        return _B_U32(major | 26, u)
    if u <= U64_MAX:
        return _B_U64(major | 27, u)
    return cbor2.dumps(n)  # a bignum (never a valid field of ours; encoded all the same)


_ENVELOPE_ARRAY = b"\x87"  # CBOR: array of 7
_DST_CACHE_MAX = 4096


def datagram_size_bound(registry: MessageRegistry, msg: object, cluster: str) -> int:
    """Largest datagram ``msg`` can become, whatever src, dst, incarnation and seq (each taken
    as a full 64-bit number). A message within the limit here always encodes."""
    kind, body = registry.encode_body(msg)
    worst = [cluster, U64_MAX, U64_MAX, U64_MAX, U64_MAX, kind, body]
    return HEADER_BYTES + len(cbor2.dumps(worst))


class Codec:
    """Seals and opens the datagrams of one local node (``node``, running as ``incarnation``).

    ``encode`` signs with the keyring's primary key and numbers datagrams 1, 2, 3...; ``decode``
    verifies with any accepted key. Replace :attr:`keyring` at any time to rotate keys.

    The envelope is assembled from pieces rather than by encoding the whole array each time: the
    constant ``[cluster, src`` head, ``dst`` and ``inc``, ``seq``, and ``kind, body``, which is
    encoded once per message *object* (the core sends one ``Ack`` object to every member of a
    group) when its type is immutable. The bytes are exactly those of ``cbor2.dumps`` of the
    array.
    """

    def __init__(
        self,
        *,
        cluster: str,
        node: int,
        incarnation: int,
        keyring: Keyring,
        registry: MessageRegistry,
        replay: ReplayWindow | None = None,
        first_seq: int = 1,
    ) -> None:
        for name, value in (("node", node), ("incarnation", incarnation), ("first_seq", first_seq)):
            if not _is_int(value):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if not _INT64_MIN <= node <= U64_MAX:
            raise ValueError(f"node {node} outside the 64-bit range")
        if not 0 <= incarnation <= U64_MAX:
            raise ValueError(f"incarnation {incarnation} outside 0..2**64-1")
        self._cluster = cluster
        self._node = node
        self._incarnation = incarnation
        self._head = b""
        self._inc_bytes = b""
        self._refresh_envelope()
        self.keyring = keyring
        self.registry = registry
        self.replay = replay if replay is not None else ReplayWindow()
        self.counters = CodecCounters()
        self._next_seq = first_seq
        self._last_msg: object = None  # the last message object encoded, and its kind + body
        self._last_kind = ""
        self._last_tail = b""
        self._dst_bytes: dict[int, bytes] = {}
        self._signing_keyring: Keyring | None = None  # the keyring _signing was taken from
        self._signing: tuple[int, HmacSha256] = (keyring.primary_id, keyring.primary_mac)

    def _refresh_envelope(self) -> None:
        self._head = _ENVELOPE_ARRAY + cbor2.dumps(self._cluster) + cbor2.dumps(self._node)
        self._inc_bytes = cbor2.dumps(self._incarnation)

    @property
    def cluster(self) -> str:
        return self._cluster

    @cluster.setter
    def cluster(self, value: str) -> None:
        self._cluster = value
        self._refresh_envelope()

    @property
    def node(self) -> int:
        return self._node

    @node.setter
    def node(self, value: int) -> None:
        self._node = value
        self._refresh_envelope()

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @incarnation.setter
    def incarnation(self, value: int) -> None:
        self._incarnation = value
        self._refresh_envelope()

    @property
    def next_seq(self) -> int:
        return self._next_seq

    # -- sending ---------------------------------------------------------------------------------
    def encode(self, msg: object, dst: int) -> bytes:
        """The signed datagram carrying ``msg`` to node ``dst``.

        Raises :class:`EncodeError` for an unregistered or ill-typed message and
        :class:`DatagramTooLarge` past the datagram limit (no sequence number is used up then).
        """
        dst_bytes = self._dst_bytes.get(dst) if type(dst) is int else None
        if dst_bytes is None:
            if not _is_int(dst) or not _INT64_MIN <= dst <= U64_MAX:
                raise EncodeError(f"dst must be a 64-bit int, got {dst!r}")
            dst_bytes = cbor_int(dst)
            if len(self._dst_bytes) >= _DST_CACHE_MAX:
                self._dst_bytes.clear()
            self._dst_bytes[dst] = dst_bytes
        seq = self._next_seq
        if seq > U64_MAX:
            raise EncodeError("sequence numbers exhausted; restart with a new incarnation")
        if msg is self._last_msg:
            kind = self._last_kind
            tail = self._last_tail
        else:
            entry = self.registry.encoder(type(msg))
            if entry is None:
                raise EncodeError(f"{type(msg).__qualname__} is not a registered message type")
            kind, kind_bytes, encode_body, frozen = entry
            tail = kind_bytes + cbor2.dumps(encode_body(msg))
            if frozen:
                self._last_msg = msg
                self._last_kind = kind
                self._last_tail = tail
        envelope = b"".join((self._head, dst_bytes, self._inc_bytes, cbor_int(seq), tail))
        size = HEADER_BYTES + len(envelope)
        if size > MAX_DATAGRAM_BYTES:
            raise DatagramTooLarge(kind, size, MAX_DATAGRAM_BYTES)
        keyring = self.keyring
        if keyring is not self._signing_keyring:
            self._signing_keyring = keyring
            self._signing = (keyring.primary_id, keyring.primary_mac)
        key_id, mac = self._signing
        prefix = _PREFIX.pack(MAGIC, VERSION, key_id, len(envelope))
        tag = mac.tag(prefix, envelope)
        self._next_seq = seq + 1
        self.counters.encoded += 1
        return b"".join((prefix, tag, envelope))

    def size_bound(self, msg: object) -> int:
        """See :func:`datagram_size_bound`."""
        return datagram_size_bound(self.registry, msg, self.cluster)

    def fits(self, msg: object) -> bool:
        """Whether ``msg`` always encodes within the datagram limit (for :func:`chunk_items`)."""
        return self.size_bound(msg) <= MAX_DATAGRAM_BYTES

    # -- receiving -------------------------------------------------------------------------------
    def decode(self, datagram: bytes) -> Decoded | Dropped:
        """Open one received datagram. Never raises; counts the outcome."""
        got = self.receive(datagram)
        if type(got) is tuple:
            src, msg, inc, seq, key_id = got
            return Decoded(src=src, incarnation=inc, seq=seq, msg=msg, key_id=key_id)
        assert isinstance(got, Dropped)
        return got

    def receive(self, data: bytes) -> tuple[int, Any, int, int, int] | Dropped:
        """:meth:`decode` for a transport's hot path: the same checks in the same order, the same
        counters and outcome, but an accepted datagram comes back as the tuple
        ``(src, msg, incarnation, seq, key_id)`` rather than a :class:`Decoded`. Never raises."""
        try:
            size = len(data)
            if (
                size < HEADER_BYTES
                or size > MAX_DATAGRAM_BYTES
                or data[0] != MAGIC
                or data[1] != VERSION
                or (data[4] << 8 | data[5]) != size - HEADER_BYTES
            ):
                return self._drop(self._bad_header(data))
            key_id = data[2] << 8 | data[3]
            mac = self.keyring.mac(key_id)
            if mac is None:
                return self._drop(
                    Dropped(DropReason.UNKNOWN_KEY, f"key id {key_id} not in the keyring")
                )
            envelope = data[HEADER_BYTES:]
            if not hmac.compare_digest(
                mac.tag(data[:_PREFIX_BYTES], envelope), data[_PREFIX_BYTES:HEADER_BYTES]
            ):
                return self._drop(Dropped(DropReason.BAD_TAG, f"tag mismatch for key id {key_id}"))
            try:
                fields = cbor2.loads(envelope, max_depth=_CBOR_MAX_DEPTH, allow_indefinite=False)
            except Exception as exc:
                return self._drop(
                    Dropped(DropReason.GARBAGE, f"signed envelope is not CBOR: {exc}")
                )
            if type(fields) is not list or len(fields) != 7:
                return self._drop(
                    Dropped(DropReason.GARBAGE, "signed envelope is not a 7-element array")
                )
            cluster, src, dst, inc, seq, kind, body = fields
            if not (
                type(cluster) is str
                and type(src) is int
                and type(dst) is int
                and type(inc) is int
                and type(seq) is int
                and type(kind) is str
                and inc >= 0
                and seq >= 0
            ):
                return self._drop(
                    Dropped(DropReason.GARBAGE, "signed envelope has ill-typed fields")
                )
            if cluster != self._cluster:
                return self._drop(
                    Dropped(DropReason.WRONG_CLUSTER, f"from cluster {cluster!r} (node {src})")
                )
            if dst != self._node:
                return self._drop(
                    Dropped(DropReason.WRONG_DST, f"from node {src}, addressed to node {dst}")
                )
            replay = self.replay
            verdict = replay.check(src, inc, seq)
            if verdict is not _FRESH:
                if verdict is Verdict.STALE_INCARNATION:
                    known = replay.incarnation_of(src)
                    return self._drop(
                        Dropped(
                            DropReason.STALE_INCARNATION,
                            f"node {src} incarnation {inc}, already heard incarnation {known}",
                        )
                    )
                return self._drop(
                    Dropped(DropReason.REPLAYED, f"node {src} incarnation {inc} seq {seq}")
                )
            decode_body = self.registry.decoder(kind)
            if decode_body is None:
                return self._drop(
                    Dropped(DropReason.UNKNOWN_KIND, f"kind {kind[:40]!r} from node {src}")
                )
            try:
                msg = decode_body(body)
            except BodyError as exc:
                return self._drop(Dropped(DropReason.BAD_BODY, f"{kind} from node {src}: {exc}"))
            replay.accept(src, inc, seq)
        except Exception as exc:  # a decoder bug must cost one datagram, never the receive loop
            return self._drop(
                Dropped(DropReason.GARBAGE, f"undecodable: {type(exc).__name__}: {exc}")
            )
        self.counters.accepted += 1
        return (src, msg, inc, seq, key_id)

    def _drop(self, dropped: Dropped) -> Dropped:
        self.counters.dropped[dropped.reason] += 1
        return dropped

    @staticmethod
    def _bad_header(data: bytes) -> Dropped:
        """Why a datagram's fixed header is refused (checks in the documented order)."""
        size = len(data)
        if size > MAX_DATAGRAM_BYTES:
            return Dropped(DropReason.OVERSIZED, f"{size} bytes > {MAX_DATAGRAM_BYTES}")
        if size == 0:
            return Dropped(DropReason.TRUNCATED, "empty datagram")
        if data[0] != MAGIC:
            return Dropped(DropReason.GARBAGE, f"bad magic byte 0x{data[0]:02x}")
        if size >= 2 and data[1] != VERSION:
            return Dropped(DropReason.VERSION, f"format version {data[1]}, expected {VERSION}")
        if size < HEADER_BYTES:
            return Dropped(DropReason.TRUNCATED, f"{size}-byte header, expected {HEADER_BYTES}")
        _, _, _key_id, length = _PREFIX.unpack_from(data)
        if length > MAX_ENVELOPE_BYTES:
            return Dropped(DropReason.GARBAGE, f"envelope length {length} beyond the limit")
        body_size = size - HEADER_BYTES
        if body_size < length:
            return Dropped(DropReason.TRUNCATED, f"{body_size} of {length} envelope bytes")
        return Dropped(DropReason.GARBAGE, f"{body_size - length} bytes after the envelope")
