"""Small message types of the shape the codec carries, a raw sealer, and hypothesis strategies."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import struct
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import cbor2
from hypothesis import strategies as st

from hierclust.codec import Codec, Keyring, MessageRegistry, ReplayWindow
from hierclust.core.types import Alive, Failure, Notice

CLUSTER = "test"
SECRET_1 = bytes(range(32))
SECRET_2 = bytes(range(100, 132))


class Mode(enum.Enum):
    QUIET = "quiet"
    LOUD = "loud"


@dataclass(frozen=True, slots=True)
class Beat:
    KIND: ClassVar[str] = "beat"
    view_id: int
    digest: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Report:
    KIND: ClassVar[str] = "report"
    via: int | None
    notices: tuple[Notice, ...]
    note: str
    urgent: bool
    blob: bytes


@dataclass(frozen=True, slots=True)
class Mixed:
    KIND: ClassVar[str] = "mixed"
    pairs: tuple[tuple[int, str], ...]
    last: Failure | None
    ratio: float
    mode: Mode
    phase: Literal["pre", "vote"]
    nested: tuple[tuple[Alive, ...], ...]


@dataclass(frozen=True, slots=True)
class Sync:
    KIND: ClassVar[str] = "sync"
    part: int
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Empty:
    KIND: ClassVar[str] = "empty"


SAMPLE_TYPES: tuple[type, ...] = (Beat, Report, Mixed, Sync, Empty)


def registry() -> MessageRegistry:
    return MessageRegistry(SAMPLE_TYPES)


def keyring(primary: int = 1) -> Keyring:
    return Keyring(primary, {1: SECRET_1, 2: SECRET_2})


def codec(
    node: int,
    *,
    incarnation: int = 1,
    cluster: str = CLUSTER,
    ring: Keyring | None = None,
    replay: ReplayWindow | None = None,
) -> Codec:
    return Codec(
        cluster=cluster,
        node=node,
        incarnation=incarnation,
        keyring=ring if ring is not None else keyring(),
        registry=registry(),
        replay=replay,
    )


def seal(
    envelope: object,
    *,
    key_id: int = 1,
    secret: bytes = SECRET_1,
    magic: int = 0x68,
    version: int = 1,
) -> bytes:
    """A datagram built by hand from the layout documented in hierclust.codec.wire."""
    raw = cbor2.dumps(envelope)
    prefix = struct.pack(">BBHH", magic, version, key_id, len(raw))
    tag = hmac.new(secret, prefix + raw, hashlib.sha256).digest()
    return prefix + tag + raw


# -- strategies from annotations (independent of the codec's own compiler) ----------------------
def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    if tp is None or tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(min_value=-(2**64), max_value=2**64)
    if tp is float:
        return st.floats(allow_nan=False)
    if tp is str:
        return st.text(max_size=20)
    if tp is bytes:
        return st.binary(max_size=20)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=6).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*(strategy_for(a) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(tp)}
        return st.builds(tp, **fields)
    raise TypeError(f"no strategy for {tp!r}")


def messages_of(message_types: tuple[type, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(*(strategy_for(t) for t in message_types))
