"""Tie-breakers served by the runtime: witness daemons over UDP and disk leases over a file.

*Witness*: a :class:`WitnessServer` binds the witness address of the topology and runs one
:class:`~hierclust.core.witness.Witness` per group there, with its own codec (node id
``witness_id(group)``). Its term and holder are persisted (same atomic write as node state) before
a grant leaves, so a restarted witness never grants two candidates in one term. ``deploy`` runs
the topology's local witnesses in worker ``w0``; ``hierclust witness`` runs them in the foreground.

*Disk*: a ``Send`` to a group with a disk tie-breaker is carried out by the sender's own driver on
the lease file (``fcntl.flock``, read, :class:`~hierclust.core.disk.LeaseDisk` step, write, fsync)
and the answer is fed back to the node as if it came from ``witness_id(group)``. Lease times are
wall-clock (``time.time_ns()``): hosts sharing the file need clocks in sync well within
``hold_ms``. Parameters are the core defaults, as in the simulator.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hierclust.codec import Codec, Decoded, DropLogger, Dropped, DropReason, EncodeError
from hierclust.core.disk import LeaseDisk
from hierclust.core.types import Received, Send, SetTimer, TimerFired, witness_id
from hierclust.core.witness import Witness
from hierclust.runtime.context import HostContext
from hierclust.runtime.state import write_atomic
from hierclust.runtime.transport import AddressTuple, UdpEndpoint

_LOG = logging.getLogger("hierclust.runtime")


def disk_exchange(path: Path, group: int, src: int, msg: Any) -> list[Any]:
    """One request to the disk lease of ``group`` in ``path``; returns the LeaseDisk's effects."""
    disk = LeaseDisk(group)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 4096, 0)
        record: dict[str, Any] = {}
        if raw.strip():
            try:
                record = json.loads(raw)
            except ValueError:
                record = {}  # a torn or foreign file counts as free; fenced by term from here on
        disk.term = int(record.get("term", 0))
        disk.holder = int(record.get("holder", -1))
        disk.renewed_ns = int(record.get("renewed_ns", disk.renewed_ns))
        before = (disk.term, disk.holder, disk.renewed_ns)
        effects = disk.step(time.time_ns(), Received(src, msg))
        if (disk.term, disk.holder, disk.renewed_ns) != before:
            data = json.dumps(
                {
                    "group": group,
                    "term": disk.term,
                    "holder": disk.holder,
                    "renewed_ns": disk.renewed_ns,
                }
            ).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        return effects
    finally:
        os.close(fd)


class WitnessServer:
    """The witness daemons of ``groups``, all at ``address`` (one socket)."""

    def __init__(self, ctx: HostContext, address: AddressTuple, groups: list[int]) -> None:
        self.ctx = ctx
        self.address = address
        self.witnesses = {g: Witness(g) for g in groups}
        incarnation = max(1, int(time.time()) - 1_700_000_000)
        self.codecs = {
            g: Codec(
                cluster=ctx.topology.name,
                node=witness_id(g),
                incarnation=incarnation,
                keyring=ctx.keyring,
                registry=ctx.registry,
                first_seq=time.time_ns() // 1000,
            )
            for g in groups
        }
        self.timers: dict[tuple[Any, ...], asyncio.TimerHandle] = {}
        self.endpoint: UdpEndpoint | None = None
        self.task: asyncio.Task[None] | None = None
        self.drop_log = DropLogger(prefix=f"witness {address[0]}:{address[1]}")
        for g, witness in self.witnesses.items():
            saved = self._load(g)
            if saved is not None:
                witness.term, witness.holder = saved

    def state_path(self, group: int) -> Path:
        return (
            self.ctx.state_dir / "nodes" / f"witness-{self.ctx.topology.by_index[group].name}.json"
        )

    def _load(self, group: int) -> tuple[int, int] | None:
        try:
            data = json.loads(self.state_path(group).read_text())
            return int(data["term"]), int(data["holder"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

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
        result: Decoded | Dropped | None = None
        for group, codec in self.codecs.items():
            result = codec.decode(data)
            if isinstance(result, Decoded):
                self._step(group, Received(result.src, result.msg))
                return
            if result.reason is not DropReason.WRONG_DST:
                break
        if isinstance(result, Dropped):
            self.drop_log.note(time.monotonic_ns(), result, peer=f"{peer[0]}:{peer[1]}")

    def _step(self, group: int, inp: Any) -> None:
        witness = self.witnesses[group]
        before = (witness.term, witness.holder)
        effects = witness.step(time.monotonic_ns(), inp)
        if (witness.term, witness.holder) != before:
            payload = {"term": witness.term, "holder": witness.holder}
            write_atomic(self.state_path(group), json.dumps(payload).encode())
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
