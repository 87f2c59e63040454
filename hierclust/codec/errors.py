"""Errors the codec raises on the *sending* and *configuration* side (receiving never raises)."""

from __future__ import annotations


class EncodeError(ValueError):
    """A message that cannot be encoded: unregistered type, ill-typed field, or too big."""


class DatagramTooLarge(EncodeError):
    """The encoded datagram would exceed the datagram limit; split the payload with
    :func:`hierclust.codec.chunk_items`."""

    def __init__(self, kind: str, size: int, limit: int) -> None:
        self.kind = kind
        self.size = size
        self.limit = limit
        super().__init__(
            f"message {kind!r} would be a {size}-byte datagram, over the {limit}-byte limit; "
            "split it with hierclust.codec.chunk_items"
        )


class SchemaError(TypeError):
    """A message type the codec cannot carry (found when the registry is built)."""


class KeyringError(ValueError):
    """A keyring file (or keyring) that cannot be used.

    ``str()`` is one line: ``FILE: KEY: what is wrong; what is expected``. Never contains a secret.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")
