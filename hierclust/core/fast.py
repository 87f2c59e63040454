"""Fast constructors for the frozen dataclasses built on every heartbeat.

Why: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, about
100 ns a field on the reference machine; ``Ping(...)`` takes 0.8 µs. The simulator builds a Send,
a Ping or an Ack, a SetTimer and now and then an Emit for nearly every one of its events, tens of
millions per run at 10^5 nodes, and so does a busy agent.

How: each class has a *twin*, a plain class with the very same slots. An object is built as a
twin with ordinary attribute stores (which the interpreter specialises), and then its
``__class__`` is switched to the frozen class: what the constructor returns is an instance of the
frozen class itself with the same field values, equal, hashing and printing alike, and frozen
from then on. Python allows the switch only between classes of identical layout (the same slots in
the same order, the same base); at import, every twin is checked against its class (field list,
no ``__post_init__``, and one object switched and compared with the plain constructor's), so a
changed dataclass fails loudly here rather than leave a field unset.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from hierclust.core.messages import Ack, Ping
from hierclust.core.types import Emit, LeaseChanged, Send, SetTimer


def _twin(cls: type, names: tuple[str, ...]) -> Any:
    """A plain class with the slots of the frozen, slotted dataclass ``cls`` (fields ``names``)."""
    found = tuple(f.name for f in fields(cls))
    if found != names or hasattr(cls, "__post_init__") or getattr(cls, "__slots__", None) != names:
        raise RuntimeError(f"{cls.__name__} changed ({found}): update its fast constructor")
    return type(f"_{cls.__name__}Twin", (), {"__slots__": names})


_SendTwin = _twin(Send, ("dst", "msg"))
_PingTwin = _twin(Ping, ("group", "term", "slot", "inc", "echo", "digest_count", "digest_hash"))
_AckTwin = _twin(
    Ack,
    (
        "group",
        "term",
        "leader_inc",
        "stamp",
        "view_id",
        "flags",
        "lease_left_ns",
        "up",
        "up_term",
        "digest_count",
        "digest_hash",
        "above",
    ),
)
_SetTimerTwin = _twin(SetTimer, ("key", "at_ns"))
_EmitTwin = _twin(Emit, ("event",))
_LeaseChangedTwin = _twin(LeaseChanged, ("group", "term", "held", "until_ns"))


def new_send(dst: int, msg: Any) -> Send:
    """``Send(dst, msg)``, fast (see the module docstring)."""
    effect = _SendTwin()
    effect.dst = dst
    effect.msg = msg
    effect.__class__ = Send
    return effect  # type: ignore[no-any-return]


def new_ping(
    group: int, term: int, slot: int, inc: int, echo: int, dcount: int, dhash: int
) -> Ping:
    """``Ping(group, term, slot, inc, echo, dcount, dhash)``, fast."""
    msg = _PingTwin()
    msg.group = group
    msg.term = term
    msg.slot = slot
    msg.inc = inc
    msg.echo = echo
    msg.digest_count = dcount
    msg.digest_hash = dhash
    msg.__class__ = Ping
    return msg  # type: ignore[no-any-return]


def new_ack(
    group: int,
    term: int,
    leader_inc: int,
    stamp: int,
    view_id: int,
    flags: int,
    lease_left_ns: int,
    up: int,
    up_term: int,
    dcount: int,
    dhash: int,
    above: tuple[int, ...] = (),
) -> Ack:
    """``Ack(...)`` with the same arguments, fast."""
    msg = _AckTwin()
    msg.group = group
    msg.term = term
    msg.leader_inc = leader_inc
    msg.stamp = stamp
    msg.view_id = view_id
    msg.flags = flags
    msg.lease_left_ns = lease_left_ns
    msg.up = up
    msg.up_term = up_term
    msg.digest_count = dcount
    msg.digest_hash = dhash
    msg.above = above
    msg.__class__ = Ack
    return msg  # type: ignore[no-any-return]


def new_set_timer(key: Any, at_ns: int) -> SetTimer:
    """``SetTimer(key, at_ns)``, fast."""
    effect = _SetTimerTwin()
    effect.key = key
    effect.at_ns = at_ns
    effect.__class__ = SetTimer
    return effect  # type: ignore[no-any-return]


def new_emit(event: Any) -> Emit:
    """``Emit(event)``, fast."""
    effect = _EmitTwin()
    effect.event = event
    effect.__class__ = Emit
    return effect  # type: ignore[no-any-return]


def new_lease_changed(group: int, term: int, held: bool, until_ns: int) -> LeaseChanged:
    """``LeaseChanged(group, term, held, until_ns)``, fast."""
    event = _LeaseChangedTwin()
    event.group = group
    event.term = term
    event.held = held
    event.until_ns = until_ns
    event.__class__ = LeaseChanged
    return event  # type: ignore[no-any-return]


def _check() -> None:
    """Each fast constructor returns what the plain one does (run once, at import)."""
    ping = Ping(1, 2, 3, 4, 5, 6, 7)
    ack = Ack(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    pairs = (
        (new_ping(1, 2, 3, 4, 5, 6, 7), ping),
        (new_ack(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), ack),
        (new_send(3, ping), Send(3, ping)),
        (new_set_timer(("t", 1), 5), SetTimer(("t", 1), 5)),
        (new_emit(ack), Emit(ack)),
        (new_lease_changed(1, 2, True, 3), LeaseChanged(1, 2, True, 3)),
    )
    for fast, plain in pairs:
        if type(fast) is not type(plain) or fast != plain or repr(fast) != repr(plain):
            raise RuntimeError(f"fast constructor of {type(plain).__name__} is wrong: {fast!r}")


_check()
