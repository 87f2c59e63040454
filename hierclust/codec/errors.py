"""Errors the codec raises on the *sending* and *configuration* side (receiving never raises)."""

from __future__ import annotations

from hierclust.errors import FileKeyError


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


class KeyringError(FileKeyError):
    """A keyring file (or keyring) that cannot be used. Its message never contains a secret."""
