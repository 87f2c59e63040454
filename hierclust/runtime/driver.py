"""One node's driver: feeds ``node.step`` and carries out the effects it returns, in order.

Theory of operation
-------------------
Every input (a datagram, a timer, a lag report, a command) becomes one synchronous call of
:meth:`NodeDriver.feed`: ``node.step(time.monotonic_ns(), input)`` and then each effect in turn,
in order. A :class:`~hierclust.core.types.Persist` is fsync'd and renamed into place before the
next effect (typically the ``Send`` of the vote it records) runs. The write runs in the host's
persist thread pool (``HostContext.persist_pool``), not on the event loop: one fsync takes
milliseconds, tens of them when the disk is busy, and hundreds of nodes voting at once in one
process then stalled every node's heartbeats for seconds (a 1,024-node boot did not settle).
While a node's write is in flight the node is *blocked*: it keeps stepping its inputs, but every
effect, its own later ones included, waits in order in its backlog until the write is durable.
At most one write per node is in flight, so writes of one state file never reorder. A write
that fails with an :class:`OSError` (a read-only or full state directory, an I/O error) does not
stop the node: it *cannot persist* until a later write succeeds, and meanwhile votes for no one
and stands for no election (:mod:`hierclust.runtime.storage` says how, and why that is safe).
Without a pool (``persist_pool = None``) the write runs inline, as before.

Fail-stop: a node never half-applies a step. An exception out of ``node.step`` (any input: a
datagram, a timer, ``LoopLag``, a command, ``Start``) or out of carrying out one of its effects
(a send, a timer, a persist, an emit, a disk-lease exchange) crashes that node at once, as
``hierclust kill`` does: no effect after the failing one runs, the socket is closed, the timers
are dropped. The reason (node, what it was doing, exception type and message) is logged with the
traceback, written to the event log as a ``Failed`` event, and kept in the driver
(:attr:`NodeDriver.stop_reason`) for ``status``; the host's other nodes run on, and ``restart``
brings the node back. Staying up instead would leave a node that may have persisted a vote and
not sent it, or sent half of what one step decided, acting on a state no peer can reason about.

Datagrams arrive by callback: the endpoint's datagram protocol calls :meth:`NodeDriver.on_datagram`
straight from the event loop (no queue and no task switch per datagram). What arrives while a node
is paused, or after its socket is bound but before it booted, is kept and handled in order once it
can be.

Timers are ``loop.call_at`` handles, at most one per key; a later ``SetTimer`` replaces the
handle. The lateness of every timer (how long after its due time it ran) is the loop-lag sample
the host turns into :class:`~hierclust.core.types.LoopLag` inputs.

A node started without a state file (first boot outside ``deploy``, or a lost state directory) is
*amnesiac*: it may have voted in a term before and forgotten it. It boots with a fresh incarnation
from the wall clock and stays mute (receives, sends nothing) for ``quarantine_ns``, a couple of
election timeouts, so that elections it may have voted in are over before it can vote again. This
narrows, but cannot close, the window for a double vote; see the runtime docs.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hierclust.codec import Codec, DropLogger, Dropped, EncodeError
from hierclust.core.disk import LeaseWatch
from hierclust.core.node import Node
from hierclust.core.state import PersistentState
from hierclust.core.types import (
    ADMIN_MODES,
    Admin,
    Alive,
    CancelTimer,
    Command,
    Emit,
    Failure,
    Input,
    LoopLag,
    Persist,
    Received,
    Send,
    SetTimer,
    Start,
    Storage,
    Subtree,
    TimerFired,
    Unreachable,
    witness_group,
    witness_id,
)
from hierclust.runtime.context import HostContext
from hierclust.runtime.events import FAILED
from hierclust.runtime.state import load_state, save_state
from hierclust.runtime.storage import (
    PROBE_S,
    FaultState,
    StorageFault,
    StorageRecovered,
    error_name,
    error_text,
    is_promise,
    is_promise_event,
)
from hierclust.runtime.tiebreak import LeaseFileError, disk_exchange
from hierclust.runtime.transport import AddressTuple, UdpEndpoint

_LOG = logging.getLogger("hierclust.runtime")
MAX_REASON_CHARS = 400
"""An exception's message is cut to this in the reason (the log has the whole traceback)."""
MAX_EARLY_DATAGRAMS = 4096
"""Datagrams kept for a node whose socket is bound but which has not booted yet (beyond that they
are lost, counted as suppressed)."""
DISK_TROUBLE_LOG_NS = 10_000_000_000
"""A disk lease that stays unusable is logged again this often (the leader asks every tick)."""


