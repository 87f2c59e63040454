"""The control socket: one unix stream socket per worker process, JSON lines request/response.

Request ``{"op": "status"}`` -> response ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
Operations: ``status``, ``leaders`` (only who leads what: cheap to poll), ``view {rank}`` (one
node's own view, ``{"view": null}`` when this worker does not run it), ``kill {rank, silent}``,
``restart {rank, wipe}``, ``pause {rank, seconds}``, ``partition {ranks}``, ``heal``,
``admin {mode, ranges}`` (one local node issues admin notices for ``[[first, count], ...]``),
``reload-keyring`` (re-read the keyring file: key rotation without downtime), ``stop``.

The library API (:mod:`hierclust.runtime.service`) adds ``hello`` (which ranks run here),
``cursor`` (of the last event so far), ``members {rank}``, ``in-primary {rank}``,
``leads {rank}``, ``token {rank, group}`` and ``subscribe {rank, since, buffer}``: the answer
``{"ok": true, ...}`` is followed, on that connection, by one ``{"event": {...}}`` line per
event until the client closes it. A refused API request answers
``{"ok": false, "error": "...", "kind": "NotPrimary"}`` (the exception the client raises). The
server never raises into the loop: a bad request gets an error response, a broken connection is
closed.

Who may ask: the socket can kill, restart and partition nodes, so only its owner may use it. Two
locks, either enough on its own: the socket file is made mode 0600 right after it is bound (and
the state directory it sits in is 0700 when hierclust creates it), and every connection's peer is
checked with ``SO_PEERCRED``: a process of another user (root excepted, which no file mode stops
anyway) gets one error line and is disconnected before anything it sent is read. The second lock
covers the moment between bind and chmod, and a state directory an operator opened up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

from hierclust.codec import KeyringError, load_keyring
from hierclust.runtime.errors import NodeFailedError
from hierclust.runtime.host import NodeHost
from hierclust.runtime.service import DEFAULT_BUFFER, ServiceError, Subscription

MAX_REQUEST_BYTES = 64 * 1024
UNIX_PATH_MAX = 107
SOCKET_MODE = 0o600
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


EVENT_BYTES = 256
"""About the size of one event line: a subscriber's buffer of N events is N times this many
bytes not yet taken from its connection."""


class WriterSink:
    """A subscription's connection: each event is one JSON line written at once."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.closed = False

    def answer(self, answer: dict[str, Any]) -> None:
        self.writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")

    def backlog(self) -> int:
        return self.writer.transport.get_write_buffer_size() // EVENT_BYTES

    def write(self, event: dict[str, Any]) -> None:
        if not self.closed:
            line = json.dumps({"event": event}, separators=(",", ":")).encode() + b"\n"
            self.writer.write(line)


class ControlError(RuntimeError):
    """A control request failed: the worker is gone, or it refused the request."""


