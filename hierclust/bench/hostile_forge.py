"""What the hostile-datagram campaign sends, and what each datagram should become at a listener.

Kept apart from the campaign (:mod:`hierclust.bench.hostile`), which deploys, sends and compares:
this module captures real traffic, forges hostile datagrams from it and predicts the drop
reason of each one. It never sends anything.

*Capture*: :func:`capture` reads the cluster's own datagrams off the loopback interface with a
packet socket (``AF_PACKET``; needs ``CAP_NET_RAW``), keeping only those between two of the
cluster's listeners. They are the material of the ``mutated``, ``truncated``, ``replayed`` and
``wrong_key`` kinds: valid datagrams, signed by the agents themselves, each already delivered to
its listener once.

*Prediction*: a :class:`Listener` carries reference codecs built like the listener's own (same
cluster, node id, keyring; a witness daemon tries its groups in turn, as
:meth:`~hierclust.runtime.tiebreak.WitnessServer._on_datagram` does), and :meth:`Listener.predict`
runs a datagram through them. For every kind but ``replayed`` the reference is exact: it fails
at the header, the key or the tag, before the listener's replay window matters. A replayed
datagram passes all of those, so its expected outcome is ``replayed`` or ``stale_incarnation``
(:data:`REPLAY_REASONS`), whichever the live window says. A prediction of ``accepted`` means the
generator made a datagram the cluster must take: a bug of the campaign, reported as such.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from hierclust.codec import (
    HEADER_BYTES,
    Codec,
    Decoded,
    Dropped,
    DropReason,
    Keyring,
    MessageRegistry,
    ReplayWindow,
    new_secret,
)
from hierclust.core.types import witness_id
from hierclust.tuning import MAX_DATAGRAM_BYTES

KINDS = ("random", "mutated", "truncated", "oversized", "replayed", "wrong_key")
"""The hostile kinds, in the order the campaign sends them (``replayed`` comes late on purpose:
the captured datagrams are then seconds old)."""
REPLAY_REASONS = (DropReason.REPLAYED.value, DropReason.STALE_INCARNATION.value)
ACCEPTED = "accepted"
MAX_UDP_PAYLOAD = 65_507
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
Address = tuple[str, int]


@dataclass
class Listener:
    """One UDP socket of the cluster: a node (``ranks`` = its rank) or a witness daemon
    (``ranks`` = the witness ids of its groups, tried in order)."""

    name: str
    role: str  # "node" or "witness"
    address: Address
    ids: list[int]
    reference: list[Codec] = field(default_factory=list)
    captured: list[bytes] = field(default_factory=list)
    messages: list[tuple[int, object]] = field(default_factory=list)  # (dst id, message)

    def predict(self, data: bytes) -> str:
        """The drop reason (``DropReason`` value) the listener should give ``data``, or
        ``accepted``. The reference codecs' replay windows are reset: they judge each datagram
        as if it were the first."""
        result: Decoded | Dropped | None = None
        for codec in self.reference:
            codec.replay = ReplayWindow()
            result = codec.decode(data)
            if isinstance(result, Decoded):
                return ACCEPTED
            if result.reason is not DropReason.WRONG_DST:
                break
        assert isinstance(result, Dropped)
        return result.reason.value


def listeners_of(
    cluster: str,
    addresses: list[Address],
    names: list[str],
    witnesses: dict[Address, list[int]],
    keyring: Keyring,
) -> list[Listener]:
    """Every listener of a local deployment: the nodes (by rank) and each witness address (its
    groups)."""
    registry = MessageRegistry.from_module()

    def reference(node_id: int) -> Codec:
        return Codec(
            cluster=cluster, node=node_id, incarnation=0, keyring=keyring, registry=registry
        )

    found = [
        Listener(names[rank], "node", address, [rank], [reference(rank)])
        for rank, address in enumerate(addresses)
    ]
    for address, groups in sorted(witnesses.items()):
        ids = [witness_id(g) for g in groups]
        found.append(
            Listener(f"witness {address[0]}:{address[1]}", "witness", address, ids,
                     [reference(i) for i in ids])
        )  # fmt: skip
    for listener in found:
        if listener.address[0] != "127.0.0.1":
            raise ValueError(f"{listener.name}: {listener.address[0]} is not 127.0.0.1")
    return found


# -- capture ---------------------------------------------------------------------------------------
def capture(listeners: list[Listener], *, per_listener: int, timeout_s: float) -> dict[str, int]:
    """Fill each listener's ``captured`` with up to ``per_listener`` datagrams the cluster sent it
    (from another listener's port), reading loopback for at most ``timeout_s``. Raises
    PermissionError without ``CAP_NET_RAW``. Returns how many were seen, kept and skipped."""
    by_port = {listener.address[1]: listener for listener in listeners}
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    seen = kept = 0
    try:
        sniffer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sniffer.bind(("lo", 0))
        sniffer.settimeout(0.2)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(len(x.captured) >= per_listener for x in listeners):
                break
            try:
                packet, where = sniffer.recvfrom(1 << 16)
            except TimeoutError:
                continue
            if where[2] == PACKET_OUTGOING or len(packet) < 28 or packet[9] != 17:
                continue
            ihl = (packet[0] & 0x0F) * 4
            src_port, dst_port = struct.unpack_from(">HH", packet, ihl)
            listener = by_port.get(dst_port)
            if listener is None or src_port not in by_port:
                continue
            if packet[12:16] != b"\x7f\x00\x00\x01" or packet[16:20] != b"\x7f\x00\x00\x01":
                continue
            seen += 1
            if len(listener.captured) < per_listener:
                listener.captured.append(bytes(packet[ihl + 8 :]))
                kept += 1
    finally:
        sniffer.close()
    for listener in listeners:
        listener.messages = _messages(listener)
    return {"seen": seen, "kept": kept}


def _messages(listener: Listener) -> list[tuple[int, object]]:
    """The messages in a listener's captured datagrams (decoded with a fresh window each)."""
    found: list[tuple[int, object]] = []
    for data in listener.captured:
        for codec, node_id in zip(listener.reference, listener.ids, strict=True):
            codec.replay = ReplayWindow()
            got = codec.decode(data)
            if isinstance(got, Decoded):
                found.append((node_id, got.msg))
                break
    return found


# -- forging ---------------------------------------------------------------------------------------
class Forge:
    """Hostile datagrams of each kind for a listener, from a seeded ``random.Random``."""

    def __init__(self, cluster: str, rng: random.Random, num_nodes: int) -> None:
        self.rng = rng
        self.num_nodes = num_nodes
        registry = MessageRegistry.from_module()
        # signed with keys the cluster does not hold: one under the cluster's own key id
        # (bad_tag), one under an id it does not list (unknown_key)
        self.foreign = [Keyring(1, {1: new_secret()}), Keyring(4242, {4242: new_secret()})]
        self.codecs = [
            Codec(
                cluster=cluster,
                node=0,
                incarnation=rng.randrange(1 << 40),
                keyring=ring,
                registry=registry,
                first_seq=rng.randrange(1 << 40),
            )
            for ring in self.foreign
        ]

    def make(self, kind: str, listener: Listener) -> bytes:
        return getattr(self, f"_{kind}")(listener)  # type: ignore[no-any-return]

    def _pick(self, listener: Listener) -> bytes:
        if not listener.captured:
            raise ValueError(f"{listener.name}: nothing captured to work from")
        return self.rng.choice(listener.captured)

    def _random(self, listener: Listener) -> bytes:
        rng = self.rng
        flavour = rng.randrange(3)
        if flavour == 0:  # noise of any datagram size
            return rng.randbytes(rng.randrange(MAX_DATAGRAM_BYTES + 1))
        if flavour == 1:  # short noise: header checks
            return rng.randbytes(rng.randrange(HEADER_BYTES + 8))
        # a well-formed header (magic, version, a key id the cluster may hold, the right length)
        # over noise: it gets as far as the key and the tag
        body = rng.randbytes(rng.randrange(1, MAX_DATAGRAM_BYTES - HEADER_BYTES + 1))
        key_id = rng.choice((1, 1, 1, rng.randrange(1 << 16)))
        head = struct.pack(">BBHH", 0x68, 1, key_id, len(body))
        return head + rng.randbytes(32) + body

    def _mutated(self, listener: Listener) -> bytes:
        rng = self.rng
        data = bytearray(self._pick(listener))
        flips = min(len(data) * 8, rng.choice((1, 1, 1, 2, 3, 8)))
        for bit in rng.sample(range(len(data) * 8), flips):  # distinct bits: none cancels out
            data[bit >> 3] ^= 1 << (bit & 7)
        return bytes(data)

    def _truncated(self, listener: Listener) -> bytes:
        data = self._pick(listener)
        return data[: self.rng.randrange(len(data))]

    def _oversized(self, listener: Listener) -> bytes:
        rng = self.rng
        data = self._pick(listener)
        top = MAX_UDP_PAYLOAD if rng.random() < 0.01 else 4 * MAX_DATAGRAM_BYTES
        size = rng.randrange(MAX_DATAGRAM_BYTES + 1, top + 1)
        return data + rng.randbytes(size - len(data))

    def _replayed(self, listener: Listener) -> bytes:
        return self._pick(listener)

    def _wrong_key(self, listener: Listener) -> bytes:
        rng = self.rng
        if not listener.messages:
            raise ValueError(f"{listener.name}: no captured message to sign with a foreign key")
        dst, msg = rng.choice(listener.messages)
        codec = rng.choice(self.codecs)
        codec.node = rng.randrange(self.num_nodes)
        return codec.encode(msg, dst)


def proc_udp_drops(ports: set[int], path: Path = Path("/proc/net/udp")) -> dict[int, int]:
    """The kernel's per-socket drop counter (datagrams that never reached the socket's queue:
    a full receive buffer) of the UDP sockets on 127.0.0.1 bound to ``ports``."""
    drops: dict[int, int] = {}
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        host, _, port_hex = fields[1].partition(":")
        port = int(port_hex, 16)
        if host == "0100007F" and port in ports:
            drops[port] = drops.get(port, 0) + int(fields[-1])
    return drops
