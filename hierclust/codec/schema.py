"""Message bodies <-> CBOR-ready values, driven by the dataclasses' type hints.

A body is the positional list of a message's fields (no field names on the wire). Each field is
encoded from its annotation:

- ``int``, ``bool``, ``float``, ``str``, ``bytes``, ``None``: the CBOR scalar (``bool`` is not an
  ``int`` here, in either direction);
- ``enum.Enum`` subclasses with int or str values, ``Literal[...]`` of ints, bools or strs;
- ``tuple[X, ...]`` and ``tuple[X, Y]``: a CBOR array, decoded back to a *tuple*;
- a nested dataclass (the notices): the positional array of its init fields;
- ``A | B | None``: the bare value when the members differ in CBOR shape (int, bool, float, text,
  bytes, null, array); otherwise ``[member_index, value]``, members ordered by their name so
  ``Failure | Alive`` and ``Alive | Failure`` agree.

Decoding checks every value against the annotation, so the core only ever sees well-typed messages;
a mismatch is a :class:`BodyError` (the codec turns it into a ``bad_body`` drop). Encoding checks
too: a wrong type is an :class:`~hierclust.codec.errors.EncodeError` naming ``Kind.field``.
Unsupported annotations are refused when the registry is built (:class:`SchemaError`).

Positional bodies assume both ends run the same message definitions; the arity and type checks
catch most skew, and the wire ``KIND`` strings keep an unknown message an ``unknown_kind`` drop.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cbor2

from hierclust.codec.errors import EncodeError, SchemaError

MAX_KIND_CHARS = 32
"""Longest ``KIND`` accepted; kinds travel in every datagram."""


class BodyError(ValueError):
    """A received body that does not match its message's annotations (dropped as ``bad_body``)."""


_Enc = Callable[[Any], Any]
_Dec = Callable[[Any], Any]
_Accepts = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class _Conv:
    """How one annotation travels: ``enc`` checks and converts, ``dec`` validates and rebuilds,
    ``accepts`` says whether a Python value is of this type, ``shape`` is its CBOR major kind."""

    enc: _Enc
    dec: _Dec
    accepts: _Accepts
    shape: str
    name: str
    frozen: bool = True  # values of this type cannot change once built (so encodings can be kept)
    scalar: type | None = None  # a plain scalar (int, bool, float, str, bytes): its Python type


