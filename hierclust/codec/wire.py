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
from hierclust.codec.keyring import Keyring
from hierclust.codec.replay import ReplayWindow, Verdict
from hierclust.codec.schema import BodyError, MessageRegistry
from hierclust.core.config import MAX_DATAGRAM_BYTES

MAGIC = 0x68
VERSION = 1
TAG_BYTES = 32
_PREFIX = struct.Struct(">BBHH")
HEADER_BYTES = _PREFIX.size + TAG_BYTES
"""Bytes before the envelope: magic, version, key id, envelope length, tag (38)."""
MAX_ENVELOPE_BYTES = MAX_DATAGRAM_BYTES - HEADER_BYTES
U64_MAX = (1 << 64) - 1
_INT64_MIN = -(1 << 63)
_CBOR_MAX_DEPTH = 32


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
        flat = {"encoded": self.encoded, "accepted": self.accepted, "dropped": self.total_dropped}
        flat.update({f"dropped_{reason.value}": n for reason, n in self.dropped.items()})
        return flat


def _is_int(value: object) -> bool:
    return type(value) is int


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
        self.cluster = cluster
        self.node = node
        self.incarnation = incarnation
        self.keyring = keyring
        self.registry = registry
        self.replay = replay if replay is not None else ReplayWindow()
        self.counters = CodecCounters()
        self._next_seq = first_seq

    @property
    def next_seq(self) -> int:
        return self._next_seq

    # -- sending ---------------------------------------------------------------------------------
    def encode(self, msg: object, dst: int) -> bytes:
        """The signed datagram carrying ``msg`` to node ``dst``.

        Raises :class:`EncodeError` for an unregistered or ill-typed message and
        :class:`DatagramTooLarge` past the datagram limit (no sequence number is used up then).
        """
        if not _is_int(dst) or not _INT64_MIN <= dst <= U64_MAX:
            raise EncodeError(f"dst must be a 64-bit int, got {dst!r}")
        seq = self._next_seq
        if seq > U64_MAX:
            raise EncodeError("sequence numbers exhausted; restart with a new incarnation")
        kind, body = self.registry.encode_body(msg)
        envelope = cbor2.dumps([self.cluster, self.node, dst, self.incarnation, seq, kind, body])
        size = HEADER_BYTES + len(envelope)
        if size > MAX_DATAGRAM_BYTES:
            raise DatagramTooLarge(kind, size, MAX_DATAGRAM_BYTES)
        keyring = self.keyring
        prefix = _PREFIX.pack(MAGIC, VERSION, keyring.primary_id, len(envelope))
        tag = hmac.digest(keyring.primary_secret, prefix + envelope, "sha256")
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
        try:
            result = self._open(datagram)
        except Exception as exc:  # a decoder bug must cost one datagram, never the receive loop
            result = Dropped(DropReason.GARBAGE, f"undecodable: {type(exc).__name__}: {exc}")
        if type(result) is Decoded:
            self.counters.accepted += 1
        else:
            assert isinstance(result, Dropped)
            self.counters.dropped[result.reason] += 1
        return result

    def _open(self, data: bytes) -> Decoded | Dropped:
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
        _, _, key_id, length = _PREFIX.unpack_from(data)
        if length > MAX_ENVELOPE_BYTES:
            return Dropped(DropReason.GARBAGE, f"envelope length {length} beyond the limit")
        body_size = size - HEADER_BYTES
        if body_size < length:
            return Dropped(DropReason.TRUNCATED, f"{body_size} of {length} envelope bytes")
        if body_size > length:
            return Dropped(DropReason.GARBAGE, f"{body_size - length} bytes after the envelope")
        secret = self.keyring.secret(key_id)
        if secret is None:
            return Dropped(DropReason.UNKNOWN_KEY, f"key id {key_id} not in the keyring")
        view = memoryview(data)
        envelope = bytes(view[HEADER_BYTES:])
        expected = hmac.digest(secret, bytes(view[: _PREFIX.size]) + envelope, "sha256")
        if not hmac.compare_digest(expected, bytes(view[_PREFIX.size : HEADER_BYTES])):
            return Dropped(DropReason.BAD_TAG, f"tag mismatch for key id {key_id}")
        return self._open_envelope(envelope, key_id)

    def _open_envelope(self, envelope: bytes, key_id: int) -> Decoded | Dropped:
        try:
            fields = cbor2.loads(envelope, max_depth=_CBOR_MAX_DEPTH, allow_indefinite=False)
        except Exception as exc:
            return Dropped(DropReason.GARBAGE, f"signed envelope is not CBOR: {exc}")
        if type(fields) is not list or len(fields) != 7:
            return Dropped(DropReason.GARBAGE, "signed envelope is not a 7-element array")
        cluster, src, dst, inc, seq, kind, body = fields
        if not (
            type(cluster) is str
            and _is_int(src)
            and _is_int(dst)
            and _is_int(inc)
            and _is_int(seq)
            and type(kind) is str
            and inc >= 0
            and seq >= 0
        ):
            return Dropped(DropReason.GARBAGE, "signed envelope has ill-typed fields")
        if cluster != self.cluster:
            return Dropped(DropReason.WRONG_CLUSTER, f"from cluster {cluster!r} (node {src})")
        if dst != self.node:
            return Dropped(DropReason.WRONG_DST, f"from node {src}, addressed to node {dst}")
        verdict = self.replay.check(src, inc, seq)
        if verdict is Verdict.STALE_INCARNATION:
            known = self.replay.incarnation_of(src)
            return Dropped(
                DropReason.STALE_INCARNATION,
                f"node {src} incarnation {inc}, already heard incarnation {known}",
            )
        if verdict is Verdict.REPLAYED:
            return Dropped(DropReason.REPLAYED, f"node {src} incarnation {inc} seq {seq}")
        if not self.registry.knows(kind):
            return Dropped(DropReason.UNKNOWN_KIND, f"kind {kind[:40]!r} from node {src}")
        try:
            msg = self.registry.decode_body(kind, body)
        except BodyError as exc:
            return Dropped(DropReason.BAD_BODY, f"{kind} from node {src}: {exc}")
        self.replay.accept(src, inc, seq)
        return Decoded(src=src, incarnation=inc, seq=seq, msg=msg, key_id=key_id)
