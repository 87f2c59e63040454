"""One node's UDP endpoint over a socket we create ourselves.

We create the socket so that we can (a) set ``IP_RECVERR``, without which Linux never reports ICMP
"port unreachable" on an unconnected UDP socket, and (b) read the socket's error queue
(``MSG_ERRQUEUE``), which names the *destination* that bounced, so the driver can tell the core
``Unreachable(dst)``. Sending calls ``sendto`` on the non-blocking socket directly, synchronously,
so a node's effects are carried out strictly in order without an await between them (UDP never
blocks here: a full socket buffer is a lost datagram, counted, like any other loss).

Receiving comes in two forms. A node driver passes a *receiver* to :meth:`UdpEndpoint.open`: the
event loop's datagram protocol then calls it with every datagram directly (no queue, no task
switch per datagram: on a 1,024-node host that per-datagram hop cost more than the protocol core),
and calls ``on_refused`` when the kernel reports an ICMP error. Without a receiver the endpoint is
an asyncio-dgram stream read with :meth:`UdpEndpoint.recv` (the witness daemon, tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import sys
from collections.abc import Callable
from typing import Any

import asyncio_dgram

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
MAX_ERRQUEUE_READS = 64
"""Error-queue entries read per ICMP error report (a burst of bounces costs bounded work)."""

AddressTuple = tuple[str, int]
Receiver = Callable[[bytes, AddressTuple], None]

_LOG = logging.getLogger("hierclust.runtime")


class _CallbackProtocol(asyncio.DatagramProtocol):
    """Hands each datagram to ``receiver`` at once; nothing it does escapes into the loop."""

    __slots__ = ("on_refused", "receiver")

    def __init__(self, receiver: Receiver, on_refused: Callable[[], None] | None) -> None:
        self.receiver = receiver
        self.on_refused = on_refused

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.receiver(data, addr)
        except Exception:  # the receive path must survive anything one datagram does
            _LOG.exception("error handling a datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError) and self.on_refused is not None:
            try:
                self.on_refused()
            except Exception:
                _LOG.exception("error handling an ICMP error report")


def _drop(data: bytes, addr: Any) -> None:
    """A silenced endpoint's receiver."""


class UdpEndpoint:
    """A bound UDP socket plus either its receiver callback or its asyncio-dgram stream."""

    def __init__(self, sock: socket.socket, stream: Any, transport: Any = None) -> None:
        self.sock = sock
        self.stream = stream
        self.transport = transport
        self.closed = False
        self.send_errors = 0
        self._sendto = sock.sendto

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        receiver: Receiver | None = None,
        on_refused: Callable[[], None] | None = None,
    ) -> UdpEndpoint:
        """Bind ``host:port``; ``OSError`` (e.g. address in use) propagates to the caller.

        With ``receiver``, every datagram is passed to ``receiver(data, (host, port))`` from the
        event loop and ``on_refused()`` is called for an ICMP error (read :meth:`unreachable`
        then); :meth:`recv` is not available. Without it, read datagrams with :meth:`recv`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # uvloop 0.23 crashes (SIGSEGV) when an ICMP error arrives on an IP_RECVERR socket, so
        # under uvloop there is no port-unreachable shortcut; detection still works by timeout.
        loop = asyncio.get_running_loop()
        recverr = sys.platform.startswith("linux") and isinstance(loop, asyncio.SelectorEventLoop)
        try:
            if recverr:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((host, port))
            sock.setblocking(False)
            if receiver is None:
                stream = await asyncio_dgram.from_socket(sock)
                return cls(sock, stream)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _CallbackProtocol(receiver, on_refused), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        return cls(sock, None, transport)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes, addr: AddressTuple) -> list[AddressTuple]:
        """Send one datagram; returns destinations the kernel reported unreachable meanwhile."""
        if self.closed:
            return []
        try:
            self._sendto(data, addr)
        except ConnectionRefusedError:
            # a pending ICMP error surfaced here instead of on recv; the datagram is not sent
            bounced = self.unreachable()
            try:
                self._sendto(data, addr)
            except OSError:
                self.send_errors += 1
            return bounced
        except OSError:
            self.send_errors += 1
        return []

    async def recv(self) -> tuple[bytes, AddressTuple] | None:
        """The next datagram; None when the endpoint is closed. ``ConnectionRefusedError`` is
        raised for an ICMP error (read :meth:`unreachable` then). Stream endpoints only."""
        if self.stream is None:
            raise RuntimeError("this endpoint hands datagrams to its receiver; recv() is unused")
        try:
            data, addr = await self.stream.recv()
        except asyncio_dgram.TransportClosed:
            return None
        return bytes(data), (str(addr[0]), int(addr[1]))

    def unreachable(self) -> list[AddressTuple]:
        """Destinations that bounced, from the socket's error queue (Linux); [] elsewhere."""
        found: list[AddressTuple] = []
        for _ in range(MAX_ERRQUEUE_READS):
            try:
                _data, _anc, _flags, addr = self.sock.recvmsg(1, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if isinstance(addr, tuple) and len(addr) >= 2:
                found.append((addr[0], addr[1]))
        return found

    def silence(self) -> None:
        """Keep the port bound but answer nothing and hand nothing on, as a host that lost
        power: its peers get no "port unreachable", only silence. :meth:`close` ends it."""
        if self.transport is not None:
            protocol = self.transport.get_protocol()
            if isinstance(protocol, _CallbackProtocol):
                protocol.receiver = _drop
                protocol.on_refused = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.stream is not None:
                self.stream.close()
            if self.transport is not None:
                self.transport.close()


PORTS_ENV = "HIERCLUST_TEST_PORTS"
"""``LO-HI``: the UDP ports :func:`free_udp_base` may hand out (on a shared box, each user's
runs keep to their own range); unset: any port the kernel picks."""


def free_udp_base(count: int, host: str = "127.0.0.1") -> int:
    """A first port with ``count`` consecutive UDP ports free on ``host``, checked by binding
    them all (for tests and benchmarks that generate a topology); :class:`OSError` when 50
    tries find none. Within ``$HIERCLUST_TEST_PORTS`` (``LO-HI``) when it is set."""
    lo, _, hi = os.environ.get(PORTS_ENV, "").partition("-")
    span = (int(lo), int(hi)) if lo.isdigit() and hi.isdigit() else None
    for _ in range(50):
        if span is not None:
            if span[1] - span[0] + 1 < count:
                raise OSError(f"{PORTS_ENV}={span[0]}-{span[1]}: fewer than {count} ports")
            base = random.randint(span[0], span[1] - count + 1)
        else:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
            probe.close()
        if base + count > 65000:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise OSError(f"no {count} consecutive free UDP ports on {host}")