def _wire_shape(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "bool"
    if isinstance(raw, int):
        return "int"
    if isinstance(raw, float):
        return "float"
    if isinstance(raw, str):
        return "text"
    if isinstance(raw, bytes):
        return "bytes"
    if isinstance(raw, list):
        return "array"
    return type(raw).__name__


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


_SCALARS: dict[object, tuple[type, str]] = {
    int: (int, "int"),
    bool: (bool, "bool"),
    float: (float, "float"),
    str: (str, "text"),
    bytes: (bytes, "bytes"),
}


class _Compiler:
    def __init__(self) -> None:
        self._dataclasses: dict[type, _Conv] = {}
        self._in_progress: set[type] = set()

    def compile(self, tp: object, where: str) -> _Conv:
        if tp is None or tp is type(None):
            return self._none(where)
        if tp in _SCALARS:
            return self._scalar(*_SCALARS[tp], where)
        origin = typing.get_origin(tp)
        if origin is tuple:
            return self._tuple(typing.get_args(tp), where)
        if origin is typing.Union or origin is types.UnionType:
            return self._union(typing.get_args(tp), where)
        if origin is typing.Literal:
            return self._literal(typing.get_args(tp), where)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp, where)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.dataclass(tp, where)
        raise SchemaError(
            f"{where}: unsupported annotation {tp!r}; the codec knows int, bool, float, str, "
            "bytes, None, Enum, Literal, tuple[...], unions of these and dataclasses"
        )

    @staticmethod
    def _none(where: str) -> _Conv:
        def enc(value: Any) -> Any:
            if value is not None:
                raise EncodeError(f"{where}: expected None, got {_describe(value)}")
            return None

        def dec(raw: Any) -> Any:
            if raw is not None:
                raise BodyError(f"{where}: expected null, got {_wire_shape(raw)}")
            return None

        return _Conv(enc, dec, lambda v: v is None, "null", "None")

    @staticmethod
    def _scalar(py: type, shape: str, where: str) -> _Conv:
        def accepts(value: Any) -> bool:
            return type(value) is py

        def enc(value: Any) -> Any:
            if type(value) is not py:
                raise EncodeError(f"{where}: expected {py.__name__}, got {_describe(value)}")
            return value

        def dec(raw: Any) -> Any:
            if type(raw) is not py:
                raise BodyError(f"{where}: expected {shape}, got {_wire_shape(raw)}")
            return raw

        return _Conv(enc, dec, accepts, shape, py.__name__, scalar=py)

    @staticmethod
    def _literal(values: tuple[Any, ...], where: str) -> _Conv:
        shapes = {_wire_shape(v) for v in values}
        if len(shapes) != 1 or not shapes <= {"int", "bool", "text"}:
            raise SchemaError(f"{where}: Literal values must all be ints, all bools or all strs")
        allowed = frozenset((type(v), v) for v in values)

        def accepts(value: Any) -> bool:
            return (type(value), value) in allowed

        def enc(value: Any) -> Any:
            if not accepts(value):
                raise EncodeError(f"{where}: expected one of {values!r}, got {_describe(value)}")
            return value

        def dec(raw: Any) -> Any:
            if not accepts(raw):
                raise BodyError(f"{where}: expected one of {values!r}, got {_describe(raw)}")
            return raw

        return _Conv(enc, dec, accepts, shapes.pop(), f"Literal{list(values)!r}")

    @staticmethod
    def _enum(cls: type[enum.Enum], where: str) -> _Conv:
        shapes = {_wire_shape(member.value) for member in cls}
        if len(shapes) != 1 or not shapes <= {"int", "text"}:
            raise SchemaError(f"{where}: enum {cls.__name__} needs all-int or all-str values")
        by_value = {member.value: member for member in cls}
        value_type = type(next(iter(by_value)))

        def accepts(value: Any) -> bool:
            return isinstance(value, cls)

        def enc(value: Any) -> Any:
            if not isinstance(value, cls):
                raise EncodeError(f"{where}: expected {cls.__name__}, got {_describe(value)}")
            return value.value

        def dec(raw: Any) -> Any:
            if type(raw) is not value_type or raw not in by_value:
                raise BodyError(f"{where}: not a {cls.__name__} value: {_describe(raw)}")
            return by_value[raw]

        return _Conv(enc, dec, accepts, shapes.pop(), cls.__name__)

    def _tuple(self, args: tuple[Any, ...], where: str) -> _Conv:
        if len(args) == 2 and args[1] is Ellipsis:
            item = self.compile(args[0], f"{where}[]")
            item_enc, item_dec, item_accepts = item.enc, item.dec, item.accepts

            def accepts_var(value: Any) -> bool:
                return type(value) is tuple and all(item_accepts(v) for v in value)

            def enc_var(value: Any) -> Any:
                if type(value) is not tuple:
                    raise EncodeError(f"{where}: expected a tuple, got {_describe(value)}")
                return [item_enc(v) for v in value]

            def dec_var(raw: Any) -> Any:
                if type(raw) is not list:
                    raise BodyError(f"{where}: expected array, got {_wire_shape(raw)}")
                return tuple([item_dec(v) for v in raw])

            return _Conv(
                enc_var, dec_var, accepts_var, "array", f"tuple[{item.name}, ...]", item.frozen
            )

        items = tuple(self.compile(a, f"{where}[{i}]") for i, a in enumerate(args))
        size = len(items)

        def accepts_fixed(value: Any) -> bool:
            return (
                type(value) is tuple
                and len(value) == size
                and all(c.accepts(v) for c, v in zip(items, value, strict=True))
            )

        def enc_fixed(value: Any) -> Any:
            if type(value) is not tuple or len(value) != size:
                raise EncodeError(f"{where}: expected a {size}-tuple, got {_describe(value)}")
            return [c.enc(v) for c, v in zip(items, value, strict=True)]

        def dec_fixed(raw: Any) -> Any:
            if type(raw) is not list or len(raw) != size:
                raise BodyError(f"{where}: expected array of {size}, got {_describe(raw)}")
            return tuple([c.dec(v) for c, v in zip(items, raw, strict=True)])

        names = ", ".join(c.name for c in items)
        frozen = all(c.frozen for c in items)
        return _Conv(enc_fixed, dec_fixed, accepts_fixed, "array", f"tuple[{names}]", frozen)

    def _union(self, args: tuple[Any, ...], where: str) -> _Conv:
        members = sorted((self.compile(a, where) for a in args), key=lambda c: (c.name, c.shape))
        name = " | ".join(c.name for c in members)
        frozen = all(c.frozen for c in members)
        shapes = [c.shape for c in members]

        def pick(value: Any) -> int:
            for index, member in enumerate(members):
                if member.accepts(value):
                    return index
            raise EncodeError(f"{where}: expected {name}, got {_describe(value)}")

        def accepts(value: Any) -> bool:
            return any(c.accepts(value) for c in members)

        if len(set(shapes)) == len(shapes):
            by_shape = {c.shape: c for c in members}

            def enc_bare(value: Any) -> Any:
                return members[pick(value)].enc(value)

            def dec_bare(raw: Any) -> Any:
                member = by_shape.get(_wire_shape(raw))
                if member is None:
                    raise BodyError(f"{where}: expected {name}, got {_wire_shape(raw)}")
                return member.dec(raw)

            shape = shapes[0] if len(shapes) == 1 else "union"
            return _Conv(enc_bare, dec_bare, accepts, shape, name, frozen)

        def enc_tagged(value: Any) -> Any:
            index = pick(value)
            return [index, members[index].enc(value)]

        def dec_tagged(raw: Any) -> Any:
            if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not int:
                raise BodyError(f"{where}: expected [member, value] for {name}")
            if not 0 <= raw[0] < len(members):
                raise BodyError(f"{where}: member {raw[0]} outside {name}")
            return members[raw[0]].dec(raw[1])

        return _Conv(enc_tagged, dec_tagged, accepts, "array", name, frozen)

    def dataclass(self, cls: type, where: str) -> _Conv:
        known = self._dataclasses.get(cls)
        if known is not None:
            return known
        if cls in self._in_progress:
            raise SchemaError(f"{where}: {cls.__name__} contains itself; recursion unsupported")
        self._in_progress.add(cls)
        try:
            conv = self._build_dataclass(cls)
        finally:
            self._in_progress.discard(cls)
        self._dataclasses[cls] = conv
        return conv

    def _build_dataclass(self, cls: type) -> _Conv:
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:
            raise SchemaError(f"{cls.__qualname__}: cannot resolve annotations: {exc}") from exc
        fields = dataclasses.fields(cls)
        for f in fields:
            if not f.init:
                raise SchemaError(f"{cls.__qualname__}.{f.name}: init=False fields cannot travel")
        names = tuple(f.name for f in fields)
        convs = tuple(self.compile(hints[n], f"{cls.__qualname__}.{n}") for n in names)
        pairs = tuple(zip(names, convs, strict=True))
        size = len(pairs)
        label = cls.__qualname__

        def accepts(value: Any) -> bool:
            return type(value) is cls

        def enc(value: Any) -> Any:
            if type(value) is not cls:
                raise EncodeError(f"{label}: expected {label}, got {_describe(value)}")
            return [c.enc(getattr(value, n)) for n, c in pairs]

        def dec(raw: Any) -> Any:
            if type(raw) is not list or len(raw) != size:
                raise BodyError(f"{label}: expected array of {size} fields, got {_describe(raw)}")
            try:
                return cls(*[c.dec(v) for c, v in zip(convs, raw, strict=True)])
            except BodyError:
                raise
            except Exception as exc:  # the dataclass's own validation refused the values
                raise BodyError(f"{label}: {type(exc).__name__}: {exc}") from exc

        params = getattr(cls, "__dataclass_params__", None)
        frozen = bool(getattr(params, "frozen", False)) and all(c.frozen for c in convs)
        fast_enc, fast_dec = _fast_dataclass(cls, names, convs, enc, dec)
        return _Conv(fast_enc, fast_dec, accepts, "array", cls.__name__, frozen)


