"""Tie-breakers served by the runtime: witness daemons over UDP and disk leases over a file.

*Witness*: a :class:`WitnessServer` binds the witness address of the topology and runs one
:class:`~hierclust.core.witness.Witness` per group there, with its own codec (node id
``witness_id(group)``). Its term and holder (``nodes/witness-GROUP.json`` in the state directory)
are written atomically before any answer of the step that changed them leaves; a write that fails
rolls the witness back and answers nothing. The file must exist and be valid at start: a missing,
unreadable or malformed file is a :class:`~hierclust.runtime.state.StateFileError` (a witness that
forgot a grant could give the same term to the other side). :func:`init_witness_states` creates the
files of a new witness: ``deploy`` calls it for a new state directory, ``hierclust witness --init``
on request. ``deploy`` runs the topology's local witnesses in worker ``w0``; ``hierclust witness``
runs them in the foreground.

*Disk*: a ``Send`` to a group with a disk tie-breaker is carried out by the sender's own driver on
the lease file (:func:`disk_exchange`): lock ``PATH.lock``, read the record, decide with
:func:`~hierclust.core.disk.lease_request`, write the new record atomically (temp, fsync, rename,
fsync the directory), and only then feed the answer back to the node as if it came from
``witness_id(group)``. The lock is on a file of its own because the rename replaces the lease
file's inode. An empty, torn or malformed record is a :class:`LeaseFileError`: no vote, no renewal
(a holder that cannot renew loses the tie-breaker's share of its lease). The record holds no time;
expiry is judged on the reading node's monotonic clock (:class:`~hierclust.core.disk.LeaseWatch`,
kept by its driver), so hosts' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hierclust.codec import Codec, Decoded, DropLogger, Dropped, DropReason, EncodeError
from hierclust.core.disk import LeaseRecord, LeaseWatch, lease_request
from hierclust.core.timeouts import MS
from hierclust.core.types import Effect, Received, Send, SetTimer, TimerFired, witness_id
from hierclust.core.witness import Witness
from hierclust.runtime.context import HostContext, local_witnesses
from hierclust.runtime.state import StateFileError, make_state_dir, write_atomic
from hierclust.runtime.transport import AddressTuple, UdpEndpoint
from hierclust.runtime.wallclock import wall_ns
from hierclust.topology import Topology

_LOG = logging.getLogger("hierclust.runtime")
WITNESS_STATE_VERSION = 1
LEASE_VERSION = 1
MAX_RECORD_BYTES = 4096
"""A witness state file or lease record is a few dozen bytes; anything larger is not one."""


# -- disk leases -----------------------------------------------------------------------------------
class LeaseFileError(ValueError):
    """A lease file that exists but holds no valid record; ``str()`` names the file and why."""


def read_lease(path: Path, group: int) -> LeaseRecord:
    """The record in ``path``; a file that does not exist is a lease never taken (the first
    acquire creates it). Raises :class:`LeaseFileError` for anything else that is not a record
    of ``group``, OSError when the file cannot be read."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return LeaseRecord()
    if not raw.strip():
        raise LeaseFileError(f"{path}: empty; expected a lease record (a torn write?)")
    if len(raw) > MAX_RECORD_BYTES:
        raise LeaseFileError(f"{path}: larger than {MAX_RECORD_BYTES} bytes; not a lease record")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise LeaseFileError(f"{path}: not a lease record (torn or foreign): {exc}") from None
    if not isinstance(data, dict):
        raise LeaseFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if "version" not in data and "renewed_ns" in data:
        # the record of an older hierclust, which stamped renewals with its wall clock: the
        # stamp is ignored and the record read as not renewed yet (readers wait hold_ms)
        data = {**data, "version": LEASE_VERSION, "renewals": 0}
        data.pop("renewed_ns")
    if data.get("version") != LEASE_VERSION:
        raise LeaseFileError(
            f"{path}: version: expected {LEASE_VERSION}, got {data.get('version')!r}"
        )
    for key, low in (("group", 0), ("term", 0), ("holder", -1), ("renewals", 0)):
        value = data.get(key)
        if type(value) is not int or value < low:
            raise LeaseFileError(f"{path}: {key}: expected a whole number >= {low}, got {value!r}")
    if data["group"] != group:
        raise LeaseFileError(
            f"{path}: holds the lease of group {data['group']}, not of group {group}: two "
            "groups share one lease file"
        )
    return LeaseRecord(data["term"], data["holder"], data["renewals"])


def write_lease(path: Path, group: int, record: LeaseRecord) -> None:
    payload = {
        "version": LEASE_VERSION,
        "group": group,
        "term": record.term,
        "holder": record.holder,
        "renewals": record.renewals,
    }
    write_atomic(path, json.dumps(payload).encode())


def lease_lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