class ControlServer:
    def __init__(self, host: NodeHost, path: Path, keyring_path: Path | None = None) -> None:
        self.host = host
        self.path = path
        self.keyring_path = keyring_path
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if len(str(self.path)) > UNIX_PATH_MAX:
            raise OSError(f"{self.path}: control socket path longer than {UNIX_PATH_MAX} bytes")
        self.path.unlink(missing_ok=True)
        self.server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
        )
        os.chmod(self.path, SOCKET_MODE)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refused = peer_refused(writer.get_extra_info("socket"))
        if refused is not None:
            writer.write(json.dumps({"ok": False, "error": refused}).encode() + b"\n")
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, ConnectionError):
                    break
                if not line:
                    break
                if b'"subscribe"' in line and await self._stream(line, reader, writer):
                    break
                response = await self.handle(line)
                writer.write(json.dumps(response, separators=(",", ":")).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def subscription(
        self, line: bytes, sink: WriterSink | None = None
    ) -> tuple[Subscription | None, dict[str, Any]]:
        """A ``subscribe`` request's subscription and answer; ``(None, {})`` for other ops,
        ``(None, error answer)`` for a refused one."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or request.get("op") != "subscribe":
                return None, {}
            rank = int(request["rank"])
            since = None if request.get("since") is None else str(request["since"])
            buffer = int(request.get("buffer", DEFAULT_BUFFER))
            api = self.host.api
            api.check_subscription(rank, since, buffer)
            answer = {"ok": True, "cursor": api.cursor(api.seq)}
            if sink is not None:  # the answer goes first, then what the subscription replays
                sink.answer(answer)
            return api.subscribe(rank, since, buffer, sink), answer
        except ServiceError as exc:
            return None, {"ok": False, "error": str(exc), "kind": exc.kind}
        except (KeyError, ValueError, TypeError) as exc:
            return None, {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _stream(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve ``line`` if it is a subscription: its events are written to the connection as
        they are published (see :class:`Subscription`), until the client hangs up or the host
        stops. False when it is another request."""
        sink = WriterSink(writer)
        sub, answer = self.subscription(line, sink)
        if sub is None:
            if not answer:
                return False
            sink.answer(answer)
            return True
        gone = asyncio.ensure_future(reader.read())  # the client sends nothing more: EOF = gone
        closed = asyncio.ensure_future(sub.wait_closed())
        try:
            await asyncio.wait({gone, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sink.closed = True
            gone.cancel()
            closed.cancel()
            sub.close()
        return True

    async def handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            op = request.get("op")
            host = self.host
            api = host.api
            if op == "hello":
                return {"ok": True, **api.hello()}
            if op == "members":
                rank = int(request["rank"])
                view = host.view(rank)
                members = api.members(rank, view or {})
                return {"ok": True, "members": members}
            if op == "cursor":
                return {"ok": True, "cursor": api.cursor(api.seq)}
            if op == "in-primary":
                return {"ok": True, "in_primary": api.in_primary(int(request["rank"]))}
            if op == "leads":
                return {"ok": True, "leads": api.leads(int(request["rank"]))}
            if op == "token":
                group = request.get("group")
                rank = int(request["rank"])
                token = api.fencing_token(rank, None if group is None else str(group))
                return {"ok": True, **token}
            if op == "status":
                return {"ok": True, **host.snapshot()}
            if op == "leaders":
                return {"ok": True, **host.leading()}
            if op == "view":
                return {"ok": True, "view": host.view(int(request["rank"]))}
            if op == "kill":
                silent = bool(request.get("silent", False))
                return {"ok": True, "t_ns": host.kill(int(request["rank"]), silent=silent)}
            if op == "restart":
                await host.restart(int(request["rank"]), wipe=bool(request.get("wipe", False)))
                return {"ok": True}
            if op == "pause":
                host.pause(int(request["rank"]), float(request["seconds"]))
                return {"ok": True}
            if op == "partition":
                host.partition({int(r) for r in request["ranks"]})
                return {"ok": True}
            if op == "admin":
                mode = int(request["mode"])
                ranges = [(int(first), int(count)) for first, count in request["ranges"]]
                return {"ok": True, "issuer": host.admin(mode, ranges)}
            if op == "heal":
                host.partition(None)
                return {"ok": True}
            if op == "reload-keyring":
                keyring = load_keyring(self.keyring_path) if self.keyring_path else None
                if keyring is None:
                    return {"ok": False, "error": "this worker has no keyring file"}
                host.set_keyring(keyring)
                return {"ok": True, "primary": keyring.primary_id, "keys": list(keyring.key_ids)}
            if op == "stop":
                asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(host.stop()))
                return {"ok": True}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except ServiceError as exc:
            return {"ok": False, "error": str(exc), "kind": exc.kind}
        except (KeyError, ValueError, TypeError, OSError, KeyringError, NodeFailedError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def peer_uid(sock: socket.socket | None) -> int | None:
    """The user id of the process at the other end of a unix socket (``SO_PEERCRED``), None
    when the platform cannot tell."""
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size)
    except OSError:
        return None
    return int(_PEERCRED.unpack(raw)[1])


def peer_refused(sock: socket.socket | None, own_uid: int | None = None) -> str | None:
    """Why a control connection is refused (its peer is another user, not root), or None."""
    uid = peer_uid(sock)
    own = os.geteuid() if own_uid is None else own_uid
    if uid is None or uid in (own, 0):
        return None
    return (
        f"refused: the control socket serves user id {own} only (and root); "
        f"this connection is from user id {uid}"
    )


def request(path: Path, payload: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """One synchronous request/response over a control socket; :class:`ControlError` if the
    worker is not there or answers with an error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        response = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"{path}: no valid answer") from None
    if not isinstance(response, dict) or not response.get("ok"):
        error = response.get("error") if isinstance(response, dict) else response
        raise ControlError(f"{path}: {error}")
    return response