def _fast_dataclass(
    cls: type, names: tuple[str, ...], convs: tuple[_Conv, ...], slow_enc: _Enc, slow_dec: _Dec
) -> tuple[_Enc, _Dec]:
    """Straight-line encoder and decoder of one dataclass, generated for its fields.

    Scalar fields are type-checked inline, the others go through their converters; anything that
    does not pass the inline checks takes ``slow_enc``/``slow_dec``, which raise exactly the
    errors the general converters raise. Same results, a fraction of the calls."""
    size = len(names)
    env: dict[str, Any] = {
        "cls": cls,
        "slow_enc": slow_enc,
        "slow_dec": slow_dec,
        "BodyError": BodyError,
        "label": cls.__qualname__,
    }
    args = [f"a{i}" for i in range(size)]
    checks: list[str] = []
    enc_items: list[str] = []
    dec_items: list[str] = []
    for i, conv in enumerate(convs):
        if conv.scalar is not None:
            env[f"t{i}"] = conv.scalar
            checks.append(f"type(a{i}) is t{i}")
            enc_items.append(f"a{i}")
            dec_items.append(f"a{i}")
        else:
            env[f"e{i}"] = conv.enc
            env[f"d{i}"] = conv.dec
            enc_items.append(f"e{i}(a{i})")
            dec_items.append(f"d{i}(a{i})")
    ok = " and ".join(checks) or "True"
    unpack = ", ".join(args) + ("," if size == 1 else "")
    lines = ["def enc(value):", "    if type(value) is cls:"]
    if size:
        lines.append("        " + "; ".join(f"a{i} = value.{n}" for i, n in enumerate(names)))
    lines += [
        f"        if {ok}:",
        f"            return [{', '.join(enc_items)}]",
        "    return slow_enc(value)",
        "def dec(raw):",
        f"    if type(raw) is list and len(raw) == {size}:",
    ]
    if size:
        lines.append(f"        {unpack} = raw")
    lines += [
        f"        if {ok}:",
        "            try:",
        f"                return cls({', '.join(dec_items)})",
        "            except BodyError:",
        "                raise",
        "            except Exception as exc:",
        "                raise BodyError(f'{label}: {type(exc).__name__}: {exc}') from exc",
        "    return slow_dec(raw)",
    ]
    exec("\n".join(lines), env)  # noqa: S102 - generated from field names and indices only
    return env["enc"], env["dec"]