def disk_exchange(
    path: Path,
    group: int,
    src: int,
    msg: Any,
    watch: LeaseWatch,
    clock: Callable[[], int],
    hold_ms: int,
) -> list[Effect]:
    """One request of node ``src`` to the disk lease of ``group`` in ``path``, judged by the
    node's own monotonic ``clock`` and its memory of earlier reads in ``watch``. Returns the
    answer once the record it implies is durable. Raises :class:`LeaseFileError` (the file holds
    no valid record) or OSError (it cannot be read or written): then there is no answer."""
    fd = os.open(lease_lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = read_lease(path, group)
        # the clock is read after the record, never before: a time taken before the lock was
        # ours could precede the write of what we read, and shorten the holder's hold
        now = clock()
        written, answer = lease_request(record, watch, hold_ms * MS, now, src, msg)
        if written != record:
            write_lease(path, group, written)
        return [] if answer is None else [answer]
    finally:
        os.close(fd)  # (closing the descriptor releases the lock)


# -- witness state files ---------------------------------------------------------------------------
def witness_state_path(state_dir: Path, topology: Topology, group: int) -> Path:
    return state_dir / "nodes" / f"witness-{topology.by_index[group].name}.json"


def load_witness_state(path: Path) -> tuple[int, int]:
    """``(term, holder)`` from a witness state file; StateFileError when it is missing, unreadable
    or malformed (never a fresh start: that could grant a term twice)."""
    term, holder, _ = load_witness_record(path)
    return term, holder


def load_witness_record(path: Path) -> tuple[int, int, int]:
    """``(term, holder, incarnation)`` from a witness state file (incarnation 0 in files written
    before it was kept); errors as :func:`load_witness_state`."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        raise StateFileError(
            f"{path}: no witness state; a new witness starts with `hierclust witness --init` "
            "(see docs/operations.md: never for one that lost its state)"
        ) from None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_RECORD_BYTES:
        raise StateFileError(f"{path}: larger than {MAX_RECORD_BYTES} bytes; not a witness state")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateFileError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StateFileError(f"{path}: expected a JSON object with term and holder")
    if data.get("version", WITNESS_STATE_VERSION) != WITNESS_STATE_VERSION:  # none: older files
        raise StateFileError(f"{path}: version: expected {WITNESS_STATE_VERSION}")
    term, holder = data.get("term"), data.get("holder")
    incarnation = data.get("incarnation", 0)
    if type(term) is not int or term < 0:
        raise StateFileError(f"{path}: term: expected a whole number >= 0, got {term!r}")
    if type(holder) is not int or holder < -1:
        raise StateFileError(f"{path}: holder: expected a node rank or -1, got {holder!r}")
    if type(incarnation) is not int or incarnation < 0:
        raise StateFileError(
            f"{path}: incarnation: expected a whole number >= 0, got {incarnation!r}"
        )
    return term, holder, incarnation


def save_witness_state(path: Path, term: int, holder: int, incarnation: int = 0) -> None:
    payload = {
        "version": WITNESS_STATE_VERSION,
        "term": term,
        "holder": holder,
        "incarnation": incarnation,
    }
    write_atomic(path, json.dumps(payload).encode())


def init_witness_states(topology: Topology, state_dir: Path) -> tuple[list[Path], list[Path]]:
    """Create the state file (term 0, no holder) of every local witness that has none; returns
    (created, already there). Only for a new witness: one that lost its state must not."""
    created: list[Path] = []
    existing: list[Path] = []
    make_state_dir(state_dir)
    (state_dir / "nodes").mkdir(parents=True, exist_ok=True)
    for groups in local_witnesses(topology).values():
        for group in groups:
            path = witness_state_path(state_dir, topology, group)
            if path.exists():
                existing.append(path)
            else:
                save_witness_state(path, 0, -1)
                created.append(path)
    return created, existing


class WitnessServer:
    """The witness daemons of ``groups``, all at ``address`` (one socket). Raises StateFileError
    when a group's state file is missing or bad."""

    def __init__(self, ctx: HostContext, address: AddressTuple, groups: list[int]) -> None:
        self.ctx = ctx
        self.address = address
        now = time.monotonic_ns()
        self.witnesses: dict[int, Witness] = {}
        last = 0
        for g in groups:
            hold_ms = ctx.topology.by_index[g].tuning.election_timeout_ms
            witness = self.witnesses[g] = Witness(g, hold_ms=hold_ms)
            term, holder, inc = load_witness_record(self.state_path(g))
            witness.restore(now, term, holder)
            last = max(last, inc)
        # Peers drop datagrams of an incarnation older than the newest they saw from us, so each
        # start must take a larger one. The wall clock alone is not enough (a clock stepped back
        # before a restart would make the witness mute to everyone), so the last one is kept in
        # the state files and written before the first answer can leave.
        self.incarnation = max(last + 1, wall_ns() // 1_000_000_000 - 1_700_000_000)
        for g, witness in self.witnesses.items():
            try:
                save_witness_state(self.state_path(g), *witness.durable(), self.incarnation)
            except OSError as exc:
                raise StateFileError(
                    f"{self.state_path(g)}: cannot write the witness's new incarnation: "
                    f"{exc.strerror or exc}; make the state directory writable"
                ) from None
        incarnation = self.incarnation
        self.codecs = {
            g: Codec(
                cluster=ctx.topology.name,
                node=witness_id(g),
                incarnation=incarnation,
                keyring=ctx.keyring,
                registry=ctx.registry,
                first_seq=wall_ns() // 1000,
            )
            for g in groups
        }
        self.timers: dict[tuple[Any, ...], asyncio.TimerHandle] = {}
        self.endpoint: UdpEndpoint | None = None
        self.task: asyncio.Task[None] | None = None
        self.drop_log = DropLogger(prefix=f"witness {address[0]}:{address[1]}")
        self.failed_writes = 0
        # one outcome per datagram (the group codecs each count the ones they were shown: a
        # datagram for the second group is a wrong_dst to the first)
        self.arrived = 0
        self.accepted = 0
        self.dropped: dict[DropReason, int] = dict.fromkeys(DropReason, 0)

    def state_path(self, group: int) -> Path:
        return witness_state_path(self.ctx.state_dir, self.ctx.topology, group)

    async def start(self) -> None:
        self.endpoint = await UdpEndpoint.open(*self.address)
        self.task = asyncio.get_running_loop().create_task(self._recv_loop())

    def close(self) -> None:
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        if self.task is not None:
            self.task.cancel()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    def set_keyring(self, keyring: Any) -> None:
        for codec in self.codecs.values():
            codec.keyring = keyring

    async def _recv_loop(self) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        while True:
            try:
                got = await endpoint.recv()
            except OSError:
                endpoint.unreachable()
                continue
            if got is None:
                return
            try:
                self._on_datagram(*got)
            except Exception:
                _LOG.exception("witness: error handling a datagram from %s", got[1])

    def _on_datagram(self, data: bytes, peer: AddressTuple) -> None:
        self.arrived += 1
        result: Decoded | Dropped | None = None
        for group, codec in self.codecs.items():
            result = codec.decode(data)
            if isinstance(result, Decoded):
                self.accepted += 1
                self._step(group, Received(result.src, result.msg))
                return
            if result.reason is not DropReason.WRONG_DST:
                break
        if isinstance(result, Dropped):
            self.dropped[result.reason] += 1
            self.drop_log.note(time.monotonic_ns(), result, peer=f"{peer[0]}:{peer[1]}")

    def snapshot(self) -> dict[str, Any]:
        """What ``status`` shows of this witness daemon: its groups' durable ``(term, holder)``
        and its datagrams, one outcome each (``arrived`` = ``accepted`` + the ``dropped_*``)."""
        counts: dict[str, int] = {"arrived": self.arrived, "accepted": self.accepted}
        counts["dropped"] = sum(self.dropped.values())
        counts.update({f"dropped_{reason.value}": n for reason, n in self.dropped.items()})
        return {
            "address": f"{self.address[0]}:{self.address[1]}",
            "groups": [
                {
                    "group": g,
                    "name": self.ctx.topology.by_index[g].name,
                    "term": w.durable()[0],
                    "holder": w.durable()[1],
                }
                for g, w in self.witnesses.items()
            ],
            "datagrams": counts,
            "failed_writes": self.failed_writes,
        }

    def _step(self, group: int, inp: Any) -> None:
        witness = self.witnesses[group]
        saved = witness.saved()
        effects = witness.step(time.monotonic_ns(), inp)
        if witness.durable() != saved[:2]:
            path = self.state_path(group)
            try:
                save_witness_state(path, *witness.durable(), self.incarnation)
            except OSError as exc:
                # Roll back rather than stop the witness: the state before this step is what the
                # file still holds, i.e. what a restart would load, so going on from it is as safe
                # as a restart (safer: the holder keeps its hold), and no answer of the step
                # leaves. Candidates ask again next round and get a grant only once a write
                # works. Stopping would add no safety, and a passing error (a full disk) would
                # take the tie-breaker away until someone restarts it (in a deploy, with the
                # nodes worker w0 runs).
                witness.rollback(saved)
                self.failed_writes += 1
                _LOG.error(
                    "witness: cannot write %s: %s; nothing answered (term stays %d)",
                    path,
                    exc.strerror or exc,
                    witness.term,
                )
                effects = [e for e in effects if type(e) is not Send]
        for effect in effects:
            if type(effect) is Send:
                address = self.ctx.address_of(effect.dst)
                if address is None or self.endpoint is None:
                    continue
                try:
                    self.endpoint.send(self.codecs[group].encode(effect.msg, effect.dst), address)
                except EncodeError as exc:
                    _LOG.error("witness: cannot encode %s: %s", type(effect.msg).__name__, exc)
            elif type(effect) is SetTimer:
                loop = asyncio.get_running_loop()
                old = self.timers.pop(effect.key, None)
                if old is not None:
                    old.cancel()
                delay = max(0.0, (effect.at_ns - time.monotonic_ns()) / 1e9)
                self.timers[effect.key] = loop.call_at(
                    loop.time() + delay, self._step, group, TimerFired(effect.key)
                )