def wall_offset_ns() -> int:
    """This host's wall clock minus its monotonic clock (what the core adds to ``now`` to read
    the wall clock; see :class:`~hierclust.core.types.WallClock`)."""
    return time.time_ns() - time.monotonic_ns()


@dataclass(slots=True)
class DriverStats:
    sent: int = 0
    sent_bytes: int = 0
    arrived: int = 0  # every datagram the socket handed over, whatever became of it
    received: int = 0  # accepted by the codec
    suppressed: int = 0  # muted (quarantine), filtered (partition) or no address
    encode_errors: int = 0
    unreachable: int = 0
    persists: int = 0
    started_ns: int = 0
    storage_faults: int = 0  # times a write failed while the node could persist
    promises_dropped: int = 0  # votes and vote requests not sent: they were not durable


class NodeDriver:
    """Runs one :class:`Node` (``rank``) on its own UDP socket inside a host's event loop."""

    def __init__(self, ctx: HostContext, rank: int) -> None:
        self.ctx = ctx
        self.rank = rank
        self.name = ctx.topology.node_name(rank)
        self.state_path: Path = ctx.state_path(rank)
        self.node: Node | None = None
        self.codec: Codec | None = None
        self.endpoint: UdpEndpoint | None = None
        self.silenced: UdpEndpoint | None = None  # the bound, mute port of a silent crash
        self.timers: dict[tuple[Any, ...], asyncio.TimerHandle] = {}
        self.recv_task: asyncio.Task[None] | None = None  # (datagrams arrive by callback)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.held: list[tuple[bytes, AddressTuple]] | None = None  # received while paused
        self.early: list[tuple[bytes, AddressTuple]] | None = None  # bound, not booted yet
        self.stats = DriverStats()
        self.muted_until_ns = 0
        self.paused_until_ns = 0
        self.amnesiac = False
        self.drop_log = DropLogger(prefix=self.name)
        self.on_crash: Callable[[NodeDriver, str], None] | None = None
        self.life = 0  # bumped by every crash: a write finishing later belongs to a past life
        self.blocked = False  # a persist is in flight: effects wait in the backlog
        self.backlog: list[Any] = []
        self.pending_persist: asyncio.Future[None] | None = None
        # how the last life ended (event and reason), until the next boot: what status shows
        self.stop_event: str | None = None
        self.stop_reason: str | None = None
        self.lease_watches: dict[int, LeaseWatch] = {}  # disk leases by group, on this host's clock
        self.disk_trouble: dict[int, tuple[str, int]] = {}  # group -> (last problem logged, when)
        # the state file cannot be written (None: it can); the newest state waiting for a probe
        self.storage: FaultState | None = None
        self.unsaved: PersistentState | None = None
        self.probe: asyncio.TimerHandle | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.node is not None

    async def bind(self) -> None:
        """Open the node's socket (first, for every node of a host, so port clashes show early)."""
        address = self.ctx.addresses[self.rank]
        if address is None:
            raise OSError(f"{self.name} has no address in {self.ctx.topology.source}")
        if self.silenced is not None:  # back from a silent crash: its port is ours again
            self.silenced.close()
            self.silenced = None
        for attempt in range(50):
            try:
                self.endpoint = await UdpEndpoint.open(
                    address[0],
                    address[1],
                    receiver=self.on_datagram,
                    on_refused=self._on_refused,
                )
                return
            except OSError as exc:
                # our own socket of a moment ago closes on the next loop turns (restart)
                if exc.errno != errno.EADDRINUSE or attempt == 49:
                    raise
                await asyncio.sleep(0.02)

    def boot(self) -> None:
        """Create the core node from the state file (or amnesiac) and feed it ``Start``."""
        assert self.endpoint is not None, "bind() first"
        persisted = load_state(self.state_path)
        now = time.monotonic_ns()
        if persisted is None:
            self.amnesiac = True
            # wall-clock seconds: above any incarnation this node had, as long as it restarted
            # less often than once a second and the clock is sane
            persisted = PersistentState(int(time.time()) - 1_700_000_000)
            self.muted_until_ns = now + self.ctx.quarantine_ns
        else:
            self.amnesiac = False
            self.muted_until_ns = 0
        node = Node(
            self.ctx.topology,
            self.rank,
            rng=random.Random(),
            persisted=persisted,
            amnesiac=self.amnesiac,
        )
        self.node = node
        self.stop_event = self.stop_reason = None
        # Sequence numbers from the wall clock (us): a restart, even one that lost its state,
        # never reuses numbers peers still hold in their replay windows.
        self.codec = Codec(
            cluster=self.ctx.topology.name,
            node=self.rank,
            incarnation=node.incarnation,
            keyring=self.ctx.keyring,
            registry=self.ctx.registry,
            first_seq=time.time_ns() // 1000,
        )
        self.stats.started_ns = now
        self.loop = asyncio.get_running_loop()
        self.held = None
        if self.early is not None:  # what arrived since bind(): handled once Start is done
            self.loop.call_soon(self._release_early, self.life)
        self.ctx.bus.note(
            {
                "event": "Booted",
                "node": self.name,
                "rank": self.rank,
                "incarnation": node.incarnation,
                "amnesiac": self.amnesiac,
            }
        )
        self.feed(Start(wall_offset_ns()))

    def crash(
        self, reason: str = "killed", event: str = "Crashed", *, silent: bool = False
    ) -> None:
        """Stop at once, as a crash would: socket closed, timers dropped, no goodbye. ``event``
        names it in the log: ``Stopped`` for a clean stop of the whole host, ``Failed`` for an
        error in the node's step or effects (:meth:`_fail`). ``silent``: as a host losing
        power, the port stays bound and drops everything, so peers get no ICMP "port
        unreachable" (a closed port's shortcut to detection), only silence."""
        if self.node is None:
            return
        self.node = None
        self.stop_event = event
        self.stop_reason = reason
        self.life += 1
        self.blocked = False
        self.backlog = []
        self.held = None
        self.early = None
        self.storage = None
        self.unsaved = None
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        if self.recv_task is not None:
            self.recv_task.cancel()
            self.recv_task = None
        if self.endpoint is not None:
            if silent:
                self.endpoint.silence()
                self.silenced = self.endpoint
            else:
                self.endpoint.close()
            self.endpoint = None
        try:
            self.ctx.bus.note(
                {"event": event, "node": self.name, "rank": self.rank, "reason": reason}
            )
        except OSError as exc:  # the event log's disk: the node is down all the same
            _LOG.error("%s: cannot log %s (%s): %s", self.name, event, reason, exc)
        if self.on_crash is not None:
            self.on_crash(self, reason)

    # -- inputs -----------------------------------------------------------------------------------
    def feed(self, inp: Input) -> None:
        node = self.node
        if node is None:
            return
        try:
            effects = node.step(time.monotonic_ns(), inp)
        except Exception as exc:
            self._fail(f"step({self._input_text(inp)})", exc)
            return
        self._apply(effects)

    def _apply(self, effects: list[Any]) -> None:
        if self.blocked:
            self.backlog.extend(effects)
            return
        send = self._send
        i = 0
        effect: Any = None
        try:
            for effect in effects:
                if self.node is None:
                    return  # crashed half-way (e.g. by an input this step caused): no more
                kind = type(effect)
                if kind is Send:
                    if self.storage is None or not is_promise(effect.msg):
                        send(effect.dst, effect.msg)
                    else:
                        self._drop_promise()
                elif kind is SetTimer:
                    self._set_timer(effect.key, effect.at_ns)
                elif kind is CancelTimer:
                    handle = self.timers.pop(effect.key, None)
                    if handle is not None:
                        handle.cancel()
                elif kind is Persist:
                    if self.storage is not None:
                        self.unsaved = effect.state  # the next probe writes the newest state
                    elif self._persist(effect.state):
                        self.blocked = True  # the rest waits until the state is durable
                        self.backlog.extend(effects[i + 1 :])
                        return
                elif kind is Emit:
                    if self.storage is None or not is_promise_event(effect.event):
                        self.ctx.bus.publish(self.rank, self.name, effect.event)
                else:  # pragma: no cover - a new effect type must be handled here
                    raise TypeError(f"unknown effect {effect!r}")
                i += 1
        except Exception as exc:
            self._fail(self._effect_text(effect), exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        """Fail-stop: ``what`` (a step or an effect) raised ``exc``. Crash the node at once with
        a reason naming it and the exception; nothing more of its step is carried out."""
        message = str(exc)
        if len(message) > MAX_REASON_CHARS:
            message = message[:MAX_REASON_CHARS] + "..."
        error = type(exc).__name__ + (f": {message}" if message else "")
        reason = f"{self.name}: {what} raised {error}"
        _LOG.error("%s; the node stops", reason, exc_info=exc)
        self.crash(reason, event=FAILED)

    def _peer_text(self, peer: int) -> str:
        if peer >= 0:
            topology = self.ctx.topology
            return topology.node_name(peer) if peer < topology.num_nodes else f"rank {peer}"
        return f"the tie-breaker of group {witness_group(peer)}"

    def _input_text(self, inp: Any) -> str:
        """An input in a failure reason: ``Received Ack from cn3``, ``TimerFired ('t', 0)``."""
        kind = type(inp)
        if kind is Received:
            return f"Received {type(inp.msg).__name__} from {self._peer_text(inp.src)}"
        if kind is TimerFired:
            return f"TimerFired {inp.key!r}"
        if kind is Unreachable:
            return f"Unreachable {self._peer_text(inp.dst)}"
        if kind is LoopLag:
            return f"LoopLag {inp.lag_ms} ms"
        if kind is Command:
            return f"Command {inp.name}"
        return kind.__name__

    def _effect_text(self, effect: Any) -> str:
        """An effect in a failure reason: ``Send VoteResp to cn2``, ``Persist to PATH``."""
        kind = type(effect)
        if kind is Send:
            return f"Send {type(effect.msg).__name__} to {self._peer_text(effect.dst)}"
        if kind is SetTimer or kind is CancelTimer:
            return f"{kind.__name__} {effect.key!r}"
        if kind is Persist:
            return f"Persist to {self.state_path}"
        if kind is Emit:
            return f"Emit {type(effect.event).__name__}"
        return f"effect {effect!r:.80}"

    def _persist(self, state: PersistentState) -> bool:
        """Write ``state``; True when the write went to the pool (the node is blocked until it
        lands), False when it was done inline (an :class:`OSError` starts a storage fault: what
        follows runs without the promises; another error raises: the caller fails the node)."""
        pool = self.ctx.persist_pool
        if pool is not None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(pool, self._save_now, self.state_path, state)
            life = self.life
            future.add_done_callback(lambda f: self._persisted(f, life, state))
            self.pending_persist = future
            return True
        try:
            self._save_now(self.state_path, state)
        except OSError as exc:
            self._storage_failed(exc, state)
            return False
        self._durable(state)
        return False

    @staticmethod
    def _save_now(path: Path, state: PersistentState) -> None:
        save_state(path, state)  # looked up at call time (tests replace it)

    def _persisted(self, future: asyncio.Future[None], life: int, state: PersistentState) -> None:
        """A pooled write finished (in the loop): release the backlog, or crash on failure."""
        if future is self.pending_persist:
            self.pending_persist = None
        if life != self.life or self.node is None or future.cancelled():
            return  # the node crashed meanwhile: what it held back is gone with it
        exc = future.exception()
        if isinstance(exc, OSError):
            self._storage_failed(exc, state)  # the backlog runs without its promises
        elif exc is not None:
            self._fail(f"Persist to {self.state_path}", exc)
            return
        else:
            self._durable(state)
        self.blocked = False
        backlog, self.backlog = self.backlog, []
        self._apply(backlog)

    # -- storage faults (hierclust.runtime.storage) ---------------------------------------------
    def _drop_promise(self) -> None:
        self.stats.promises_dropped += 1
        if self.storage is not None:
            self.storage.promises_dropped += 1

    def _storage_failed(self, exc: OSError, state: PersistentState) -> None:
        """Writing ``state`` failed: from now on the node cannot persist (see the module
        :mod:`hierclust.runtime.storage`). Says why once per fault, and again if the error
        changes."""
        self.unsaved = state
        now = time.monotonic_ns()
        name, text = error_name(exc), error_text(exc)
        fault = self.storage
        if fault is not None:
            fault.failed_writes += 1
            if (fault.errno, fault.error) == (name, text):
                return
            fault.errno, fault.error = name, text
        else:
            fault = self.storage = FaultState(str(self.state_path), text, name, now)
            self.stats.storage_faults += 1
            loop = self.loop or asyncio.get_running_loop()
            loop.call_soon(self._tell_core, self.life, False)
            self._arm_probe()
        _LOG.error("%s: %s (retried every %s s)", self.name, fault.reason(), PROBE_S)
        self.ctx.bus.publish(self.rank, self.name, StorageFault(fault.path, text, name))

    def _tell_core(self, life: int, durable: bool) -> None:
        if life == self.life:
            self.feed(Storage(durable))

    def _arm_probe(self) -> None:
        loop = self.loop or asyncio.get_running_loop()
        self.probe = loop.call_later(PROBE_S, self._probe_now, self.life)

    def _probe_now(self, life: int) -> None:
        """Try to write the newest state again (in the pool, as any write)."""
        self.probe = None
        state = self.unsaved
        if life != self.life or self.node is None or self.storage is None or state is None:
            return
        pool = self.ctx.persist_pool
        if pool is None:
            try:
                self._save_now(self.state_path, state)
            except Exception as exc:
                self._probed(life, state, exc)
                return
            self._probed(life, state, None)
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(pool, self._save_now, self.state_path, state)
        self.pending_persist = future

        def done(f: asyncio.Future[None]) -> None:
            if f is self.pending_persist:
                self.pending_persist = None
            if not f.cancelled():
                self._probed(life, state, f.exception())

        future.add_done_callback(done)

    def _probed(self, life: int, state: PersistentState, exc: BaseException | None) -> None:
        fault = self.storage
        if life != self.life or self.node is None or fault is None:
            return
        if isinstance(exc, OSError):
            self._storage_failed(exc, state)
            self._arm_probe()
            return
        if exc is not None:
            self._fail(f"Persist to {self.state_path}", exc)
            return
        self._durable(state)
        if self.unsaved is not state:  # the core moved on meanwhile: write its newest state
            self._probe_now(life)
            return
        after_ms = (time.monotonic_ns() - fault.since_ns) // 1_000_000
        self.storage = self.unsaved = None
        _LOG.warning(
            "%s: wrote its state to %s again after %d ms; it votes and stands again",
            self.name,
            fault.path,
            after_ms,
        )
        self.ctx.bus.publish(self.rank, self.name, StorageRecovered(fault.path, after_ms))
        loop = self.loop or asyncio.get_running_loop()
        loop.call_soon(self._tell_core, life, True)

    def _durable(self, state: PersistentState) -> None:
        self.stats.persists += 1
        codec = self.codec
        if codec is not None and codec.incarnation != state.incarnation:
            codec.incarnation = state.incarnation  # a refutation: later datagrams carry the new one

    def _send(self, dst: int, msg: Any) -> None:
        stats = self.stats
        if self.muted_until_ns and time.monotonic_ns() < self.muted_until_ns:
            stats.suppressed += 1
            return
        ctx = self.ctx
        if dst >= 0:
            addresses = ctx.addresses
            addr = addresses[dst] if dst < len(addresses) else None
        elif witness_group(dst) in ctx.disk_leases:
            self._disk(witness_group(dst), msg)
            return
        else:
            addr = ctx.address_of(dst)
        if addr is None or (ctx.isolated is not None and not ctx.allows(self.rank, dst)):
            stats.suppressed += 1
            return
        codec = self.codec
        endpoint = self.endpoint
        if codec is None or endpoint is None:
            return
        try:
            data = codec.encode(msg, dst)
        except EncodeError as exc:
            stats.encode_errors += 1
            _LOG.error("%s: cannot encode %s for %s: %s", self.name, type(msg).__name__, dst, exc)
            return
        stats.sent += 1
        stats.sent_bytes += len(data)
        bounced = endpoint.send(data, addr)
        if bounced:
            self._report_unreachable(bounced)

    def _disk(self, group: int, msg: Any) -> None:
        """A disk tie-breaker request, carried out on the lease file; the answer comes back as
        an input on the next loop turn (never inside this step). The lease is judged on this
        host's monotonic clock, with this node's memory of the record (``lease_watches``)."""
        path = self.ctx.disk_leases[group]
        watch = self.lease_watches.get(group)
        if watch is None:
            watch = self.lease_watches[group] = LeaseWatch()
        hold_ms = self.ctx.topology.by_index[group].tuning.election_timeout_ms
        try:
            effects = disk_exchange(path, group, self.rank, msg, watch, time.monotonic_ns, hold_ms)
        except (OSError, LeaseFileError) as exc:
            # no answer: no vote, and a holder's share of its lease is not renewed
            self.stats.suppressed += 1
            if isinstance(exc, LeaseFileError):
                problem = str(exc)
            else:
                problem = f"{path}: {exc.strerror or exc}"
            now = time.monotonic_ns()
            last = self.disk_trouble.get(group)
            if last is None or last[0] != problem or now - last[1] >= DISK_TROUBLE_LOG_NS:
                self.disk_trouble[group] = (problem, now)
                _LOG.warning("%s: disk lease: %s; no vote or renewal from it", self.name, problem)
            return
        if self.disk_trouble.pop(group, None) is not None:
            _LOG.warning("%s: disk lease %s: a valid record again", self.name, path)
        loop = asyncio.get_running_loop()
        for effect in effects:
            if type(effect) is Send and effect.dst == self.rank:
                loop.call_soon(self.feed, Received(witness_id(group), effect.msg))

    def _set_timer(self, key: tuple[Any, ...], at_ns: int) -> None:
        timers = self.timers
        old = timers.get(key)
        if old is not None:
            old.cancel()
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        delay = (at_ns - time.monotonic_ns()) / 1e9
        timers[key] = loop.call_at(loop.time() + max(0.0, delay), self._fire, key, at_ns)

    def _fire(self, key: tuple[Any, ...], at_ns: int) -> None:
        self.timers.pop(key, None)
        now = time.monotonic_ns()
        if now < self.paused_until_ns:
            # a paused (stalled) node runs its timers late, all at once, like after a GC stall
            self._set_timer(key, self.paused_until_ns)
            return
        self.ctx.note_lag(now - at_ns)
        node = self.node
        if node is not None:
            try:
                effects = node.step(now, TimerFired(key))
            except Exception as exc:
                self._fail(f"step({self._input_text(TimerFired(key))})", exc)
                return
            self._apply(effects)

    # -- receive path ------------------------------------------------------------------------------
    def on_datagram(self, data: bytes, peer: AddressTuple) -> None:
        """One datagram from the socket (the endpoint's receiver; called by the event loop).
        Counted in ``stats.arrived`` once, here: every arrival ends up accepted (``received``),
        dropped by the codec (by reason), held for a paused or booting node, or suppressed, so
        the counters account for every datagram the socket took in."""
        self.stats.arrived += 1
        self._handle(data, peer)

    def _handle(self, data: bytes, peer: AddressTuple) -> None:
        if self.paused_until_ns and self._hold(data, peer):
            return
        codec = self.codec
        node = self.node
        if codec is None or node is None:
            if node is None and self.endpoint is not None:
                self._hold_early(data, peer)
            return
        got = codec.receive(data)
        if type(got) is tuple:
            src = got[0]
            self.stats.received += 1
            if self.ctx.isolated is not None and not self.ctx.allows(src, self.rank):
                self.stats.suppressed += 1
                return
            inp = Received(src, got[1])
            try:
                effects = node.step(time.monotonic_ns(), inp)
            except Exception as exc:
                self._fail(f"step({self._input_text(inp)})", exc)
                return
            self._apply(effects)
        else:
            assert isinstance(got, Dropped)
            self.drop_log.note(time.monotonic_ns(), got, peer=f"{peer[0]}:{peer[1]}")

    def _hold(self, data: bytes, peer: AddressTuple) -> bool:
        """A paused node takes in nothing until the pause ends; then what arrived meanwhile is
        handled in order (True: ``data`` was held back)."""
        held = self.held
        if held is not None:
            held.append((data, peer))
            return True
        wait_ns = self.paused_until_ns - time.monotonic_ns()
        if wait_ns <= 0:
            self.paused_until_ns = 0
            return False
        self.held = [(data, peer)]
        loop = self.loop or asyncio.get_running_loop()
        loop.call_later(wait_ns / 1e9, self._release, self.life)
        return True

    def _hold_early(self, data: bytes, peer: AddressTuple) -> None:
        """The socket is bound but the node not booted yet (host start-up binds every socket
        first): keep the datagram for the node, as the socket's buffer would."""
        early = self.early
        if early is None:
            early = self.early = []
        if len(early) < MAX_EARLY_DATAGRAMS:
            early.append((data, peer))
        else:
            self.stats.suppressed += 1

    def _release_early(self, life: int) -> None:
        early = self.early
        self.early = None
        if life != self.life or early is None:
            return
        for data, peer in early:
            try:
                self._handle(data, peer)
            except Exception:  # the receive path must survive anything one datagram does
                _LOG.exception("%s: error handling a datagram from %s", self.name, peer)

    def _release(self, life: int) -> None:
        held = self.held
        if life != self.life or held is None:
            return  # crashed (and maybe restarted) meanwhile: those datagrams died with it
        self.held = None
        self.paused_until_ns = 0
        for data, peer in held:
            try:
                self._handle(data, peer)
            except Exception:  # the receive path must survive anything one datagram does
                _LOG.exception("%s: error handling a datagram from %s", self.name, peer)

    def _on_refused(self) -> None:
        """The kernel reported an ICMP error on our socket: tell the core who bounced."""
        endpoint = self.endpoint
        if endpoint is not None and self.node is not None:
            self._report_unreachable(endpoint.unreachable())

    def _report_unreachable(self, addrs: list[AddressTuple]) -> None:
        for addr in addrs:
            dst = self.ctx.rank_at.get(addr)
            if dst is not None:
                self.stats.unreachable += 1
                self.feed(Unreachable(dst))

    # -- queries -----------------------------------------------------------------------------------
    def snapshot(self, now: int) -> dict[str, Any]:
        """What ``status`` shows about this node (JSON-ready)."""
        node = self.node
        base: dict[str, Any] = {
            "rank": self.rank,
            "name": self.name,
            "running": node is not None,
            "stop_event": self.stop_event,  # Crashed (killed), Failed (an error) or Stopped
            "stop_reason": self.stop_reason,
        }
        codec_counts = self.codec.counters.as_dict() if self.codec is not None else {}
        base["datagrams"] = {
            "sent": self.stats.sent,
            "sent_bytes": self.stats.sent_bytes,
            "arrived": self.stats.arrived,
            "received": self.stats.received,
            "suppressed": self.stats.suppressed,
            "unreachable": self.stats.unreachable,
            **{k: v for k, v in codec_counts.items() if k.startswith("dropped")},
        }
        if node is None:
            return base
        groups = []
        for gi in node.groups():
            leader = node.leader_of(gi)
            groups.append(
                {
                    "group": gi,
                    "leader": leader,
                    "term": node.term(gi),
                    "leading": node.is_leader(gi),
                    "lease": node.lease_valid(gi, now),
                    "quorate": node.quorate(gi, now),
                    "view_id": node.view_id(gi),
                }
            )
        failed: dict[int, int] = {}
        alive: dict[int, int] = {}
        planned: set[tuple[int, int]] = set()
        cut: list[list[int]] = []
        for notice in node.known_notices():
            if isinstance(notice, Subtree):
                if not notice.reachable:
                    cut.append([notice.group, notice.node, notice.count])
                continue
            if isinstance(notice, Admin):
                continue
            table = alive if isinstance(notice, Alive) else failed
            table[notice.node] = max(table.get(notice.node, 0), notice.incarnation)
            if isinstance(notice, Failure) and notice.planned:
                planned.add((notice.node, notice.incarnation))
        base.update(
            storage=None if self.storage is None else self.storage.as_json(now),
            incarnation=node.incarnation,
            amnesiac=self.amnesiac,
            muted=bool(self.muted_until_ns and now < self.muted_until_ns),
            paused=now < self.paused_until_ns,
            in_primary=node.in_primary(now),
            unreachable=sorted(cut),
            groups=groups,
            mode=ADMIN_MODES[node.mode],
            failed=sorted(
                [r, inc, (r, inc) in planned] for r, inc in failed.items() if alive.get(r, 0) <= inc
            ),
        )
        return base

    def view(self, now: int) -> dict[str, Any]:
        """What this node itself holds about the cluster (``members --from``, ``quorum --from``):
        its snapshot, plus the slot holders of its upper groups, its admin notices
        (``[first, count, mode, seq, issuer]``) and the incarnations its notices name
        (``[[rank, incarnation], ...]``, the newest per rank)."""
        base = self.snapshot(now)
        node = self.node
        if node is None:
            return base
        for entry in base["groups"]:
            entry["holders"] = list(node.slot_holders(entry["group"]))
        admin = node.admin.values() if node.admin else ()
        base["admin"] = sorted([a.node, a.count, a.mode, a.seq, a.issuer] for a in admin)
        incarnations: dict[int, int] = {}
        for notice in node.known_notices():
            if isinstance(notice, Failure | Alive):
                known = incarnations.get(notice.node, 0)
                incarnations[notice.node] = max(known, notice.incarnation)
        base["incarnations"] = sorted([r, inc] for r, inc in incarnations.items())
        return base