class MessageRegistry:
    """The message types a codec can carry, by ``KIND``.

    Each type is a dataclass with a ``KIND: ClassVar[str]`` (unique, 1..32 characters); its fields
    and any nested dataclasses are compiled once, here, so a bad annotation fails at start-up.
    """

    __slots__ = ("_by_kind", "_by_type", "_decoders", "_encoders")

    def __init__(self, message_types: Iterable[type]) -> None:
        compiler = _Compiler()
        self._by_type: dict[type, tuple[str, _Conv]] = {}
        self._by_kind: dict[str, _Conv] = {}
        for cls in message_types:
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                raise SchemaError(f"{cls!r}: a message type must be a dataclass")
            kind = getattr(cls, "KIND", None)
            if not isinstance(kind, str) or not 1 <= len(kind) <= MAX_KIND_CHARS:
                raise SchemaError(
                    f"{cls.__qualname__}.KIND: expected a str of 1..{MAX_KIND_CHARS} characters, "
                    f"got {kind!r}"
                )
            if kind in self._by_kind:
                raise SchemaError(f"{cls.__qualname__}.KIND: {kind!r} is already registered")
            conv = compiler.dataclass(cls, cls.__qualname__)
            self._by_type[cls] = (kind, conv)
            self._by_kind[kind] = conv
        self._decoders: dict[str, _Dec] = {k: c.dec for k, c in self._by_kind.items()}
        self._encoders: dict[type, tuple[str, bytes, _Enc, bool]] = {
            t: (k, cbor2.dumps(k), c.enc, c.frozen) for t, (k, c) in self._by_type.items()
        }

    @classmethod
    def from_module(cls, module: str = "hierclust.core.messages") -> MessageRegistry:
        """The registry of ``module.MESSAGE_TYPES`` (imported only when asked for)."""
        types_ = importlib.import_module(module).MESSAGE_TYPES
        return cls(types_)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._by_kind)

    @property
    def message_types(self) -> tuple[type, ...]:
        return tuple(self._by_type)

    def encode_body(self, msg: object) -> tuple[str, list[Any]]:
        """``(kind, body)`` of ``msg``; :class:`EncodeError` for an unregistered type or a field
        of the wrong type."""
        entry = self._by_type.get(type(msg))
        if entry is None:
            raise EncodeError(f"{type(msg).__qualname__} is not a registered message type")
        kind, conv = entry
        body: list[Any] = conv.enc(msg)
        return kind, body

    def encoder(self, cls: type) -> tuple[str, bytes, _Enc, bool] | None:
        """``(kind, kind as CBOR, encode_body, frozen)`` of a registered message type, or None;
        ``frozen`` says an instance never changes (so its encoded body can be reused)."""
        return self._encoders.get(cls)

    def decoder(self, kind: str) -> _Dec | None:
        """The body decoder of ``kind`` (raises :class:`BodyError`), or None when unknown."""
        return self._decoders.get(kind)

    def knows(self, kind: str) -> bool:
        return kind in self._by_kind

    def decode_body(self, kind: str, body: object) -> object:
        """The message of ``kind`` rebuilt from ``body``; :class:`BodyError` when it does not fit
        (``kind`` must be known: check :meth:`knows` first)."""
        return self._by_kind[kind].dec(body)
