"""Messages <-> authenticated datagrams. Pure: no sockets, no clocks, no global randomness.

Theory of operation
-------------------
A :class:`MessageRegistry` knows the message dataclasses by their ``KIND`` and turns each into a
compact positional CBOR body (:mod:`hierclust.codec.schema`). A :class:`Codec` belongs to one
local node: :meth:`Codec.encode` wraps a body in the envelope
``[cluster, src, dst, inc, seq, kind, body]``, signs it with the primary key of its
:class:`Keyring` (HMAC-SHA256, key id in the header) and refuses anything over the 1,400-byte
datagram limit; :func:`chunk_items` splits big payloads first.
:meth:`Codec.decode` turns any bytes into a :class:`Decoded` message or a :class:`Dropped` with a
:class:`DropReason`, never raising, counting every outcome in :attr:`Codec.counters`; a
:class:`ReplayWindow` makes each datagram count once. A :class:`DropLogger` turns drops into at most
one log line per reason per interval, with the time passed in. The byte layout is documented in
:mod:`hierclust.codec.wire`, the keyring file in :mod:`hierclust.codec.keyring`.

Typical use by a transport::

    codec = Codec(cluster="demo", node=rank, incarnation=inc, keyring=load_keyring(path),
                  registry=MessageRegistry.from_module())
    sock.sendto(codec.encode(msg, dst), address_of(dst))
    result = codec.decode(datagram)
    if isinstance(result, Decoded):
        node.step(now_ns, Received(result.src, result.msg))
    else:
        drop_log.note(now_ns, result, peer=address)
"""

from hierclust.codec.chunking import chunk_items
from hierclust.codec.droplog import DropLogger
from hierclust.codec.errors import DatagramTooLarge, EncodeError, KeyringError, SchemaError
from hierclust.codec.keyring import (
    Keyring,
    generate_keyring_file,
    load_keyring,
    new_secret,
    parse_keyring,
    write_keyring_file,
)
from hierclust.codec.replay import ReplayWindow
from hierclust.codec.schema import BodyError, MessageRegistry
from hierclust.codec.wire import (
    HEADER_BYTES,
    Codec,
    CodecCounters,
    Decoded,
    Dropped,
    DropReason,
    datagram_size_bound,
)

__all__ = [
    "HEADER_BYTES",
    "BodyError",
    "Codec",
    "CodecCounters",
    "DatagramTooLarge",
    "Decoded",
    "DropLogger",
    "DropReason",
    "Dropped",
    "EncodeError",
    "Keyring",
    "KeyringError",
    "MessageRegistry",
    "ReplayWindow",
    "SchemaError",
    "chunk_items",
    "datagram_size_bound",
    "generate_keyring_file",
    "load_keyring",
    "new_secret",
    "parse_keyring",
    "write_keyring_file",
]
